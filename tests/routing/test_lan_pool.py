"""The LAN pool: a server down at start is marked so (with when it is checked again) and used
again after the breaker's pause; answers are counted in flight until closed; the model check of
LAN answers."""

from __future__ import annotations

import asyncio

import pytest
from fake_cloud import FakeCloud, closed_port
from routing_fakes import BIG
from routing_fakes import LAN_POLICY as POLICY

from hybrid.backend import ReplayGeneration
from hybrid.generation import GenerationDone, Usage
from hybrid.lan.pool import LanPool, LanServer
from hybrid.lan.provider import same_model
from hybrid.lan.reports import LoadSource, ServerLoad
from hybrid.settings.lan import LanSettings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_server_down_at_start_is_marked_down_and_used_again_once_it_answers() -> None:
    port = closed_port()
    clock = Clock()
    settings = LanSettings(
        servers=[
            {
                "name": "late",
                "base_url": f"http://127.0.0.1:{port}/v1",
                "api_key": "sk-fake-openai",
                "models": [BIG],
            }
        ]
    )
    pool = LanPool(settings, POLICY, clock=clock)
    (server,) = pool.servers

    async def scenario() -> None:
        await pool.start()
        assert pool.to_json()[0]["up"] is False
        assert "127.0.0.1" in (pool.to_json()[0]["error"] or "")
        assert pool.to_json()[0]["next_check_in_s"] == POLICY.breaker_reset_s
        assert pool.ranked() == ([], ["late:down"])
        with FakeCloud(models=(BIG,), port=port):
            clock.now += 10.0
            await pool.refresh()  # before the pause: not asked again
            assert server.down_until is not None
            assert pool.to_json()[0]["next_check_in_s"] == POLICY.breaker_reset_s - 10.0
            clock.now += POLICY.breaker_reset_s - 10.0
            await pool.refresh()
            assert pool.to_json()[0]["up"] is True
            assert pool.to_json()[0]["next_check_in_s"] is None
            assert pool.ranked() == ([server], [])
        await pool.aclose()

    asyncio.run(scenario())


def test_an_answer_counts_in_flight_from_its_request_until_it_is_closed() -> None:
    settings = LanSettings(
        servers=[{"name": "a", "base_url": "http://127.0.0.1:9/v1", "max_concurrency": 2}]
    )
    pool = LanPool(settings, POLICY)
    (server,) = pool.servers

    async def scenario() -> None:
        pool.acquire(server)
        pool.acquire(server)
        assert pool.ranked() == ([], ["a:full"])
        pool.release(server)
        tracked = pool.track(server, ReplayGeneration([GenerationDone("stop", Usage(1, 1))]))
        assert server.in_flight == 1
        await tracked.aclose()
        await tracked.aclose()  # closing twice counts once
        assert (server.in_flight, server.answered) == (0, 1)
        await pool.aclose()

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("asked", "answered", "same"),
    [
        ("qwen2.5-32b-instruct", "qwen2.5-32b-instruct", True),
        ("llama3.2", "llama3.2:latest", True),
        ("qwen2.5-32b-instruct", "/models/qwen2.5-32b-instruct.gguf", True),
        ("Qwen/Qwen2.5-32B-Instruct", "Qwen/Qwen2.5-32B-Instruct", True),
        ("qwen2.5-32b-instruct", None, True),
        ("qwen2.5-32b-instruct", "llama3.1:8b", False),
        ("qwen2.5-32b-instruct", "qwen2.5-7b-instruct", False),
    ],
)
def test_the_model_an_answer_names_is_matched_as_servers_spell_it(
    asked: str, answered: str | None, same: bool
) -> None:
    assert same_model(asked, answered) is same


def test_a_server_a_request_found_down_says_why_until_it_is_up_again() -> None:
    settings = LanSettings(servers=[{"name": "a", "base_url": "http://127.0.0.1:9/v1"}])
    pool = LanPool(settings, POLICY)
    (server,) = pool.servers

    async def scenario() -> None:
        pool.went_down(server, "a: could not connect to 127.0.0.1")
        shown = pool.to_json()[0]
        assert (shown["up"], shown["error"]) == (False, "a: could not connect to 127.0.0.1")
        await pool.aclose()

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("running", "waiting", "slots", "why"),
    [
        (8, 0, None, None),  # vLLM busy past max_concurrency, nothing queued: takes more
        (8, 3, None, None),  # a queue shorter than what it runs
        (4, 4, None, "saturated"),  # as many queued as running
        (0, 1, None, "saturated"),  # queued and nothing running
        (4, 0, 4, None),  # every reported slot busy, no queue
        (4, 4, 4, "saturated"),  # slots reported: utilisation 2
    ],
)
def test_a_server_is_passed_over_only_while_its_queue_is_as_long_as_what_it_runs(
    running: int, waiting: int, slots: int | None, why: str | None
) -> None:
    clock = Clock()
    settings = LanSettings(
        servers=[{"name": "a", "base_url": "http://127.0.0.1:9/v1", "models": [BIG]}]
    )
    pool = LanPool(settings, POLICY, clock=clock)  # max_concurrency 4, the default
    (server,) = pool.servers
    source: LoadSource = "vllm /metrics" if slots is None else "llama-server /slots+/metrics"
    idle = None if slots is None else max(slots - running, 0)
    server.load = ServerLoad(running, waiting, slots, idle, source, None, clock.now)

    async def scenario() -> tuple[list[LanServer], list[str]]:
        ranked = pool.ranked()
        await pool.aclose()
        return ranked

    ranked, skipped = asyncio.run(scenario())
    assert (ranked, skipped) == (([], [f"a:{why}"]) if why else ([server], []))
