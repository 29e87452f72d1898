"""``GET /health`` says which difficulty calibration the router uses for the served model."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from fake_cloud import closed_port
from fastapi.testclient import TestClient
from scripted import ScriptedBackend, ScriptedRuntime, scripted_app

from hybrid.routing.difficulty.features import FEATURE_VERSION, N_FEATURES
from hybrid.routing.difficulty.model import DifficultyModel
from hybrid.routing.difficulty.store import gguf_sha256, save
from hybrid.settings import Settings


class ServedFile(ScriptedRuntime):
    """A scripted model served from a real file, so its calibration can be looked up by hash."""

    def __init__(self, settings: Settings, path: Path) -> None:
        super().__init__(settings, ScriptedBackend())
        self.path = path

    @property
    def loaded_path(self) -> Path | None:
        return self.path if self.state == "ready" else None


def model(**meta: object) -> DifficultyModel:
    return DifficultyModel(
        weights=np.zeros(N_FEATURES),
        bias=0.0,
        threshold=0.4,
        feature_version=FEATURE_VERSION,
        mean=np.zeros(N_FEATURES),
        scale=np.ones(N_FEATURES),
        meta=meta,
    )


def calibration_after_lookup(client: TestClient) -> dict[str, object]:
    """The health's calibration once the lookup (started on a thread when the model loaded)
    has run: it is run here too, so the answer does not depend on the thread's progress."""
    client.app.state.hybrid.calibration.look_up_now()  # type: ignore[attr-defined]
    response = client.get("/health")
    assert response.status_code == 200
    found: dict[str, object] = response.json()["calibration"]
    return found


def test_health_shows_your_calibration_with_its_date_items_and_auroc(
    settings_for: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = settings_for(**{"probe.measure_bandwidth": False})
    served = tmp_path / "served.gguf"
    served.write_bytes(b"GGUF" + b"\0" * 64)
    mine = save(
        settings.home,
        gguf_sha256(served),
        model(created="2026-12-01", items=180, held_out_auroc=0.8123),
    )

    with TestClient(scripted_app(settings, runtime=ServedFile(settings, served))) as client:
        calibration = calibration_after_lookup(client)

    assert calibration == {
        "state": "found",
        "source": "user",
        "path": str(mine),
        "created": "2026-12-01",
        "items": 180,
        "held_out_auroc": 0.8123,
        "model_stage": None,
        "words": True,
        "problem": None,
        "prior": None,
        "background": None,
        # Refitting from labelled traffic (routing.learn.refit_after): none has run yet, and
        # no label has been read (routing.difficulty.labelled_neighbours).
        "refit": {"refit_after": 50, "labels": 0, "read_beside": 0, "last": None},
    }


def test_health_says_when_the_served_model_has_no_calibration(
    settings_for: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = settings_for(**{"probe.measure_bandwidth": False})
    served = tmp_path / "served.gguf"
    served.write_bytes(b"GGUF" + b"\1" * 64)

    with TestClient(scripted_app(settings, runtime=ServedFile(settings, served))) as client:
        calibration = calibration_after_lookup(client)

    assert calibration["state"] == "missing" and calibration["source"] is None


def test_while_the_model_loads_the_calibration_is_waiting(
    settings_for: Callable[..., Settings],
) -> None:
    settings = settings_for(**{"probe.measure_bandwidth": False})
    runtime = ScriptedRuntime(settings, ScriptedBackend(), ready=False)

    with TestClient(scripted_app(settings, runtime=runtime)) as client:
        response = client.get("/health")

    assert response.status_code == 503
    assert response.json()["calibration"]["state"] == "waiting"


def routing_of(settings: Settings) -> dict[str, object]:
    with TestClient(scripted_app(settings)) as client:
        response = client.get("/health")
    assert response.status_code == 200
    routing: dict[str, object] = response.json()["routing"]
    return routing


def test_health_says_where_requests_escalate_and_that_the_cascade_reads_answers(
    settings_for: Callable[..., Settings],
) -> None:
    settings = settings_for(
        **{
            "probe.measure_bandwidth": False,
            "cloud.openai.api_key": "sk-fake-openai",
            "cloud.default_model": "openai/gpt-5.4-mini",
        }
    )

    assert routing_of(settings) == {
        "escalates_to": "openai/gpt-5.4-mini",
        "lan_first": [],
        "cascade": {"enabled": True, "reads_answers": True, "min_confidence": 0.35},
    }


def test_with_no_cloud_the_cascade_reads_nothing(
    settings_for: Callable[..., Settings],
) -> None:
    settings = settings_for(**{"probe.measure_bandwidth": False})

    assert routing_of(settings) == {
        "escalates_to": None,
        "lan_first": [],
        "cascade": {"enabled": True, "reads_answers": False, "min_confidence": 0.35},
    }


def test_with_lan_servers_and_no_cloud_health_names_them_and_the_cascade_reads_answers(
    settings_for: Callable[..., Settings],
) -> None:
    port = closed_port()
    servers = [
        {"name": name, "base_url": f"http://127.0.0.1:{port}/v1", "models": ["qwen2.5-32b"]}
        for name in ("gpu-box", "spare")
    ]
    settings = settings_for(**{"probe.measure_bandwidth": False, "lan.servers": servers})

    assert routing_of(settings) == {
        "escalates_to": None,
        "lan_first": ["gpu-box", "spare"],
        "cascade": {"enabled": True, "reads_answers": True, "min_confidence": 0.35},
    }


def test_with_the_cascade_off_health_says_so(settings_for: Callable[..., Settings]) -> None:
    settings = settings_for(
        **{
            "probe.measure_bandwidth": False,
            "cloud.openai.api_key": "sk-fake-openai",
            "routing.cascade.enabled": False,
        }
    )

    routing = routing_of(settings)

    assert routing["cascade"] == {"enabled": False, "reads_answers": False, "min_confidence": None}
    assert str(routing["escalates_to"]).startswith("openai/")
