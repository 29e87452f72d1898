"""Through the HTTP API: a request the local model cannot take is answered by a LAN server
(headers and ledger say so), and ``/health`` shows each server, down ones with why."""

from __future__ import annotations

from collections.abc import Callable

from fake_cloud import FakeCloud, closed_port
from fastapi.testclient import TestClient
from scripted import ScriptedBackend, scripted_app

from hybrid.errors import ContextLengthExceededError
from hybrid.settings import Settings

BIG = "qwen2.5-32b-instruct"


def lan_settings(settings_for: Callable[..., Settings], box: FakeCloud) -> Settings:
    servers = [
        {
            "name": "gpu-box",
            "base_url": f"{box.base_url}/v1",
            "api_key": box.openai_key,
            "models": [BIG],
        },
        {"name": "spare", "base_url": f"http://127.0.0.1:{closed_port()}/v1", "models": [BIG]},
    ]
    return settings_for(**{"probe.measure_bandwidth": False, "lan.servers": servers})


def test_a_prompt_too_long_for_the_device_is_answered_by_the_lan_server(
    settings_for: Callable[..., Settings], backend: ScriptedBackend
) -> None:
    backend.fail_on_start = ContextLengthExceededError(
        prompt_tokens=9000, max_tokens=100, context_length=8192
    )
    with FakeCloud(reply="from the team's box", models=(BIG,)) as box:
        app = scripted_app(lan_settings(settings_for, box), backend)
        with TestClient(app) as client:
            response = client.post(
                "/v1/chat/completions",
                json={"model": "hybrid", "messages": [{"role": "user", "content": "hi"}]},
            )
            health = client.get("/health").json()
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "from the team's box"
    assert response.headers["x-hybrid-route"] == "lan"
    assert response.headers["x-hybrid-model"] == f"gpu-box/{BIG}"
    assert response.headers["x-hybrid-reason"].startswith(f"lan:gpu-box/{BIG};length:")
    assert [r.body["model"] for r in box.requests if r.body is not None] == [BIG]
    servers = {s["name"]: s for s in health["lan"]["servers"]}
    assert health["lan"]["strategy"] == "least_loaded"
    assert servers["gpu-box"]["up"] is True and servers["gpu-box"]["answered"] == 1
    assert servers["gpu-box"]["in_flight"] == 0
    assert servers["spare"]["up"] is False
    assert "cannot connect" in servers["spare"]["error"]


def test_a_clients_top_k_reaches_the_lan_server(
    settings_for: Callable[..., Settings], backend: ScriptedBackend
) -> None:
    with FakeCloud(reply="from the team's box", models=(BIG,)) as box:
        app = scripted_app(lan_settings(settings_for, box), backend)
        with TestClient(app) as client:
            response = client.post(
                "/v1/chat/completions",
                headers={"X-Hybrid-Route": "lan"},
                json={
                    "model": "hybrid",
                    "messages": [{"role": "user", "content": "hi"}],
                    "top_k": 5,
                },
            )
            unset = client.post(
                "/v1/chat/completions",
                headers={"X-Hybrid-Route": "lan"},
                json={"model": "hybrid", "messages": [{"role": "user", "content": "hi"}]},
            )
    assert response.status_code == unset.status_code == 200, response.text
    assert response.headers["x-hybrid-route"] == "lan"
    sent = [r.body for r in box.requests if r.body is not None]
    assert [body.get("top_k") for body in sent] == [5, None]
