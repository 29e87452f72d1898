"""``max_total_s``: one provider gets a bounded time to start answering, over all its attempts.

Timeouts are set short so that each test finishes soon; each scenario's own bound is generous
and only catches a provider that waits far past its limit.
"""

from __future__ import annotations

import asyncio

import httpx2
import pytest
from cloud_fakes import FakeSleep, Upstream, chat, json_response, mock_client, openai
from cloud_server import Exchange, LoopbackServer, Script

from hybrid.errors import ProviderError, ProviderTimeoutError, ProviderUnavailableError
from hybrid.generation import GenerationRequest

HELLO = chat(("user", "Say hello"))
HELLO_STREAM = chat(("user", "Say hello"), stream=True)
# Far above every limit below: only a provider that ignores max_total_s reaches it.
SCENARIO_BOUND_S = 20.0


async def _silent(exchange: Exchange) -> None:
    await asyncio.sleep(60)


async def _headers_then_silent(exchange: Exchange) -> None:
    await exchange.start_chunked()
    await exchange.chunk(b": processing\n\n")
    await asyncio.sleep(60)


@pytest.mark.parametrize(
    ("request_", "script"),
    [(HELLO, _silent), (HELLO_STREAM, _silent), (HELLO_STREAM, _headers_then_silent)],
    ids=["whole", "streamed", "streamed-headers-only"],
)
def test_a_silent_provider_is_given_up_on_after_max_total_s(
    request_: GenerationRequest, script: Script
) -> None:
    async def scenario() -> tuple[ProviderError, int]:
        async with (
            asyncio.timeout(SCENARIO_BOUND_S),
            LoopbackServer(script) as server,
            httpx2.AsyncClient() as client,
        ):
            provider = openai(
                client,
                base_url=server.url + "/v1",
                first_byte_timeout_s=60,
                max_attempts=3,
                max_total_s=0.3,
            )
            with pytest.raises(ProviderError) as caught:
                await provider.start(request_)
            return caught.value, len(server.received)

    error, requests = asyncio.run(scenario())
    assert isinstance(error, ProviderTimeoutError)
    assert "no answer within 0.3 s" in str(error) and "max_total_s" in str(error)
    assert requests == 1, "the first attempt had the whole budget; none was left to retry"


def test_a_retry_gets_only_what_is_left_of_max_total_s() -> None:
    sleep = FakeSleep()
    served = 0

    async def fail_then_stall(exchange: Exchange) -> None:
        nonlocal served
        served += 1
        if served == 1:
            await exchange.respond("503 Service Unavailable", {}, b"busy")
            return
        await asyncio.sleep(60)

    async def scenario() -> tuple[ProviderError, int]:
        async with (
            asyncio.timeout(SCENARIO_BOUND_S),
            LoopbackServer(fail_then_stall) as server,
            httpx2.AsyncClient() as client,
        ):
            provider = openai(
                client,
                base_url=server.url + "/v1",
                sleep=sleep,
                first_byte_timeout_s=60,
                max_attempts=3,
                max_total_s=0.5,
            )
            with pytest.raises(ProviderError) as caught:
                await provider.start(HELLO)
            return caught.value, len(server.received)

    error, requests = asyncio.run(scenario())
    assert isinstance(error, ProviderTimeoutError)
    assert "2 attempts" in str(error) and "max_total_s" in str(error)
    assert requests == 2
    assert len(sleep.delays) == 1


def test_a_retry_after_longer_than_the_time_left_fails_over_at_once() -> None:
    sleep = FakeSleep()
    upstream = Upstream(*[json_response({"error": "busy"}, 503, **{"retry-after": "5"})] * 3)

    async def scenario() -> ProviderError:
        async with mock_client(upstream) as client:
            provider = openai(client, sleep=sleep, max_attempts=3, max_total_s=2)
            with pytest.raises(ProviderError) as caught:
                await provider.start(HELLO)
            return caught.value

    error = asyncio.run(scenario())
    assert isinstance(error, ProviderUnavailableError)
    assert "HTTP 503" in str(error)
    assert len(upstream.requests) == 1
    assert sleep.delays == [], "no wait for a retry that could not start within max_total_s"
