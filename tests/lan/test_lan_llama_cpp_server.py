"""What the probes get from real servers on the embedded model.

llama-cpp-python's own server (``python -m llama_cpp.server``) has ``/v1/models`` and none of
``/health``, ``/slots``, ``/metrics``, ``/api/ps``: it is up with its model, and its load is
hybrid's own in-flight count.  Another ``hybrid serve`` reports its slots and queue on
``/health``."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from server_process import RunningServer, ServeProcesses, free_port, start_server

from hybrid.lan import LoadProbe, ServerHealth, ServerLoad, probe_health
from hybrid.models.embedded import ensure_embedded_model

pytestmark = pytest.mark.slow

KEY = "lan-test-key"


@pytest.fixture(scope="module")
def llama_cpp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """llama-cpp-python's OpenAI-compatible server on the embedded model, with a key."""
    model = ensure_embedded_model(tmp_path_factory.mktemp("hybrid-home"))
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(model),
        "--model_alias",
        "gemma-lan",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        "512",
        "--api_key",
        KEY,
        "--verbose",
        "false",
    ]
    log: Path = tmp_path_factory.mktemp("llama-cpp-server") / "server.log"
    # The readiness poll sends no key, and /v1/models wants one: FastAPI's /docs needs none.
    server = start_server(
        command, port=port, log=log, ready_path="/docs", timeout_s=120, what="llama server"
    )
    try:
        yield server
    finally:
        server.stop(grace_s=30)


def health_of(server: RunningServer, key: str | None) -> ServerHealth:
    async def main() -> ServerHealth:
        async with httpx2.AsyncClient() as client:
            return await probe_health(client, f"{server.base_url}/v1", key, timeout_s=10)

    return asyncio.run(main())


def test_it_is_up_with_its_model_though_it_has_no_health_endpoint(
    llama_cpp_server: RunningServer,
) -> None:
    health = health_of(llama_cpp_server, KEY)
    assert health.up, health.error
    assert health.models == ("gemma-lan",)


def test_a_wrong_key_marks_it_down_and_says_so(llama_cpp_server: RunningServer) -> None:
    health = health_of(llama_cpp_server, "not-the-key")
    assert not health.up
    assert health.error is not None and "refused the key" in health.error


def test_it_reports_no_load_so_hybrid_counts_its_own(llama_cpp_server: RunningServer) -> None:
    async def main() -> tuple[object, str | None]:
        async with httpx2.AsyncClient() as client:
            probe = LoadProbe(client, f"{llama_cpp_server.base_url}/v1", KEY, timeout_s=10)
            return await probe.probe(), probe.problem

    load, problem = asyncio.run(main())
    assert load is None
    assert problem is not None, problem
    for path in ("/slots: 404", "/metrics: 404", "/api/ps: 404", "/health: 404"):
        assert path in problem


@pytest.fixture(scope="module")
def hybrid_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A real ``hybrid serve`` on the embedded model: another team member's hybrid."""
    servers = ServeProcesses(
        tmp_path_factory.mktemp("hybrid-home"), lambda: tmp_path_factory.mktemp("hybrid")
    )
    try:
        yield servers.start()
    finally:
        servers.close()


def test_another_hybrid_reports_its_slots_and_queue(hybrid_server: RunningServer) -> None:
    async def main() -> tuple[ServerLoad | None, ServerHealth]:
        async with httpx2.AsyncClient() as client:
            base_url = f"{hybrid_server.base_url}/v1"
            load = await LoadProbe(client, base_url, timeout_s=10).probe()
            return load, await probe_health(client, base_url, timeout_s=10)

    load, health = asyncio.run(main())
    assert load is not None and load.source == "hybrid /health"
    assert load.slots_total is not None and load.slots_total >= 1
    assert (load.running, load.waiting, load.slots_idle) == (0, 0, load.slots_total)
    assert load.models_loaded is not None and len(load.models_loaded) == 1
    assert health.up, health.error
    assert load.models_loaded[0] in health.models
