"""probe_health against the fake cloud on loopback speaking each LAN engine's endpoints."""

from __future__ import annotations

import asyncio

import httpx2
import pytest
from fake_cloud import FakeCloud, Fault, LanKind, closed_port

from hybrid.errors import ConfigError
from hybrid.lan import ServerHealth, probe_health


def check(base_url: str, api_key: str | None = None, timeout_s: float = 2.0) -> ServerHealth:
    async def main() -> ServerHealth:
        async with httpx2.AsyncClient() as client:
            return await probe_health(client, base_url, api_key, timeout_s=timeout_s)

    return asyncio.run(main())


def paths(server: FakeCloud) -> list[str]:
    return [request.path for request in server.requests]


@pytest.mark.parametrize("kind", ["llama-server", "vllm", "ollama", "hybrid"])
def test_a_ready_server_is_up_with_its_models(kind: LanKind) -> None:
    models = ("qwen2.5-32b", "llama3.1-8b")
    with FakeCloud(lan_kind=kind, openai_key=None, models=models) as server:
        health = check(f"{server.base_url}/v1")
    assert health.up and health.error is None and not health.loading
    assert health.models == ("qwen2.5-32b", "llama3.1-8b")
    assert health.serves("qwen2.5-32b") and not health.serves("gpt-4.1")
    assert health.latency_s is not None


def test_health_is_asked_first_then_the_model_list() -> None:
    with FakeCloud(lan_kind="llama-server", openai_key=None) as server:
        check(f"{server.base_url}/v1")
        assert paths(server) == ["/health", "/v1/models"]


@pytest.mark.parametrize(
    ("kind", "says"), [("llama-server", "503, Loading model"), ("hybrid", "503, loading")]
)
def test_a_server_loading_its_model_is_down_and_loading(kind: LanKind, says: str) -> None:
    with FakeCloud(lan_kind=kind, openai_key=None) as server:
        server.loading = True
        health = check(f"{server.base_url}/v1")
    assert not health.up and health.loading
    assert health.error is not None and says in health.error
    assert health.models == ()


def test_a_server_that_is_not_running_is_down_with_the_reason() -> None:
    health = check(f"http://127.0.0.1:{closed_port()}/v1")
    assert not health.up and not health.loading
    assert health.error is not None and "cannot connect" in health.error
    assert health.latency_s is None


@pytest.mark.parametrize(
    ("fault", "says"),
    [
        (Fault.malformed(), "did not answer an OpenAI model list"),
        (Fault.html(), "did not answer an OpenAI model list ('<!doctype html>"),
        (Fault.reset(after_chunks=1), "closed the connection mid-answer"),
        (Fault.stall(after_chunks=1, stall_s=0), "closed the connection mid-answer"),
        (Fault.hang_up(), "closed the connection mid-answer"),
        (Fault.status(500), "answered 500"),
        (Fault.not_found(), "answered 404"),
    ],
    ids=lambda value: value.kind if isinstance(value, Fault) else None,
)
def test_a_model_list_that_cannot_be_read_is_down(fault: Fault, says: str) -> None:
    with FakeCloud(lan_kind="vllm", openai_key=None) as server:
        server.fail("/v1/models", fault)
        health = check(f"{server.base_url}/v1")
    assert not health.up and not health.loading
    assert health.error is not None and says in health.error


def test_a_refused_key_is_down_and_says_which_setting_to_check() -> None:
    with FakeCloud(lan_kind="vllm", openai_key="right-key") as server:
        refused = check(f"{server.base_url}/v1", "wrong-key")
        accepted = check(f"{server.base_url}/v1", "right-key")
    assert not refused.up
    assert refused.error is not None and "refused the key" in refused.error
    assert "api_key_env" in refused.error
    assert accepted.up


def test_a_failing_health_endpoint_is_down() -> None:
    with FakeCloud(lan_kind="llama-server", openai_key=None) as server:
        server.fail("/health", Fault.status(500))
        health = check(f"{server.base_url}/v1")
    assert not health.up and health.error is not None and "/health answered 500" in health.error


def test_a_silent_server_is_down_within_the_timeout() -> None:
    with FakeCloud(lan_kind="llama-server", openai_key=None) as server:
        server.fail("/health", Fault.black_hole())
        health = check(f"{server.base_url}/v1", timeout_s=0.3)
    assert not health.up
    assert health.error is not None and "no answer from" in health.error


def test_an_ollama_without_models_is_up_and_serves_nothing() -> None:
    with FakeCloud(lan_kind="ollama", openai_key=None, models=()) as server:
        health = check(f"{server.base_url}/v1")
    assert health.up and health.models == ()


@pytest.mark.parametrize(
    "base_url", ["gpu-box:8080/v1", "ftp://gpu-box/v1", "http:///v1", "http://gpu-box/v1?x=1"]
)
def test_a_base_url_that_is_not_one_is_a_config_error(base_url: str) -> None:
    with pytest.raises(ConfigError, match=r"such as http://gpu-box:8080/v1"):
        check(base_url)


def test_to_json_shows_what_hybrid_probe_prints() -> None:
    health = ServerHealth(True, ("m",), None, False, 0.01234, 5.0)
    assert health.to_json() == {
        "up": True,
        "models": ["m"],
        "error": None,
        "loading": False,
        "latency_ms": 12.3,
    }
