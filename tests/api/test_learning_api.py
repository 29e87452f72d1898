"""Learning from traffic through the app: kept signals, ``POST /v1/hybrid/feedback``, shadow
sampling against the fake cloud, and the label counts of ``/v1/hybrid/stats``.

The local model is scripted (it answers "Hello world"); a difficulty model is stored for its
file (a few bytes standing in for a GGUF), so the difficulty policy scores every request.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fake_cloud import FakeCloud, Fault, closed_port
from fastapi.testclient import TestClient
from hardware_fakes import FakePower, idle_probe
from scripted import ScriptedBackend, ScriptedRuntime, scripted_app

from hybrid.errors import PreemptedError
from hybrid.hardware.snapshot import PowerInfo
from hybrid.ledger.learning import Label, Signal
from hybrid.ledger.record import LedgerRecord
from hybrid.ledger.store import LedgerStore
from hybrid.routing.difficulty.features import FEATURE_VERSION, N_FEATURES
from hybrid.routing.difficulty.model import DifficultyModel
from hybrid.routing.difficulty.probe import ProbeStage
from hybrid.routing.difficulty.store import gguf_sha256, save
from hybrid.settings import Settings, load_settings

KEY = "feedback-test-key-0123456789"
HELLO = {"model": "hybrid", "messages": [{"role": "user", "content": "Say hello"}]}
BIG = "qwen2.5-32b-instruct"
"""A LAN model's name that reads as able to answer most prompts."""


class FileRuntime(ScriptedRuntime):
    """A scripted model that says which file it loaded, so its calibration is found."""

    def __init__(self, settings: Settings, path: Path) -> None:
        super().__init__(settings, ScriptedBackend())
        self._path = path

    @property
    def loaded_path(self) -> Path | None:
        return self._path if self._state == "ready" else None


@pytest.fixture
def cloud() -> Iterator[FakeCloud]:
    with FakeCloud(reply="Hello world.") as fake:
        yield fake


def settings_for(tmp_path: Path, cloud: FakeCloud | None = None, **cli: object) -> Settings:
    environ = {"HYBRID_HOME": str(tmp_path / "home")}
    options: dict[str, object] = {"probe.measure_bandwidth": False, **cli}
    if cloud is not None:
        options |= {
            "cloud.openai.api_key": cloud.openai_key,
            "cloud.openai.base_url": cloud.base_url + "/v1",
        }
    return load_settings(environ=environ, dotenv_file=None, cli=options).settings


def calibrated_model_file(
    settings: Settings, tmp_path: Path, probe: ProbeStage | None = None
) -> tuple[Path, str]:
    """A stand-in GGUF file and a difficulty model stored for it (every score 0.27)."""
    path = tmp_path / "model.gguf"
    path.write_bytes(b"GGUF stand-in")
    sha = gguf_sha256(path)
    model = DifficultyModel(
        weights=np.zeros(N_FEATURES),
        bias=-1.0,
        threshold=0.6,
        feature_version=FEATURE_VERSION,
        mean=np.zeros(N_FEATURES),
        scale=np.ones(N_FEATURES),
        meta={"model_sha256": sha},
        probe=probe,
    )
    save(settings.home, sha, model)
    return path, sha


@pytest.fixture
def app_for(tmp_path: Path) -> Iterator[Callable[..., tuple[TestClient, Settings, str]]]:
    clients: list[TestClient] = []

    def build(
        cloud: FakeCloud | None = None,
        probe: ProbeStage | None = None,
        power: FakePower | None = None,
        gpu_energy: Callable[[], float | None] = lambda: None,
        **cli: object,
    ) -> tuple[TestClient, Settings, str]:
        settings = settings_for(tmp_path, cloud, **cli)
        path, sha = calibrated_model_file(settings, tmp_path, probe)
        runtime = FileRuntime(settings, path)
        app = scripted_app(
            settings, runtime=runtime, probe=idle_probe(power), gpu_energy=gpu_energy
        )
        client = TestClient(app)
        client.__enter__()
        clients.append(client)
        calibration = state_of(client).calibration
        for _ in range(500):  # the file is hashed on a thread once the model is loaded
            if calibration.status().state == "found":
                break
            time.sleep(0.01)
        assert calibration.status().state == "found"
        return client, settings, sha

    yield build
    for client in clients:
        client.__exit__(None, None, None)


def state_of(client: TestClient) -> Any:
    """The app's service (``hybrid.service.service.Service``)."""
    app: Any = client.app
    return app.state.hybrid


def drain(client: TestClient) -> None:
    """Wait, on the app's loop, for the shadow comparisons running now."""
    assert client.portal is not None
    client.portal.call(state_of(client).learner.shadowing.drain)


def read_ledger(
    client: TestClient, settings: Settings
) -> tuple[list[LedgerRecord], list[Signal], list[Label]]:
    client.get("/v1/hybrid/stats")  # waits until everything written so far is committed
    store = LedgerStore.open(settings.ledger.resolved_path(settings.home))
    try:
        return store.records(), store.signals(), store.labels()
    finally:
        store.close()


def wait_for_shadows(client: TestClient, settings: Settings, count: int) -> list[Label]:
    """Let the background comparisons end, then read the shadow labels."""
    for _ in range(500):
        drain(client)
        labels = [label for label in read_ledger(client, settings)[2] if label.source == "shadow"]
        if len(labels) >= count:
            return labels
        time.sleep(0.01)
    raise AssertionError(f"fewer than {count} shadow labels were written")


def lan_server(box: FakeCloud) -> dict[str, Any]:
    """A ``[[lan.servers]]`` entry for ``box``, serving :data:`BIG`."""
    return {
        "name": "gpu-box",
        "base_url": f"{box.base_url}/v1",
        "api_key": box.openai_key,
        "models": [BIG],
    }


def shadowing_to_lan(app_for: Any, *servers: dict[str, Any], **more: object) -> Any:
    """An app with these LAN servers and no cloud, every local answer shadowed (and no escalated
    request answered again locally)."""
    return app_for(
        None,
        **{
            "lan.servers": list(servers),
            "routing.learn.shadow_rate": 1.0,
            "routing.learn.local_shadow_rate": 0.0,
            **more,
        },
    )


def chat(client: TestClient, body: dict[str, Any] = HELLO, **headers: str) -> str:
    response = client.post("/v1/chat/completions", json=body, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "Hello world"
    return response.headers["x-hybrid-request-id"]


# -- signals ------------------------------------------------------------------------------------


def test_a_scored_request_keeps_its_features_and_score_but_not_its_text(app_for: Any) -> None:
    client, settings, sha = app_for()
    request_id = chat(client)
    _, signals, _ = read_ledger(client, settings)
    assert [signal.request_id for signal in signals] == [request_id]
    signal = signals[0]
    assert (signal.model_sha256, signal.route, signal.feature_version) == (sha, "local", 1)
    assert signal.score == pytest.approx(1 / (1 + np.exp(1.0)))
    assert signal.feature_array().shape == (N_FEATURES,)
    assert signal.prompt_chars == len("Say hello") and signal.vector is None
    raw = settings.ledger.resolved_path(settings.home).read_bytes()
    assert b"Say hello" not in raw


def probe_over_4(band: tuple[float, float], every_threshold: float | None = None) -> ProbeStage:
    """A model stage over 4-value vectors, with this band and a threshold of 0.5."""
    return ProbeStage(
        weights=np.array([1.0, 0.0, 0.0, 0.0]),
        bias=-2.0,
        mean=np.zeros(4),
        scale=np.ones(4),
        band=band,
        threshold=0.5,
        every_threshold=every_threshold,
    )


def test_the_prompt_vector_the_model_stage_read_is_kept_with_the_signal(
    app_for: Any, cloud: FakeCloud
) -> None:
    # A probe whose band holds every feature score: the model stage reads the scripted model's
    # vector of every prompt, and keeps the request local (its score is 0.12).
    client, settings, _ = app_for(cloud, probe_over_4((0.0, 1.0)))
    backend = state_of(client).runtime.backend()
    backend.embedding = np.array([0.5, 1.0, -1.0, 2.0], dtype=np.float32)
    request_id = chat(client)
    _, signals, _ = read_ledger(client, settings)
    assert [signal.request_id for signal in signals] == [request_id]
    vector = signals[0].vector_array()
    assert vector is not None  # float16 in the ledger: these values are exact in it
    assert np.array_equal(vector, backend.embedding)
    assert len(backend.embedded) == 1 and cloud.requests == []


def hello_over_a_vector(client: TestClient) -> tuple[Any, Any]:
    """Set the scripted model's prompt vector, ask it "Say hello" through the router, and
    return the backend and the (successful) response."""
    backend = state_of(client).runtime.backend()
    backend.embedding = np.array([0.5, 1.0, -1.0, 2.0], dtype=np.float32)
    response = client.post(
        "/v1/chat/completions",
        json={"model": "hybrid", "messages": [{"role": "user", "content": "Say hello"}]},
    )
    assert response.status_code == 200
    return backend, response


@pytest.mark.parametrize("keep", [True, False])
def test_a_request_kept_local_outside_the_band_keeps_its_vector_for_learning(
    app_for: Any, cloud: FakeCloud, keep: bool
) -> None:
    # An empty band: the model stage settles nothing, and every score (0.27) stays local.
    client, settings, _ = app_for(
        cloud, probe_over_4((0.9, 0.9)), **{"routing.learn.prompt_vectors": keep}
    )
    backend, response = hello_over_a_vector(client)
    assert response.headers["x-hybrid-route"] == "local"
    assert "probe" not in response.headers["x-hybrid-reason"]
    _, signals, _ = read_ledger(client, settings)
    vector = signals[0].vector_array()
    if keep:
        assert vector is not None and np.array_equal(vector, backend.embedding)
        assert len(backend.embedded) == 1
    else:
        assert vector is None and backend.embedded == []
    assert cloud.requests == []


def test_asked_for_every_request_an_escalated_request_keeps_the_vector_its_decision_read(
    app_for: Any, cloud: FakeCloud
) -> None:
    # An empty band, but the model stage is asked for every request: 0.25 x the feature
    # score (0.27) + 0.75 x the probe's (0.18) is 0.20, above an every_threshold of 0.1.
    client, settings, _ = app_for(
        cloud,
        probe_over_4((0.9, 0.9), every_threshold=0.1),
        **{"routing.difficulty.model_stage": "every"},
    )
    backend, response = hello_over_a_vector(client)
    assert response.headers["x-hybrid-route"] == "cloud" and len(cloud.requests) == 1
    assert response.headers["x-hybrid-reason"] == "difficulty:0.27~probe:0.20>0.10"
    _, signals, _ = read_ledger(client, settings)
    assert signals[0].route == "cloud"
    vector = signals[0].vector_array()
    assert vector is not None and np.array_equal(vector, backend.embedding)
    assert len(backend.embedded) == 1


def test_only_the_newest_signals_are_kept(app_for: Any) -> None:
    client, settings, _ = app_for(**{"routing.learn.keep_signals": 2})
    ids = [chat(client) for _ in range(4)]
    _, signals, _ = read_ledger(client, settings)
    assert [signal.request_id for signal in signals] == ids[2:]


def test_no_signal_is_kept_when_keep_signals_is_0(app_for: Any) -> None:
    client, settings, _ = app_for(**{"routing.learn.keep_signals": 0})
    chat(client)
    assert read_ledger(client, settings)[1] == []


# -- feedback -----------------------------------------------------------------------------------


def test_feedback_labels_an_answer_and_a_second_label_replaces_the_first(app_for: Any) -> None:
    client, settings, sha = app_for()
    request_id = chat(client)
    first = client.post("/v1/hybrid/feedback", json={"request_id": request_id, "good": True})
    assert first.status_code == 200, first.text
    assert first.json() == {
        "request_id": request_id,
        "good": True,
        "source": "feedback",
        "route": "local",
        "about_local": True,
        "replaced": False,
        "usable": True,
        "message": None,
    }
    second = client.post(
        "/v1/hybrid/feedback",
        json={"request_id": request_id, "good": False, "note": "wrong capital"},
    )
    assert second.status_code == 200 and second.json()["replaced"] is True
    _, _, labels = read_ledger(client, settings)
    assert [(label.request_id, label.good, label.note) for label in labels] == [
        (request_id, False, "wrong capital")
    ]
    counts = client.get("/v1/hybrid/stats").json()["labels"]
    assert counts == [
        {
            "model_sha256": sha,
            "feedback": 1,
            "shadow": 0,
            "cascade": 0,
            "usable": 1,
            "with_vector": 0,
            "shadow_escalated": 0,
        }
    ]


def feedback_on(client: TestClient, request_id: str) -> dict[str, Any]:
    """Label a request's answer bad; the response's body."""
    response = client.post("/v1/hybrid/feedback", json={"request_id": request_id, "good": False})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_feedback_a_refit_cannot_learn_from_is_kept_and_says_which_setting_to_change(
    app_for: Any,
) -> None:
    client, settings, _ = app_for(**{"routing.learn.keep_signals": 0})
    request_id = chat(client)
    body = feedback_on(client, request_id)
    assert (body["about_local"], body["usable"]) == (True, False)
    assert body["message"].startswith("routing.learn.keep_signals is 0")
    assert "set routing.learn.keep_signals above 0" in body["message"]
    _, _, labels = read_ledger(client, settings)
    assert [(label.request_id, label.source) for label in labels] == [(request_id, "feedback")]
    [counts] = client.get("/v1/hybrid/stats").json()["labels"]
    assert counts["usable"] == 0


def test_feedback_on_a_request_whose_signal_was_pruned_is_not_usable(app_for: Any) -> None:
    client, _, sha = app_for(**{"routing.learn.keep_signals": 1})
    older, newer = chat(client), chat(client)
    pruned = feedback_on(client, older)
    assert (pruned["about_local"], pruned["usable"]) == (True, False)
    assert "no longer kept" in pruned["message"]
    assert "raise routing.learn.keep_signals" in pruned["message"]
    kept = feedback_on(client, newer)
    assert (kept["usable"], kept["message"]) == (True, None)
    counts = client.get("/v1/hybrid/stats").json()["labels"]
    # The pruned request's label counts under no model: its signal named the model.
    usable = {row["model_sha256"]: (row["feedback"], row["usable"]) for row in counts}
    assert usable == {sha: (1, 1), None: (1, 0)}


def test_feedback_on_a_request_the_router_did_not_score_or_on_a_cloud_answer_is_not_usable(
    app_for: Any, cloud: FakeCloud
) -> None:
    client, _, _ = app_for(cloud)
    pinned = feedback_on(client, chat(client, **{"X-Hybrid-Route": "local"}))
    assert (pinned["about_local"], pinned["usable"]) == (True, False)
    assert "did not score this request" in pinned["message"]
    response = client.post("/v1/chat/completions", json=HELLO, headers={"X-Hybrid-Route": "cloud"})
    assert response.headers["x-hybrid-route"] == "cloud"
    escalated = feedback_on(client, response.headers["x-hybrid-request-id"])
    assert (escalated["about_local"], escalated["usable"]) == (False, False)
    assert "says nothing about the local model" in escalated["message"]


def test_feedback_for_an_unknown_request_is_a_404_that_says_what_to_send(app_for: Any) -> None:
    client, _, _ = app_for()
    response = client.post("/v1/hybrid/feedback", json={"request_id": "nope", "good": True})
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "request_not_found" and error["param"] == "request_id"
    assert "'nope'" in error["message"] and "X-Hybrid-Request-Id" in error["message"]


@pytest.mark.parametrize(
    "body",
    [
        {"request_id": "x", "good": "yes"},
        {"request_id": "x", "good": 1},
        {"request_id": "x"},
        {"request_id": "x", "good": True, "grade": 5},
        {"request_id": "", "good": True},
        {"request_id": "x", "good": True, "note": "n" * 2001},
    ],
)
def test_a_feedback_body_is_checked_strictly(app_for: Any, body: dict[str, Any]) -> None:
    client, _, _ = app_for()
    response = client.post("/v1/hybrid/feedback", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_feedback_takes_json_only(app_for: Any) -> None:
    client, _, _ = app_for()
    response = client.post(
        "/v1/hybrid/feedback",
        content=b"request_id=x&good=true",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 415


def test_feedback_needs_the_api_key_when_the_server_has_one(app_for: Any) -> None:
    client, _, _ = app_for(**{"server.api_key": KEY})
    body = {"request_id": "x", "good": True}
    assert client.post("/v1/hybrid/feedback", json=body).status_code == 401
    keyed = client.post(
        "/v1/hybrid/feedback", json=body, headers={"Authorization": f"Bearer {KEY}"}
    )
    assert keyed.status_code == 404


def test_a_refused_request_has_no_answer_to_label(app_for: Any) -> None:
    client, _, _ = app_for()
    refused = client.post("/v1/chat/completions", json={**HELLO, "model": "no-such-model"})
    assert refused.status_code == 404
    request_id = refused.headers["x-hybrid-request-id"]
    response = client.post("/v1/hybrid/feedback", json={"request_id": request_id, "good": False})
    assert response.status_code == 400
    assert "refused before any model answered" in response.json()["error"]["message"]


def test_feedback_is_in_the_openapi_document(app_for: Any) -> None:
    client, _, _ = app_for()
    operation = client.get("/openapi.json").json()["paths"]["/v1/hybrid/feedback"]["post"]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    assert schema["required"] == ["request_id", "good"]
    assert set(schema["properties"]) == {"request_id", "good", "note"}
    assert {"200", "400", "401", "404", "415"} <= set(operation["responses"])


# -- shadow sampling ----------------------------------------------------------------------------


def test_a_shadowed_local_answer_is_graded_against_the_cloud_and_its_cost_counts(
    app_for: Any, cloud: FakeCloud
) -> None:
    client, settings, sha = app_for(cloud, **{"routing.learn.shadow_rate": 1.0})
    request_id = chat(client)
    [label] = wait_for_shadows(client, settings, 1)
    assert (label.request_id, label.good, label.agreement) == (request_id, True, 1.0)
    sent = [r.body for r in cloud.requests if r.body is not None]
    assert [body["messages"][-1]["content"] for body in sent] == ["Say hello"]
    assert not sent[0].get("stream")

    records, _, _ = read_ledger(client, settings)
    answer, shadow = records
    assert (answer.route, answer.leg, shadow.route, shadow.leg) == (
        "local",
        None,
        "cloud",
        "shadow",
    )
    assert shadow.id == request_id and shadow.provider == "openai"
    assert shadow.cloud_cost_usd is not None and shadow.cloud_cost_usd > 0
    stats = client.get("/v1/hybrid/stats").json()
    totals = stats["all_time"]
    # One request, answered locally; the shadow call's cost is spend like any cloud call.
    assert (totals["requests"], totals["local"], totals["cloud"]) == (1, 1, 0)
    assert totals["cloud_spend_usd"] == pytest.approx(shadow.cloud_cost_usd)
    assert stats["budget"]["daily_spend_usd"] == pytest.approx(shadow.cloud_cost_usd)
    assert stats["labels"] == [
        {
            "model_sha256": sha,
            "feedback": 0,
            "shadow": 1,
            "cascade": 0,
            "usable": 1,
            "with_vector": 0,
            "shadow_escalated": 0,
        }
    ]


def test_with_no_cloud_a_shadowed_local_answer_is_graded_against_a_lan_server(
    app_for: Any,
) -> None:
    with FakeCloud(reply="Hello world", models=(BIG,)) as box:
        client, settings, sha = shadowing_to_lan(
            app_for, lan_server(box), **{"lan.usd_per_1m_tokens": 2.0}
        )
        request_id = chat(client)
        [label] = wait_for_shadows(client, settings, 1)
        sent = [r.body for r in box.requests if r.body is not None]
    assert (label.request_id, label.good, label.agreement) == (request_id, True, 1.0)
    assert label.note == f"match against gpu-box/{BIG}"
    assert [(body["model"], body["messages"][-1]["content"]) for body in sent] == [
        (BIG, "Say hello")
    ]
    assert not sent[0].get("stream")
    records, _, _ = read_ledger(client, settings)
    answer, shadow = records
    assert (answer.route, answer.leg, shadow.route, shadow.leg) == ("local", None, "lan", "shadow")
    assert (shadow.id, shadow.model, shadow.provider) == (request_id, f"gpu-box/{BIG}", "gpu-box")
    # What the server cost (2 USD a million tokens), and nothing avoided: no client got it.
    lan_cost = 2.0 * (shadow.prompt_tokens + shadow.completion_tokens) / 1e6
    assert shadow.prompt_tokens > 0 and shadow.cloud_cost_usd == 0.0
    assert shadow.energy_cost_usd == pytest.approx(lan_cost)
    assert shadow.cost_avoided_usd == pytest.approx(-lan_cost)
    stats = client.get("/v1/hybrid/stats").json()
    totals = stats["all_time"]
    assert (totals["requests"], totals["local"], totals["lan"], totals["cloud"]) == (1, 1, 0, 0)
    assert totals["cloud_spend_usd"] == 0.0
    [counts] = stats["labels"]
    assert (counts["model_sha256"], counts["shadow"], counts["usable"]) == (sha, 1, 1)


def test_a_lan_servers_model_judges_the_shadow_answer_on_that_server(app_for: Any) -> None:
    with FakeCloud(reply="A completely different reply.", models=(BIG,)) as box:
        box.replies = {"Reply with one word: yes or no": "Yes."}
        client, settings, _ = shadowing_to_lan(
            app_for,
            lan_server(box),
            **{"lan.usd_per_1m_tokens": 2.0, "routing.learn.judge_model": f"gpu-box/{BIG}"},
        )
        request_id = chat(client)
        [label] = wait_for_shadows(client, settings, 1)
        sent = [r.body for r in box.requests if r.body is not None]
    # The overlap grade would say bad; the judge on the LAN server says good.
    assert (label.request_id, label.good) == (request_id, True)
    assert label.note is not None and label.note.startswith("judge")
    assert [body["model"] for body in sent] == [BIG, BIG]
    assert "Reply with one word: yes or no" in str(sent[1]["messages"])
    records, _, _ = read_ledger(client, settings)
    legs = [(r.leg, r.route, r.model, r.cloud_cost_usd) for r in records if r.leg is not None]
    assert legs == [
        ("shadow", "lan", f"gpu-box/{BIG}", 0.0),
        ("shadow_judge", "lan", f"gpu-box/{BIG}", 0.0),
    ]
    judged = records[-1]
    lan_cost = 2.0 * (judged.prompt_tokens + judged.completion_tokens) / 1e6
    assert judged.prompt_tokens > 0 and judged.energy_cost_usd == pytest.approx(lan_cost)


def test_a_lan_judge_that_does_not_answer_leaves_the_overlap_grade(app_for: Any) -> None:
    base = f"http://127.0.0.1:{closed_port()}/v1"
    with FakeCloud(reply="A completely different reply.", models=(BIG,)) as box:
        judge = {"name": "judge-box", "base_url": base, "models": [BIG]}
        client, settings, _ = shadowing_to_lan(
            app_for, lan_server(box), judge, **{"routing.learn.judge_model": f"judge-box/{BIG}"}
        )
        chat(client)
        [label] = wait_for_shadows(client, settings, 1)
        sent = [r.body for r in box.requests if r.body is not None]
    assert label.good is False and label.note is not None and not label.note.startswith("judge")
    assert len(sent) == 1, "the judge is asked on its own server only"
    records, _, _ = read_ledger(client, settings)
    # Found down before it was asked: no judge call was made, so none is recorded.
    assert [(r.leg, r.route) for r in records if r.leg is not None] == [("shadow", "lan")]


def test_a_lan_judge_that_fails_is_recorded_and_the_overlap_grade_stands(app_for: Any) -> None:
    with (
        FakeCloud(reply="A completely different reply.", models=(BIG,)) as box,
        FakeCloud(reply="Yes.", models=(BIG,)) as judging,
    ):
        judge = lan_server(judging) | {"name": "judge-box"}
        client, settings, _ = shadowing_to_lan(
            app_for,
            lan_server(box),
            judge,
            **{"routing.learn.judge_model": f"judge-box/{BIG}", "lan.max_attempts": 1},
        )
        chat(client)
        [judged] = wait_for_shadows(client, settings, 1)
        judging.push(Fault.status(500))  # once the server is known to be up
        chat(client)
        labels = wait_for_shadows(client, settings, 2)
    assert judged.good is True and judged.note is not None and judged.note.startswith("judge")
    graded = labels[-1]
    assert graded.good is False and graded.note is not None
    assert not graded.note.startswith("judge")
    records, _, _ = read_ledger(client, settings)
    legs = [(r.leg, r.model, r.status) for r in records if r.leg == "shadow_judge"]
    assert legs == [
        ("shadow_judge", f"judge-box/{BIG}", "ok"),
        ("shadow_judge", f"judge-box/{BIG}", "error"),
    ]
    failed = records[-1]
    assert failed.error is not None and "500" in failed.error
    assert (failed.route, failed.prompt_tokens, failed.energy_cost_usd) == ("lan", 0, 0.0)


def test_a_lan_server_that_fails_the_shadow_call_leaves_an_error_leg_and_no_label(
    app_for: Any,
) -> None:
    with FakeCloud(reply="Hello world", models=(BIG,)) as box:
        client, settings, _ = shadowing_to_lan(app_for, lan_server(box), **{"lan.max_attempts": 1})
        first = chat(client)
        wait_for_shadows(client, settings, 1)
        box.push(Fault.status(500))  # once the server is known to be up
        second = chat(client)
        drain(client)
        records, _, labels = read_ledger(client, settings)
    assert [(r.id, r.route, r.leg, r.status) for r in records] == [
        (first, "local", None, "ok"),
        (first, "lan", "shadow", "ok"),
        (second, "local", None, "ok"),
        (second, "lan", "shadow", "error"),
    ]
    failed = records[-1]
    assert (failed.model, failed.prompt_tokens, failed.cost_avoided_usd) == (
        f"gpu-box/{BIG}",
        0,
        0.0,
    )
    assert failed.error is not None and "500" in failed.error
    assert [label.request_id for label in labels] == [first]


def test_with_no_cloud_and_no_lan_server_up_a_local_answer_is_not_shadowed(
    app_for: Any,
) -> None:
    base = f"http://127.0.0.1:{closed_port()}/v1"
    down = {"name": "gpu-box", "base_url": base, "models": [BIG]}
    client, settings, _ = app_for(None, **{"lan.servers": [down], "routing.learn.shadow_rate": 1.0})
    request_id = chat(client)
    drain(client)
    records, _, labels = read_ledger(client, settings)
    assert [(r.id, r.route, r.leg) for r in records] == [(request_id, "local", None)]
    assert labels == []


def test_a_cloud_answer_that_disagrees_labels_the_local_answer_bad(
    app_for: Any, cloud: FakeCloud
) -> None:
    cloud.reply = "Bonjour, the weather is fine today."
    client, settings, _ = app_for(cloud, **{"routing.learn.shadow_rate": 1.0})
    chat(client)
    [label] = wait_for_shadows(client, settings, 1)
    assert label.good is False and label.agreement is not None and label.agreement < 0.5


def test_a_judge_grades_the_shadow_answer_when_one_is_set(app_for: Any, cloud: FakeCloud) -> None:
    cloud.reply = "A completely different reply."
    cloud.replies = {"Reply with one word: yes or no": "Yes."}
    client, settings, _ = app_for(
        cloud,
        **{"routing.learn.shadow_rate": 1.0, "routing.learn.judge_model": "openai/gpt-4.1"},
    )
    chat(client)
    [label] = wait_for_shadows(client, settings, 1)
    assert label.good is True and label.note is not None and label.note.startswith("judge")
    legs = [record.leg for record in read_ledger(client, settings)[0]]
    assert legs == [None, "shadow", "shadow_judge"]
    judged = cloud.requests[-1].body
    assert judged is not None and judged["model"] == "gpt-4.1"
    assert "Hello world" in judged["messages"][0]["content"]


def test_an_escalated_request_is_answered_again_locally_and_labelled_without_a_cloud_call(
    app_for: Any, cloud: FakeCloud
) -> None:
    client, settings, sha = app_for(
        cloud,
        **{"routing.learn.local_shadow_rate": 1.0, "routing.difficulty.threshold": 0.1},
    )
    local = state_of(client).runtime.scripted
    response = client.post("/v1/chat/completions", json=HELLO)
    assert response.status_code == 200, response.text
    assert response.headers["x-hybrid-route"] == "cloud"
    assert response.headers["x-hybrid-reason"] == "difficulty:0.27>0.10"
    request_id = response.headers["x-hybrid-request-id"]

    [label] = wait_for_shadows(client, settings, 1)
    assert (label.request_id, label.good, label.agreement) == (request_id, True, 1.0)
    [asked] = local.requests
    assert asked.messages[-1].content == "Say hello" and not asked.stream
    # The local answer costs no cloud call and is no request of its own, but it is a ledger
    # leg of the request: the local model's tokens and energy.
    assert len(cloud.requests) == 1
    records, signals, _ = read_ledger(client, settings)
    assert [(r.id, r.route, r.leg) for r in records] == [
        (request_id, "cloud", None),
        (request_id, "local", "local_shadow"),
    ]
    answer, shadow = records
    assert (shadow.model, shadow.provider, shadow.status, shadow.decided) == (
        "scripted-model",
        "local",
        "ok",
        "router",
    )
    assert (shadow.prompt_tokens, shadow.completion_tokens, shadow.tokens_estimated) == (
        7,
        2,
        False,
    )
    assert shadow.reasons == ("local:shadow",) and shadow.error is None
    # Its electricity, and nothing avoided: it answered no client.
    assert shadow.cloud_cost_usd == 0.0 and shadow.energy_cost_usd is not None
    assert shadow.counterfactual_model is None and shadow.counterfactual_cost_usd is None
    assert shadow.cost_avoided_usd == pytest.approx(-shadow.energy_cost_usd)
    assert label.note == f"match: a local answer in the background against {answer.model}"
    assert [(s.request_id, s.route) for s in signals] == [(request_id, "cloud")]
    [counts] = client.get("/v1/hybrid/stats").json()["labels"]
    assert (counts["model_sha256"], counts["shadow"], counts["usable"]) == (sha, 1, 1)
    assert counts["shadow_escalated"] == 1  # a local answer to an escalated request


def test_a_request_a_lan_server_answered_is_answered_again_locally_and_labelled(
    app_for: Any,
) -> None:
    with FakeCloud(reply="Hello world", models=(BIG,)) as box:
        client, settings, sha = app_for(
            None,
            **{
                "lan.servers": [lan_server(box)],
                "routing.learn.local_shadow_rate": 1.0,
                "routing.difficulty.threshold": 0.1,
            },
        )
        response = client.post("/v1/chat/completions", json=HELLO)
        assert response.status_code == 200, response.text
        assert response.headers["x-hybrid-route"] == "lan"
        request_id = response.headers["x-hybrid-request-id"]
        [label] = wait_for_shadows(client, settings, 1)
    assert (label.request_id, label.good, label.agreement) == (request_id, True, 1.0)
    assert label.note == f"match: a local answer in the background against gpu-box/{BIG}"
    # The client's request only (besides health and load checks): none for the comparison.
    assert [r.path for r in box.requests if r.body is not None] == ["/v1/chat/completions"]
    records, signals, _ = read_ledger(client, settings)
    assert [(r.route, r.leg) for r in records] == [("lan", None), ("local", "local_shadow")]
    assert [(s.request_id, s.route) for s in signals] == [(request_id, "lan")]
    [counts] = client.get("/v1/hybrid/stats").json()["labels"]
    assert (counts["model_sha256"], counts["shadow"], counts["usable"]) == (sha, 1, 1)
    assert counts["shadow_escalated"] == 1


def test_a_local_shadow_answer_costs_its_energy_and_is_neither_a_request_nor_avoided_spend(
    app_for: Any, cloud: FakeCloud
) -> None:
    # The GPUs' energy counter moves 0.1 kWh between the two reads across the local shadow
    # answer, and the CPU is priced at 0 W: its energy is exactly $0.1 x usd_per_kwh.
    joules = iter(float(n) * 360_000.0 for n in range(1, 1000))
    client, settings, _ = app_for(
        cloud,
        gpu_energy=lambda: next(joules),
        **{
            "routing.learn.local_shadow_rate": 1.0,
            "routing.difficulty.threshold": 0.1,
            "energy.cpu_watts": 0.0,
            "energy.usd_per_kwh": 0.5,
        },
    )
    response = client.post("/v1/chat/completions", json=HELLO)
    assert response.headers["x-hybrid-route"] == "cloud"
    wait_for_shadows(client, settings, 1)
    records, _, _ = read_ledger(client, settings)
    answer, shadow = records
    assert (answer.leg, shadow.leg) == (None, "local_shadow")
    assert shadow.energy_cost_usd == pytest.approx(0.05)
    assert shadow.cost_avoided_usd == pytest.approx(-0.05)

    stats = client.get("/v1/hybrid/stats?by=route").json()
    totals = stats["all_time"]
    # One request, answered in the cloud: the local shadow answer is no request, moves no
    # local share, is no cloud spend, and its energy comes off the cost avoided.
    assert (totals["requests"], totals["local"], totals["cloud"]) == (1, 0, 1)
    assert totals["local_share"] == 0.0 and totals["errors"] == 0
    assert totals["cloud_spend_usd"] == pytest.approx(answer.cloud_cost_usd)
    assert totals["cost_avoided_usd"] == pytest.approx(-0.05)
    assert totals["prompt_tokens"] == answer.prompt_tokens + 7
    assert totals["completion_tokens"] == answer.completion_tokens + 2
    assert stats["budget"]["daily_spend_usd"] == pytest.approx(answer.cloud_cost_usd)
    groups = {group["key"]: group["totals"] for group in stats["groups"]["all_time"]}
    local = groups["local"]
    assert (local["requests"], local["local"], local["cloud_spend_usd"]) == (0, 0, 0.0)
    assert local["cost_avoided_usd"] == pytest.approx(-0.05)
    assert (groups["cloud"]["requests"], groups["cloud"]["cost_avoided_usd"]) == (1, 0.0)


def test_a_local_shadow_answer_a_client_request_stopped_is_recorded_with_what_it_generated(
    app_for: Any, cloud: FakeCloud
) -> None:
    client, settings, _ = app_for(
        cloud, **{"routing.learn.local_shadow_rate": 1.0, "routing.difficulty.threshold": 0.1}
    )
    local = state_of(client).runtime.scripted
    local.pieces = ["Hello", " there", ","]
    local.fail_mid_stream = PreemptedError("a client request needed the local model")
    response = client.post("/v1/chat/completions", json=HELLO)
    assert response.headers["x-hybrid-route"] == "cloud"
    drain(client)
    records, _, labels = read_ledger(client, settings)
    assert labels == []  # half an answer grades nothing
    answer, shadow = records
    assert (shadow.id, shadow.route, shadow.leg, shadow.status) == (
        answer.id,
        "local",
        "local_shadow",
        "cancelled",
    )
    assert (shadow.prompt_tokens, shadow.completion_tokens, shadow.tokens_estimated) == (
        7,
        3,
        True,
    )
    assert shadow.cost_avoided_usd == pytest.approx(-(shadow.energy_cost_usd or 0.0))
    totals = client.get("/v1/hybrid/stats").json()["all_time"]
    assert (totals["requests"], totals["cloud"], totals["errors"]) == (1, 1, 0)


def test_by_default_one_in_ten_escalated_requests_is_answered_again_locally(
    app_for: Any, cloud: FakeCloud
) -> None:
    # No routing.learn setting: local shadow answers are on by default, one in each run of ten
    # escalated requests, the first within the first ten after the start.
    client, settings, _ = app_for(cloud, **{"routing.difficulty.threshold": 0.1})
    assert settings.routing.learn.local_shadow_rate == 0.1
    local = state_of(client).runtime.scripted
    sent = []
    for _ in range(100):
        response = client.post("/v1/chat/completions", json=HELLO)
        assert response.headers["x-hybrid-route"] == "cloud"
        sent.append(response.headers["x-hybrid-request-id"])
        drain(client)  # one at a time: none is skipped for the two already waiting
    labels = [label for label in read_ledger(client, settings)[2] if label.source == "shadow"]
    places = sorted(sent.index(label.request_id) for label in labels)
    assert [place // 10 for place in places] == list(range(10))
    assert len(local.requests) == 10 and len(cloud.requests) == 100


def test_a_request_sent_out_on_its_score_and_answered_locally_keeps_why_it_went_out(
    app_for: Any, cloud: FakeCloud
) -> None:
    client, settings, _ = app_for(
        cloud, **{"routing.difficulty.threshold": 0.1, "cloud.max_attempts": 1}
    )
    cloud.push(Fault.status(503))
    response = client.post("/v1/chat/completions", json=HELLO)
    assert response.status_code == 200, response.text
    assert response.headers["x-hybrid-route"] == "local"
    reason = "cloud_unavailable:openai:unavailable;difficulty:0.27>0.10"
    assert response.headers["x-hybrid-reason"] == reason
    records, signals, _ = read_ledger(client, settings)
    [record] = records
    assert record.reasons == tuple(reason.split(";"))
    assert record.score == pytest.approx(0.27, abs=0.005)
    # The local answer to a request the router sent out is labelled like any local answer.
    assert [(s.request_id, s.route) for s in signals] == [(record.id, "local")]


def test_the_local_shadow_answer_keeps_the_prompt_vector_with_the_requests_signal(
    app_for: Any, cloud: FakeCloud
) -> None:
    client, settings, _ = app_for(
        cloud,
        **{
            "routing.learn.local_shadow_rate": 1.0,
            "routing.learn.prompt_vectors": True,
            "routing.difficulty.threshold": 0.1,
        },
    )
    local = state_of(client).runtime.scripted
    local.embedding = np.array([1.0, 2.0, 3.0, 4.0], dtype=np.float32)
    response = client.post("/v1/chat/completions", json=HELLO)
    assert response.headers["x-hybrid-route"] == "cloud"

    [label] = wait_for_shadows(client, settings, 1)
    _, [signal], _ = read_ledger(client, settings)
    assert signal.request_id == label.request_id == response.headers["x-hybrid-request-id"]
    assert signal.route == "cloud" and signal.score == pytest.approx(0.27, abs=0.01)
    vector = signal.vector_array()
    assert vector is not None and np.array_equal(vector, local.embedding)
    [counts] = client.get("/v1/hybrid/stats").json()["labels"]
    assert (counts["shadow"], counts["usable"], counts["with_vector"]) == (1, 1, 1)


def test_on_battery_power_no_escalated_request_is_answered_again_locally(
    app_for: Any, cloud: FakeCloud
) -> None:
    power = FakePower(PowerInfo(battery_percent=90.0, on_battery=True))
    client, settings, _ = app_for(
        cloud,
        power=power,
        **{
            "routing.learn.local_shadow_rate": 1.0,
            "routing.difficulty.threshold": 0.1,
            "probe.sample_interval_s": 0.02,
        },
    )
    local = state_of(client).runtime.scripted
    assert client.post("/v1/chat/completions", json=HELLO).headers["x-hybrid-route"] == "cloud"
    drain(client)
    assert local.requests == [] and read_ledger(client, settings)[2] == []
    power.info = PowerInfo(battery_percent=90.0, on_battery=False)
    sampler = state_of(client).sampler
    for _ in range(500):  # the next hardware sample sees the machine plugged in
        if sampler.latest().on_battery is False:
            break
        time.sleep(0.01)
    response = client.post("/v1/chat/completions", json=HELLO)
    [label] = wait_for_shadows(client, settings, 1)
    assert label.request_id == response.headers["x-hybrid-request-id"] and len(local.requests) == 1


def test_a_request_kept_local_is_not_answered_again_locally(app_for: Any, cloud: FakeCloud) -> None:
    client, settings, _ = app_for(cloud, **{"routing.learn.local_shadow_rate": 1.0})
    request_id = chat(client)
    drain(client)
    records, _, labels = read_ledger(client, settings)
    assert [(r.id, r.route) for r in records] == [(request_id, "local")] and labels == []
    assert len(state_of(client).runtime.scripted.requests) == 1 and cloud.requests == []


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        # Private data pins the request to this machine: it never goes out, not even later.
        (
            {**HELLO, "messages": [{"role": "user", "content": "Mail me at ann@example.com"}]},
            {},
        ),
        # The client chose the local model: its request is not sent out behind its back.
        ({**HELLO, "model": "local"}, {}),
        (HELLO, {"X-Hybrid-Route": "local"}),
    ],
)
def test_private_or_client_pinned_requests_are_never_shadowed(
    app_for: Any, cloud: FakeCloud, body: dict[str, Any], headers: dict[str, str]
) -> None:
    client, settings, _ = app_for(cloud, **{"routing.learn.shadow_rate": 1.0})
    request_id = chat(client, body, **headers)
    drain(client)
    records, _, labels = read_ledger(client, settings)
    assert cloud.requests == []
    assert [(r.id, r.leg) for r in records] == [(request_id, None)] and labels == []


def test_no_shadow_call_is_made_at_the_spend_cap(app_for: Any, cloud: FakeCloud) -> None:
    client, settings, _ = app_for(
        cloud, **{"routing.learn.shadow_rate": 1.0, "budget.daily_usd": 0.000001}
    )
    chat(client)
    chat(client)
    drain(client)
    # Each shadow call reserves its estimated cost first, and neither fits under the cap.
    assert cloud.requests == []
    records, _, labels = read_ledger(client, settings)
    assert [r.leg for r in records] == [None, None] and labels == []


# -- the cascade ----------------------------------------------------------------------------------


def test_a_local_answer_the_cascade_discards_for_declining_is_labelled_bad(
    app_for: Any, cloud: FakeCloud
) -> None:
    client, settings, sha = app_for(cloud, **{"routing.cascade.enabled": True})
    state_of(client).runtime.scripted.pieces = ["I'm sorry,", " I don't know."]
    response = client.post("/v1/chat/completions", json=HELLO)
    assert response.status_code == 200, response.text
    assert response.headers["x-hybrid-reason"] == "cascade:declined"
    request_id = response.headers["x-hybrid-request-id"]

    records, signals, labels = read_ledger(client, settings)
    assert [(s.request_id, s.route) for s in signals] == [(request_id, "cloud")]
    assert [(label.request_id, label.source, label.good) for label in labels] == [
        (request_id, "cascade", False)
    ]
    assert sorted(record.leg or "" for record in records) == ["cascade_cloud", "cascade_local"]
    assert client.get("/v1/hybrid/stats").json()["labels"] == [
        {
            "model_sha256": sha,
            "feedback": 0,
            "shadow": 0,
            "cascade": 1,
            "usable": 1,
            "with_vector": 0,
            "shadow_escalated": 0,
        }
    ]


def test_with_lan_servers_and_no_cloud_a_declining_local_answer_goes_to_a_lan_server(
    app_for: Any,
) -> None:
    with FakeCloud(reply="Hello world", models=(BIG,)) as box:
        client, settings, _ = app_for(
            None, **{"lan.servers": [lan_server(box)], "routing.learn.local_shadow_rate": 0.0}
        )
        local = state_of(client).runtime.scripted
        local.pieces = ["I'm sorry,", " I don't know."]
        response = client.post("/v1/chat/completions", json=HELLO)
        assert response.status_code == 200, response.text
        assert response.json()["choices"][0]["message"]["content"] == "Hello world"
        assert response.headers["x-hybrid-route"] == "lan"
        assert response.headers["x-hybrid-reason"] == f"lan:gpu-box/{BIG};cascade:declined"
        answered = response.headers["x-hybrid-request-id"]
        # The server fails the next one, and its retry: the answer read is given.
        box.push(Fault.status(503), Fault.status(503))
        response = client.post("/v1/chat/completions", json=HELLO)
        assert response.status_code == 200, response.text
        assert response.json()["choices"][0]["message"]["content"] == "I'm sorry, I don't know."
        reason = response.headers["x-hybrid-reason"]
        assert reason.startswith("local:no_cloud_configured;cascade:declined;lan:"), reason
        given = response.headers["x-hybrid-request-id"]
    assert len(local.requests) == 2  # one local answer each: the second was not generated again
    records, _, labels = read_ledger(client, settings)
    legs = sorted((r.id == answered, r.route, r.leg or "") for r in records)
    assert legs == [
        (False, "local", ""),
        (True, "lan", "cascade_cloud"),
        (True, "local", "cascade_local"),
    ]
    assert sorted((label.request_id, label.source, label.good) for label in labels) == sorted(
        [(answered, "cascade", False), (given, "cascade", False)]
    )


def test_a_local_answer_outside_the_options_its_prompt_offered_is_labelled_bad(
    app_for: Any, cloud: FakeCloud
) -> None:
    client, settings, _ = app_for(cloud, **{"routing.cascade.enabled": True})
    state_of(client).runtime.scripted.pieces = ["I think", " the capital is Paris."]
    question = "Is Lyon the capital of France? Answer yes or no."
    body = {"model": "hybrid", "messages": [{"role": "user", "content": question}]}
    response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    assert response.headers["x-hybrid-reason"] == "cascade:outside_options"
    request_id = response.headers["x-hybrid-request-id"]

    records, _, labels = read_ledger(client, settings)
    assert [(label.request_id, label.source, label.good, label.note) for label in labels] == [
        (
            request_id,
            "cascade",
            False,
            "the local answer was none of the answers the prompt offered",
        )
    ]
    discarded = next(record for record in records if record.leg == "cascade_local")
    assert discarded.reasons == ("cascade:outside_options",)


def test_a_local_answer_the_cascade_keeps_is_not_labelled(app_for: Any, cloud: FakeCloud) -> None:
    client, settings, _ = app_for(cloud, **{"routing.cascade.enabled": True})
    request_id = chat(client)
    _, signals, labels = read_ledger(client, settings)
    assert [(s.request_id, s.route) for s in signals] == [(request_id, "local")]
    assert labels == []
