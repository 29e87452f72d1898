"""LoadProbe against the fake cloud on loopback speaking each LAN engine's load endpoints."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

import httpx2
import pytest
from fake_cloud import FakeCloud, Fault, closed_port

from hybrid.lan import LoadProbe, ServerLoad, probe_load

T = TypeVar("T")


def run(scenario: Callable[[httpx2.AsyncClient], Awaitable[T]]) -> T:
    async def main() -> T:
        async with httpx2.AsyncClient() as client:
            return await scenario(client)

    return asyncio.run(main())


def paths(server: FakeCloud) -> list[str]:
    return [request.path for request in server.requests]


def v1(server: FakeCloud) -> str:
    """The server's OpenAI base URL, as a LAN server is configured."""
    return f"{server.base_url}/v1"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def llama() -> Iterator[FakeCloud]:
    with FakeCloud(lan_kind="llama-server", openai_key=None, slots=4) as server:
        yield server


def test_llama_server_with_metrics_gives_slots_running_and_queue(llama: FakeCloud) -> None:
    llama.running, llama.waiting = 2, 3
    load = run(lambda client: probe_load(client, v1(llama)))
    assert load is not None
    assert (load.running, load.waiting) == (2, 3)
    assert (load.slots_total, load.slots_idle) == (4, 2)
    assert load.source == "llama-server /slots+/metrics"
    assert load.models_loaded is None


def test_llama_server_without_metrics_gives_slots_and_no_queue() -> None:
    with FakeCloud(lan_kind="llama-server", openai_key=None, slots=2, metrics=False) as server:
        server.running = 2
        load = run(lambda client: probe_load(client, v1(server)))
    assert load is not None
    assert (load.running, load.waiting, load.slots_total, load.slots_idle) == (2, None, 2, 0)
    assert load.source == "llama-server /slots"


def test_llama_server_without_slots_endpoint_falls_back_to_metrics(llama: FakeCloud) -> None:
    llama.fail("/slots", Fault.status(501))  # started with --no-slots
    llama.running, llama.waiting = 1, 5
    load = run(lambda client: probe_load(client, v1(llama)))
    assert load is not None
    assert (load.running, load.waiting, load.slots_total) == (1, 5, None)
    assert load.source == "llama-server /metrics"


def test_vllm_gauges_are_read_from_its_prometheus_text() -> None:
    with FakeCloud(lan_kind="vllm", openai_key=None) as server:
        server.running, server.waiting = 5, 7
        load = run(lambda client: probe_load(client, v1(server)))
    assert load is not None
    assert (load.running, load.waiting, load.slots_total) == (5, 7, None)
    assert load.source == "vllm /metrics"


def test_ollama_lists_its_loaded_models_and_nothing_about_requests() -> None:
    models = ("qwen2.5:32b", "llama3.1:8b")
    with FakeCloud(lan_kind="ollama", openai_key=None, models=models) as server:
        server.loaded = ("qwen2.5:32b", "llama3.1:8b")
        load = run(lambda client: probe_load(client, v1(server)))
    assert load is not None
    assert load.source == "ollama /api/ps"
    assert load.models_loaded == ("qwen2.5:32b", "llama3.1:8b")
    assert (load.running, load.waiting) == (None, None)


def test_another_hybrid_reports_from_its_health_not_its_own_metrics() -> None:
    with FakeCloud(lan_kind="hybrid", openai_key=None, models=("gemma-3-270m",), slots=2) as server:
        server.running, server.waiting = 2, 4
        load = run(lambda client: probe_load(client, v1(server)))
    assert load is not None
    assert load.source == "hybrid /health"
    assert (load.running, load.waiting, load.slots_total, load.slots_idle) == (2, 4, 2, 0)
    assert load.models_loaded == ("gemma-3-270m",)


@pytest.mark.parametrize("suffix", ["", "/", "/v1", "/v1/"])
def test_the_root_is_found_whatever_the_base_url_ends_with(llama: FakeCloud, suffix: str) -> None:
    load = run(lambda client: probe_load(client, llama.base_url + suffix))
    assert load is not None and load.source == "llama-server /slots+/metrics"
    assert all(not path.startswith("/v1/") for path in paths(llama))


def test_what_worked_is_asked_alone_next_time() -> None:
    with FakeCloud(lan_kind="hybrid", openai_key=None) as server:

        async def scenario(client: httpx2.AsyncClient) -> list[str]:
            probe = LoadProbe(client, v1(server))
            await probe.probe()
            server.reset()
            server.running = 1
            load = await probe.probe()
            assert load is not None and load.running == 1
            return paths(server)

        assert run(scenario) == ["/health"]


def test_llama_server_is_asked_for_slots_and_metrics_together(llama: FakeCloud) -> None:
    async def scenario(client: httpx2.AsyncClient) -> list[str]:
        probe = LoadProbe(client, v1(llama))
        await probe.probe()
        llama.reset()
        llama.waiting = 9
        load = await probe.probe()
        assert load is not None and load.waiting == 9
        return paths(llama)

    assert sorted(run(scenario)) == ["/metrics", "/slots"]


def test_a_kind_hint_asks_that_kind_first() -> None:
    with FakeCloud(lan_kind="hybrid", openai_key=None) as server:
        load = run(lambda client: probe_load(client, v1(server), kind_hint="hybrid"))
        assert load is not None
        assert paths(server) == ["/health"]


def test_a_server_without_load_endpoints_is_left_alone_for_a_while() -> None:
    clock = FakeClock()
    with FakeCloud() as plain:  # an OpenAI-compatible server with /v1/models and nothing else

        async def scenario(client: httpx2.AsyncClient) -> None:
            probe = LoadProbe(
                client,
                f"{plain.base_url}/v1",
                plain.openai_key,
                rediscover_after_s=60,
                clock=clock,
            )
            assert await probe.probe() is None
            assert probe.problem is not None and "reports no load" in probe.problem
            assert "/slots: 404" in probe.problem
            asked = len(plain.requests)
            clock.now += 30
            assert await probe.probe() is None
            assert len(plain.requests) == asked  # not asked again yet
            clock.now += 31
            await probe.probe()
            assert len(plain.requests) > asked

        run(scenario)


def test_an_unreachable_server_gives_none_with_the_reason() -> None:
    base_url = f"http://127.0.0.1:{closed_port()}/v1"

    async def scenario(client: httpx2.AsyncClient) -> tuple[ServerLoad | None, str | None]:
        probe = LoadProbe(client, base_url)
        return await probe.probe(), probe.problem

    load, problem = run(scenario)
    assert load is None
    assert problem is not None and "cannot connect" in problem


def test_a_server_that_changed_kind_is_learnt_again(llama: FakeCloud) -> None:
    async def scenario(client: httpx2.AsyncClient) -> ServerLoad | None:
        probe = LoadProbe(client, v1(llama))
        assert (await probe.probe()) is not None
        llama.fail("/slots", Fault.malformed())
        return await probe.probe()

    load = run(scenario)
    assert load is not None and load.source == "llama-server /metrics"


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        (Fault.reset(after_chunks=1), "closed the connection mid-answer"),
        (Fault.hang_up(), "closed the connection mid-answer"),
        (Fault.status(503), "answered 503"),
    ],
    ids=lambda value: value.kind if isinstance(value, Fault) else None,
)
def test_a_cut_or_refused_answer_keeps_what_was_learnt(
    llama: FakeCloud, fault: Fault, reason: str
) -> None:
    async def scenario(client: httpx2.AsyncClient) -> None:
        probe = LoadProbe(client, v1(llama))
        assert (await probe.probe()) is not None
        llama.fail("/slots", fault)
        assert await probe.probe() is None
        assert probe.problem is not None and reason in probe.problem
        llama.reset()
        load = await probe.probe()
        assert load is not None and load.source == "llama-server /slots+/metrics"
        assert sorted(paths(llama)) == ["/metrics", "/slots"]

    run(scenario)


def test_a_silent_server_gives_none_within_the_timeout(llama: FakeCloud) -> None:
    llama.fail("/slots", Fault.black_hole())

    async def scenario(client: httpx2.AsyncClient) -> str | None:
        probe = LoadProbe(client, v1(llama), timeout_s=0.3)
        assert await probe.probe() is None
        return probe.problem

    problem = run(scenario)
    assert problem is not None and "no answer from" in problem


def test_a_loading_llama_server_is_asked_again_once_loaded(llama: FakeCloud) -> None:
    llama.loading = True

    async def scenario(client: httpx2.AsyncClient) -> ServerLoad | None:
        probe = LoadProbe(client, v1(llama))
        assert await probe.probe() is None
        assert probe.problem is not None and "503" in probe.problem
        llama.loading = False
        return await probe.probe()

    load = run(scenario)
    assert load is not None and load.slots_total == 4


def test_a_refused_key_is_named_in_the_problem() -> None:
    with FakeCloud(lan_kind="llama-server", openai_key="right-key") as server:

        async def scenario(client: httpx2.AsyncClient) -> str | None:
            probe = LoadProbe(client, v1(server), "wrong-key")
            assert await probe.probe() is None
            return probe.problem

        problem = run(scenario)
        assert problem is not None and "401, the key was refused" in problem
        load = run(lambda client: probe_load(client, v1(server), "right-key"))
        assert load is not None and load.source == "llama-server /slots+/metrics"


@pytest.mark.parametrize("fault", [Fault.html(), Fault.malformed()], ids=["html", "malformed"])
def test_a_metrics_page_that_is_not_prometheus_text_gives_none(fault: Fault) -> None:
    with FakeCloud(lan_kind="vllm", openai_key=None) as server:
        server.fail("/metrics", fault)

        async def scenario(client: httpx2.AsyncClient) -> str | None:
            probe = LoadProbe(client, v1(server))
            assert await probe.probe() is None
            return probe.problem

        problem = run(scenario)
    assert problem is not None and "/metrics: not llama-server or vLLM metrics" in problem
