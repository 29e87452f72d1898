"""The ``Retry-After`` a client hears when no cloud target answers: what is left, when the error
is built, of the soonest wait a provider asked for (its 429's, or its open circuit's), counted
from when each was said.

Real providers call the fake cloud; one fake clock serves the providers (their breakers) and the
dispatcher, and the providers' waits between retries move it instead of sleeping.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator, Sequence
from typing import Any

import httpx2
import pytest
from fake_cloud import FakeCloud, Fault
from pydantic import SecretStr
from routing_fakes import FakeLocal

from hybrid.cloud.anthropic_provider import AnthropicProvider
from hybrid.cloud.openai_provider import OpenAIProvider
from hybrid.cloud.policy import ReliabilityPolicy
from hybrid.cloud.provider import CloudProvider
from hybrid.errors import NoRouteError
from hybrid.generation import GenerationRequest, Message
from hybrid.routing.chain import build_router
from hybrid.routing.dispatcher import Dispatcher
from hybrid.routing.names import ModelNames, ProviderModels
from hybrid.settings.routing import RoutingSettings
from hybrid.wire.errors import wire_error

REQUEST = GenerationRequest("r1", messages=(Message("user", "hi"),))


class Stopwatch:
    """A monotonic clock that moves only when a provider waits (or the test says so)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def cloud() -> Iterator[FakeCloud]:
    with FakeCloud(models=("gpt-4.1-mini",)) as fake:
        yield fake


def _policy(breaker_failures: int) -> ReliabilityPolicy:
    # Waits up to 20 s are honoured with a retry; a longer one fails over at once.  The time
    # limit is far off, so that only the fake clock's time counts.
    return ReliabilityPolicy(
        max_attempts=2,
        max_total_s=600.0,
        backoff_base_s=0.0,
        backoff_max_s=0.0,
        max_retry_after_s=20.0,
        breaker_failures=breaker_failures,
    )


def _providers(
    cloud: FakeCloud, client: httpx2.AsyncClient, clock: Stopwatch, breaker_failures: int
) -> dict[str, CloudProvider]:
    common: dict[str, Any] = {
        "client": client,
        "policy": _policy(breaker_failures),
        "sleep": clock.sleep,
        "rng": random.Random(0),
        "clock": clock,
    }
    return {
        "openai": OpenAIProvider(
            name="openai",
            base_url=cloud.base_url + "/v1",
            api_key=SecretStr(cloud.openai_key or ""),
            models=("gpt-4.1-mini",),
            **common,
        ),
        "anthropic": AnthropicProvider(
            name="anthropic",
            base_url=cloud.base_url,
            api_key=SecretStr(cloud.anthropic_key),
            models=("claude-haiku-4-5",),
            **common,
        ),
    }


def _outcomes(
    cloud: FakeCloud,
    clock: Stopwatch,
    *faults: Sequence[Fault],
    pause_s: float = 0.0,
    breaker_failures: int = 5,
) -> list[NoRouteError | None]:
    """Send one request to ``openai``, failing over to ``anthropic`` (no local fallback), for
    each list of faults the cloud is to answer it with (then answers), the clock moving
    ``pause_s`` between them: each one's NoRouteError, or None when it was answered."""

    async def scenario() -> list[NoRouteError | None]:
        async with httpx2.AsyncClient() as client:
            providers = _providers(cloud, client, clock, breaker_failures)
            names = ModelNames(
                [
                    ProviderModels("openai", ("gpt-4.1-mini",), usable=True),
                    ProviderModels("anthropic", ("claude-haiku-4-5",), usable=True),
                ],
                None,
            )
            dispatcher = Dispatcher(
                FakeLocal(),
                providers,
                names,
                router=build_router(RoutingSettings()),
                failover=names.targets(
                    ("openai/gpt-4.1-mini", "anthropic/claude-haiku-4-5"), setting="failover"
                ),
                local_fallback=False,
                clock=clock,
            )
            outcomes: list[NoRouteError | None] = []
            for index, pushed in enumerate(faults):
                if index:
                    clock.now += pause_s
                cloud.push(*pushed)
                try:
                    answer = await dispatcher.start(REQUEST, model="cloud")
                except NoRouteError as exc:
                    outcomes.append(exc)
                else:
                    await answer.generation.aclose()
                    outcomes.append(None)
            return outcomes

    return asyncio.run(scenario())


def test_the_wait_told_is_what_is_left_after_the_failover_spent_time(
    cloud: FakeCloud,
) -> None:
    # openai asks for 30 s (too long to wait: fail over at once); anthropic for 8 s, which is
    # waited for, then 60 s.  The soonest a retry may succeed is openai's, 30 s after it said
    # so, and 8 of those went on anthropic's retry: 22 s are left.
    limited = [Fault.rate_limit(retry_after_s=s) for s in (30, 8, 60)]
    clock = Stopwatch()

    [error] = _outcomes(cloud, clock, limited)

    assert clock.now == 1008.0, "anthropic's 8 s wait passed on the fake clock"
    assert error is not None and error.rate_limited
    wire = wire_error(error)
    assert wire.status == 429
    assert wire.headers()["Retry-After"] == "22"
    assert "retry in 22 s" in str(error)


def test_an_open_circuit_passes_on_its_wait_when_it_is_the_soonest(cloud: FakeCloud) -> None:
    # The first request opens openai's circuit (one failure is enough here) and anthropic
    # answers it.  12 s later openai is skipped (18 s before its next probe) and anthropic
    # asks for 60 s: the client is told 18 s.
    down, limited = [Fault.status(503)] * 2, [Fault.rate_limit(retry_after_s=60)]
    clock = Stopwatch()

    first, second = _outcomes(cloud, clock, down, limited, pause_s=12.0, breaker_failures=1)

    assert first is None, "anthropic answered the first request"
    assert second is not None and second.failures[0] == "openai:circuit_open"
    wire = wire_error(second)
    assert wire.status == 503
    assert wire.headers()["Retry-After"] == "18"
    assert wire.headers()["x-should-retry"] == "true"


def test_every_circuit_open_tells_the_soonest_probe_and_that_a_retry_may_help(
    cloud: FakeCloud,
) -> None:
    # Both providers fail the first request (their circuits open 30 s); 5 s later nothing is
    # called at all, and the client hears when the first probe will be let through.
    clock = Stopwatch()

    _, skipped = _outcomes(
        cloud, clock, [Fault.status(503)] * 4, [], pause_s=5.0, breaker_failures=1
    )

    assert len(cloud.requests) == 4, "two attempts each for the first request, none after"
    assert skipped is not None
    assert skipped.failures == ["openai:circuit_open", "anthropic:circuit_open"]
    headers = wire_error(skipped).headers()
    assert headers["Retry-After"] == "25"
    assert headers["x-should-retry"] == "true"


def test_requests_that_end_rate_limited_open_the_circuit_until_the_providers_wait_passes(
    cloud: FakeCloud,
) -> None:
    # A 429 counts for the circuit breaker like a 5xx: two requests rate-limited in a row by
    # both providers open both circuits, and they stay open for the 60 s the providers asked
    # for, not only breaker_reset_s (30 s).  30 s after they opened nothing is sent (a probe
    # would be refused) and the client is told it is still rate limited, with the 30 s left;
    # 60 s after, the probe goes out.
    limited = [Fault.rate_limit(retry_after_s=60)] * 2
    clock = Stopwatch()

    first, second, third, fourth = _outcomes(
        cloud, clock, limited, limited, [], [], pause_s=30.0, breaker_failures=2
    )

    assert first is not None and second is not None and third is not None
    assert wire_error(second).status == 429
    assert wire_error(second).headers()["Retry-After"] == "60"
    assert third.failures == ["openai:circuit_open", "anthropic:circuit_open"]
    wire = wire_error(third)
    assert (wire.status, wire.code, wire.headers()["Retry-After"]) == (
        429,
        "rate_limit_exceeded",
        "30",
    )
    assert "rate limiting" in str(third)
    assert fourth is None, "the probe after the 60 s was answered"
    # Two for each rate-limited request, none for the third, openai's probe for the fourth.
    assert len(cloud.requests) == 5


def test_an_open_circuit_tells_the_longer_of_its_reset_and_the_providers_wait(
    cloud: FakeCloud,
) -> None:
    # openai's one 429 asks for 45 s and opens its circuit (one failure is enough here);
    # anthropic answers.  5 s later openai is skipped and anthropic fails: the client is told
    # the 40 s left of openai's wait (its reset alone would say 25 s).
    clock = Stopwatch()

    first, second = _outcomes(
        cloud,
        clock,
        [Fault.rate_limit(retry_after_s=45)],
        [Fault.status(503)] * 2,
        pause_s=5.0,
        breaker_failures=1,
    )

    assert first is None, "anthropic answered the first request"
    assert second is not None
    assert second.failures == ["openai:circuit_open", "anthropic:unavailable"]
    assert wire_error(second).headers()["Retry-After"] == "40"


def test_a_circuit_rate_limits_opened_beside_a_rate_limit_now_is_a_rate_limit(
    cloud: FakeCloud,
) -> None:
    # openai's 429 asks for 45 s and opens its circuit (one failure is enough here); anthropic
    # answers.  5 s later openai is skipped and anthropic rate-limits the request: every
    # provider is rate limiting, and the client is told so, with the 40 s left of openai's wait.
    clock = Stopwatch()

    first, second = _outcomes(
        cloud,
        clock,
        [Fault.rate_limit(retry_after_s=45)],
        [Fault.rate_limit(retry_after_s=60)],
        pause_s=5.0,
        breaker_failures=1,
    )

    assert first is None, "anthropic answered the first request"
    assert second is not None
    assert second.failures == ["openai:circuit_open", "anthropic:rate_limited"]
    wire = wire_error(second)
    assert (wire.status, wire.code, wire.headers()["Retry-After"]) == (
        429,
        "rate_limit_exceeded",
        "40",
    )


def test_a_circuit_a_mix_of_failures_opened_is_no_route_even_beside_rate_limits(
    cloud: FakeCloud,
) -> None:
    # Two failures in a row open a circuit.  openai rate-limits the first request, then fails
    # the second with 503s: its circuit is open, but not for rate limits alone.  anthropic
    # rate-limits both, and its circuit opens for rate limits.  5 s later both are skipped:
    # nothing answers, but not every provider is rate limiting, so it stays a 503.
    limited = [Fault.rate_limit(retry_after_s=60)]
    clock = Stopwatch()

    first, second, third = _outcomes(
        cloud,
        clock,
        limited * 2,
        [Fault.status(503)] * 2 + limited,
        [],
        pause_s=5.0,
        breaker_failures=2,
    )

    assert first is not None and wire_error(first).status == 429
    assert second is not None and wire_error(second).status == 503
    assert third is not None
    assert third.failures == ["openai:circuit_open", "anthropic:circuit_open"]
    wire = wire_error(third)
    assert (wire.status, wire.code) == (503, "no_route")
    assert wire.headers()["Retry-After"] == "50", "what is left of openai's 60 s"
    assert len(cloud.requests) == 5, "nothing is sent to an open circuit"
