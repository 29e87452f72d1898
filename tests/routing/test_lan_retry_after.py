"""What a client hears when a request only LAN servers may answer (``X-Hybrid-Route: lan``)
finds none, as after the cloud's failures: a rate limit (429) when every server was rate
limiting it, else no route (503); and in ``Retry-After`` what is left of the soonest wait a
server asked for (its 429's), an open circuit it was passed over for sets, or a server it passed
over as down has until its next check.

The servers are real HTTP servers on loopback (`FakeCloud` speaking OpenAI's wire format),
reached through the real `LanPool` and `LanProvider`; one fake clock serves the pool (its
servers' breakers) and the dispatcher.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence

from fake_cloud import FakeCloud, Fault, closed_port
from routing_fakes import BIG, LAN_POLICY, FakeLocal

from hybrid.errors import NoRouteError, QueueFullError
from hybrid.generation import GenerationRequest, Message
from hybrid.lan.pool import LanPool
from hybrid.routing.chain import build_router
from hybrid.routing.dispatcher import Dispatcher
from hybrid.routing.lan import LanTier
from hybrid.routing.names import ModelNames
from hybrid.settings.lan import LanSettings
from hybrid.settings.routing import RoutingSettings
from hybrid.wire.errors import wire_error

Round = Sequence[tuple[FakeCloud, Fault]]
"""The faults pushed to the servers before one request."""

REQUEST = GenerationRequest("r1", messages=(Message("user", "What is the capital of France?"),))


class Clock:
    """Monotonic seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _outcomes(
    clock: Clock, servers: Sequence[FakeCloud | None], *rounds: Round, pause_s: float = 0.0
) -> list[NoRouteError | None]:
    """Send one ``X-Hybrid-Route: lan`` request to the servers (``a`` first, then ``b``; one
    attempt each, and one failure opens a server's circuit; the local model is busy) for each
    round of faults the servers are to answer it with, the clock moving ``pause_s`` between
    rounds: each one's NoRouteError, or None when a server answered.  A server given as None
    is down: nothing listens on its port."""
    settings = LanSettings(
        servers=[
            {
                "name": name,
                "base_url": f"http://127.0.0.1:{closed_port()}/v1"
                if box is None
                else f"{box.base_url}/v1",
                "api_key": None if box is None else box.openai_key,
                "models": [BIG],
            }
            for name, box in zip("ab", servers, strict=False)
        ],
        max_attempts=1,
    )
    pool = LanPool(settings, dataclasses.replace(LAN_POLICY, breaker_failures=1), clock=clock)
    dispatcher = Dispatcher(
        FakeLocal(QueueFullError(depth=4, retry_after=2)),
        {},
        ModelNames([], None),
        router=build_router(RoutingSettings()),
        lan=LanTier(pool),
        clock=clock,
    )

    async def scenario() -> list[NoRouteError | None]:
        outcomes: list[NoRouteError | None] = []
        try:
            for index, faults in enumerate(rounds):
                if index:
                    clock.now += pause_s
                for box, fault in faults:
                    box.push(fault)
                try:
                    answer = await dispatcher.start(REQUEST, model="hybrid", override="lan")
                except NoRouteError as exc:
                    outcomes.append(exc)
                else:
                    await answer.generation.aclose()
                    outcomes.append(None)
        finally:
            await pool.aclose()
        return outcomes

    return asyncio.run(scenario())


def _told(error: NoRouteError | None) -> tuple[int, str | None]:
    """The status the client is told, and its ``Retry-After`` when it has one."""
    assert error is not None
    wire = wire_error(error)
    return wire.status, wire.headers().get("Retry-After")


def test_a_servers_wait_is_told_and_its_open_circuit_holds_it(
    boxes: tuple[FakeCloud, FakeCloud],
) -> None:
    # The server asks for 120 s, which opens its circuit for as long (not only the 30 s of
    # breaker_reset_s): 12 s later it is passed over, and the client is told the 108 s left.
    # The only server rate-limited the request, then is skipped for it: both are rate limits.
    a, _ = boxes
    clock = Clock()

    first, second = _outcomes(
        clock, [a], [(a, Fault.rate_limit(retry_after_s=120))], [], pause_s=12.0
    )

    assert _told(first) == (429, "120")
    assert second is not None and "(lan:busy)" in str(second)
    assert _told(second) == (429, "108")
    assert len(a.requests) == 1, "the open circuit sent nothing"


def test_an_open_circuit_passed_over_tells_its_wait_when_it_is_the_soonest(
    boxes: tuple[FakeCloud, FakeCloud],
) -> None:
    # a fails the first request (its circuit opens for 30 s) and b answers it.  10 s later a
    # is passed over and b asks for 45 s: the client is told a's 20 s.
    a, b = boxes
    clock = Clock()

    first, second = _outcomes(
        clock,
        [a, b],
        [(a, Fault.status(503))],
        [(b, Fault.rate_limit(retry_after_s=45))],
        pause_s=10.0,
    )

    assert first is None, "b answered the first request"
    assert second is not None and "(lan:failed:b:rate_limited)" in str(second)
    assert _told(second) == (503, "20"), "a's circuit a 503 opened: not every server rate limits"
    assert len(a.requests) == 1, "the open circuit sent nothing"


def test_without_a_wait_said_no_retry_after_is_told(boxes: tuple[FakeCloud, FakeCloud]) -> None:
    a, _ = boxes

    [refused] = _outcomes(Clock(), [a], [(a, Fault.status(503))])

    assert refused is not None and refused.should_retry
    assert _told(refused) == (503, None)


def test_every_server_rate_limiting_is_a_rate_limit_in_both_apis(
    boxes: tuple[FakeCloud, FakeCloud],
) -> None:
    a, b = boxes

    [limited] = _outcomes(
        Clock(),
        [a, b],
        [(a, Fault.rate_limit(retry_after_s=45)), (b, Fault.rate_limit(retry_after_s=30))],
    )

    assert limited is not None and limited.rate_limited and limited.should_retry
    assert "every LAN server is rate limiting requests" in str(limited)
    wire = wire_error(limited)
    assert (wire.status, wire.headers()["Retry-After"]) == (429, "30")
    assert wire.headers()["X-Hybrid-Reason"] == "error:rate_limit_exceeded;lan:a:rate_limited"
    assert wire.body("openai")["error"]["code"] == "rate_limit_exceeded"
    assert wire.body("anthropic")["error"]["type"] == "rate_limit_error"
    assert len(a.requests) == len(b.requests) == 1


def test_a_rate_limit_beside_a_server_that_is_down_stays_no_route(
    boxes: tuple[FakeCloud, FakeCloud],
) -> None:
    # a rate-limits the request (60 s) and b refuses the connection (checked again in 30 s):
    # not every server is rate limiting, and the sooner wait is b's.  10 s later a is skipped
    # for the circuit its 429 opened and b is still marked down: still no route, with the
    # sooner of what is left of a's wait (50 s) and of the time to b's next check (20 s).
    a, _ = boxes
    clock = Clock()

    first, second = _outcomes(
        clock, [a, None], [(a, Fault.rate_limit(retry_after_s=60))], [], pause_s=10.0
    )

    assert first is not None and not first.rate_limited
    assert _told(first) == (503, "30")
    assert wire_error(first).body("anthropic")["error"]["type"] == "overloaded_error"
    assert second is not None and "(lan:busy)" in str(second)
    assert _told(second) == (503, "20")
    assert len(a.requests) == 1, "the open circuit sent nothing"


def test_servers_that_are_down_tell_the_time_to_their_next_check() -> None:
    # Both refuse the connection and are marked down, checked again in 30 s (breaker_reset_s).
    # The request that finds them down and those after it until then are told what is left
    # of that.
    clock = Clock()

    found, then, later = _outcomes(clock, [None, None], [], [], [], pause_s=10.0)

    assert found is not None and "(lan:failed:a:unavailable)" in str(found)
    assert _told(found) == (503, "30"), "the request that found them down waits for the check"
    assert then is not None and "(lan:down)" in str(then)
    assert _told(then) == (503, "20")
    assert _told(later) == (503, "10")
    assert then.failures == ["lan:a:down", "lan:b:down"]


def test_a_server_down_is_told_when_its_check_is_sooner_than_a_rate_limits_wait(
    boxes: tuple[FakeCloud, FakeCloud],
) -> None:
    # a refuses the connection (down, checked again in 30 s) and b answers the first request.
    # b then asks for 60 s: a's next check is sooner, and a server down is no rate limit.
    _, b = boxes

    first, second = _outcomes(Clock(), [None, b], [], [(b, Fault.rate_limit(retry_after_s=60))])

    assert first is None, "b answered the first request"
    assert second is not None and "(lan:failed:b:rate_limited)" in str(second)
    assert not second.rate_limited
    assert _told(second) == (503, "30")
    assert wire_error(second).body("anthropic")["error"]["type"] == "overloaded_error"
