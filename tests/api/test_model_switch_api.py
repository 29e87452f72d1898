"""``GET``/``POST /v1/hybrid/model``, ``/health`` while switching and unloaded, the ``model``
event, and a request routed while the model is unloaded with a cloud provider set.

The models are fakes on the real runtime (:mod:`switch_fakes`); the cloud is the fake cloud.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_cloud import FakeCloud
from fastapi.testclient import TestClient
from scripted import scripted_app
from switch_fakes import FakeOpener, fake_runtime

from hybrid.settings import Settings


def client_for(
    tmp_path: Path, opener: FakeOpener, cloud: FakeCloud | None = None, **local: object
) -> TestClient:
    runtime, settings = fake_runtime(tmp_path, opener, **local)
    if cloud is not None:
        data = settings.model_dump()
        data["cloud"]["openai"] = {"api_key": cloud.openai_key, "base_url": cloud.base_url + "/v1"}
        # Any wait longer than a second goes to the cloud: the reload alone is a quarter.
        data["routing"]["capacity"]["latency_target_s"] = 1.0
        settings = Settings.model_validate(data)
    return TestClient(scripted_app(settings, runtime=runtime))


def ready(client: TestClient) -> None:
    """Wait for the first load (the fake's) to end."""
    while client.get("/v1/hybrid/model").json()["state"] == "loading":
        pass


@pytest.fixture
def opener() -> FakeOpener:
    return FakeOpener()


@pytest.fixture
def client(tmp_path: Path, opener: FakeOpener) -> Iterator[TestClient]:
    with client_for(tmp_path, opener, keep_alive=-1) as client:
        ready(client)
        yield client


def test_get_lists_the_current_model_and_those_it_can_switch_to(client: TestClient) -> None:
    body = client.get("/v1/hybrid/model").json()
    assert body["state"] == "ready" and body["model"] == "first-model"
    names = {model["name"]: model for model in body["available"]}
    assert {"first-model", "second-model"} <= set(names)
    assert names["first-model"]["serving"] and not names["second-model"]["serving"]


def test_a_switch_answers_202_then_the_new_model_answers(
    client: TestClient, opener: FakeOpener
) -> None:
    opener.loading.clear()
    response = client.post("/v1/hybrid/model", json={"model": "second-model"})
    assert response.status_code == 202
    body = response.json()
    assert body["state"] == "switching" and body["model"] == "first-model"
    assert body["loading"]["model"] == "second-model" and body["loading"]["reason"] == "switch"
    health = client.get("/health")
    assert health.status_code == 200 and health.json()["local"]["state"] == "switching"
    conflict = client.post("/v1/hybrid/model", json={"model": "first-model"})
    assert conflict.status_code == 409
    assert conflict.json()["error"]["code"] == "switch_in_progress"
    opener.loading.set()

    while client.get("/v1/hybrid/model").json()["state"] == "switching":
        pass
    assert client.get("/v1/hybrid/model").json()["model"] == "second-model"
    # Asking for the model served already loads nothing.
    again = client.post("/v1/hybrid/model", json={"model": "second-model", "wait": True})
    assert again.status_code == 200 and again.json()["state"] == "ready"
    assert opener.opened == 2
    reply = client.post(
        "/v1/chat/completions",
        json={"model": "local", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert reply.status_code == 200
    assert reply.headers["x-hybrid-model"] == "second-model"
    assert reply.json()["choices"][0]["message"]["content"] == "second-model"


def test_an_unknown_name_is_a_404_that_lists_the_models(client: TestClient) -> None:
    response = client.post("/v1/hybrid/model", json={"model": "llama-9000"})
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "model_not_found"
    assert "no local model is called 'llama-9000'" in error["message"]
    assert "first-model" in error["message"] and "second-model" in error["message"]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({}, 'send a JSON object {"model": NAME}'),
        ({"model": "/etc/passwd"}, "not a path"),
        ({"model": 3}, "model"),
    ],
)
def test_a_bad_body_is_a_400_that_says_what_to_send(
    client: TestClient, body: dict[str, Any], says: str
) -> None:
    response = client.post("/v1/hybrid/model", json=body)
    assert response.status_code == 400
    assert says in str(response.json()["error"])


def test_an_unloaded_model_keeps_health_200_and_a_slow_reload_goes_to_the_cloud(
    tmp_path: Path, opener: FakeOpener
) -> None:
    with FakeCloud(reply="From the cloud.") as cloud:
        with client_for(tmp_path, opener, cloud, keep_alive=-1) as client:
            state = client.app.state.hybrid  # type: ignore[attr-defined]
            events: list[dict[str, Any]] = []
            state.runtime.subscribe(lambda change: events.append(change.status.to_json()))
            ready(client)
            assert client.portal.call(state.runtime.unload)  # type: ignore[union-attr]
            health = client.get("/health")
            assert health.status_code == 200 and health.json()["status"] == "unloaded"
            assert events[-1]["state"] == "unloaded"

            opener.loading.clear()  # the reload does not end while the request is routed
            reply = client.post(
                "/v1/chat/completions",
                json={"model": "hybrid", "messages": [{"role": "user", "content": "Hi there"}]},
                headers={"X-Hybrid-Route": "auto"},
            )
            assert reply.status_code == 200
            assert reply.headers["x-hybrid-route"] == "cloud"
            assert reply.headers["x-hybrid-reason"].startswith("capacity:unloaded:eta_")
            assert state.runtime.pending is not None  # the request started the reload
            assert state.runtime.pending.reason == "reload"
            opener.loading.set()


def test_a_hub_cache_model_is_switched_to_by_its_org_repo_name(
    tmp_path: Path, opener: FakeOpener, monkeypatch: pytest.MonkeyPatch
) -> None:
    from model_stores import hf_model

    cache = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    with client_for(tmp_path, opener, keep_alive=-1) as client:
        ready(client)
        # A file of its own (a link to a listed one would be the same model, listed once).
        weights = tmp_path / "download" / "tiny.gguf"
        weights.parent.mkdir()
        shutil.copyfile(tmp_path / "models" / "second-model.gguf", weights)
        hf_model(cache, "acme/Tiny-GGUF", {"tiny-q4_k_m.gguf": weights})
        names = [m["name"] for m in client.get("/v1/hybrid/model").json()["available"]]
        hub_names = [name for name in names if name.startswith("acme/Tiny-GGUF")]
        assert len(hub_names) == 1, names
        response = client.post("/v1/hybrid/model", json={"model": hub_names[0], "wait": True})
        assert response.status_code == 200, response.json()
        assert response.json()["model"] == hub_names[0]
        assert response.json()["path"].endswith("tiny-q4_k_m.gguf")
