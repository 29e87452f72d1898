"""``max_total_s``: one provider gets a bounded time to start a streamed answer, over all its
attempts; an answer that is not streamed gets ``whole_answer_timeout_s`` per attempt instead.

Timeouts are set short so that each test finishes soon; each scenario's own bound is generous
and only catches a provider that waits far past its limit.
"""

from __future__ import annotations

import asyncio

import httpx2
import pytest
from cloud_fakes import (
    OPENAI_KEY,
    FakeSleep,
    Upstream,
    chat,
    json_response,
    mock_client,
    openai,
    policy,
)
from fake_cloud import FakeCloud, Fault

from hybrid.backend import collect
from hybrid.cloud.client import cloud_client
from hybrid.errors import ProviderError, ProviderTimeoutError, ProviderUnavailableError

HELLO = chat(("user", "Say hello"))
HELLO_STREAM = chat(("user", "Say hello"), stream=True)
# Far above every limit below: only a provider that ignores max_total_s reaches it.
SCENARIO_BOUND_S = 20.0
SILENT = Fault.black_hole()
# The head of a stream and an SSE comment, then nothing.
HEADERS_THEN_SILENT = Fault.stall(after_chunks=0, stall_s=60, comment="processing")


@pytest.mark.parametrize("fault", [SILENT, HEADERS_THEN_SILENT], ids=["silent", "headers-only"])
def test_a_silent_provider_of_a_stream_is_given_up_on_after_max_total_s(fault: Fault) -> None:
    async def scenario(cloud: FakeCloud) -> ProviderError:
        async with asyncio.timeout(SCENARIO_BOUND_S), httpx2.AsyncClient() as client:
            provider = openai(
                client,
                base_url=cloud.base_url + "/v1",
                first_byte_timeout_s=60,
                max_attempts=3,
                max_total_s=0.3,
            )
            with pytest.raises(ProviderError) as caught:
                await provider.start(HELLO_STREAM)
            return caught.value

    with FakeCloud(openai_key=OPENAI_KEY, default_fault=fault) as cloud:
        error = asyncio.run(scenario(cloud))
        requests = len(cloud.requests)

    assert isinstance(error, ProviderTimeoutError)
    assert "no answer within 0.3 s" in str(error) and "max_total_s" in str(error)
    # One attempt had the whole budget and none was left to retry. On a loaded machine the
    # budget can run out before the fake cloud has read the request: none is recorded then.
    assert requests <= 1, "an attempt was retried after max_total_s was spent"


def test_a_whole_answer_slower_than_max_total_s_and_the_first_byte_timeout_is_waited_for() -> None:
    # OpenAI and Anthropic send a non-streamed answer's headers only once all of it is
    # generated: a long answer keeps them silent past both limits, which are for a stream's
    # first token.  The client is the one every provider gets, with its transport timeouts.
    limits = {"first_byte_timeout_s": 0.1, "max_total_s": 0.1, "idle_timeout_s": 0.1}
    whole_answer = {"whole_answer_timeout_s": SCENARIO_BOUND_S}

    async def scenario(cloud: FakeCloud) -> str:
        async with (
            asyncio.timeout(SCENARIO_BOUND_S),
            cloud_client(policy(**limits, **whole_answer)) as client,
        ):
            provider = openai(client, base_url=cloud.base_url + "/v1", **limits, **whole_answer)
            return (await collect(await provider.start(HELLO))).text

    with FakeCloud(openai_key=OPENAI_KEY, reply="A long essay") as cloud:
        # Ten times the limits: no scheduling delay brings the answer within them.
        cloud.push(Fault.slow_first_byte(1.0))
        text = asyncio.run(scenario(cloud))
        requests = len(cloud.requests)

    assert text == "A long essay"
    assert requests == 1, "the answer being generated was waited for, not asked for again"


def test_a_silent_provider_of_a_whole_answer_is_given_up_on_after_whole_answer_timeout_s() -> None:
    async def scenario(cloud: FakeCloud) -> ProviderError:
        async with asyncio.timeout(SCENARIO_BOUND_S), httpx2.AsyncClient() as client:
            provider = openai(
                client,
                base_url=cloud.base_url + "/v1",
                first_byte_timeout_s=0.1,
                whole_answer_timeout_s=0.3,
                max_attempts=3,
                max_total_s=0.3,
            )
            with pytest.raises(ProviderError) as caught:
                await provider.start(HELLO)
            return caught.value

    with FakeCloud(openai_key=OPENAI_KEY, default_fault=SILENT) as cloud:
        error = asyncio.run(scenario(cloud))
        requests = len(cloud.requests)

    assert isinstance(error, ProviderTimeoutError)
    assert "no answer within 0.3 s" in str(error) and "whole_answer_timeout_s" in str(error)
    # max_total_s was spent by then: no retry (none recorded if the fake never read it).
    assert requests <= 1, "an attempt was retried after max_total_s was spent"


def test_a_retry_gets_only_what_is_left_of_max_total_s() -> None:
    sleep = FakeSleep()

    async def scenario(cloud: FakeCloud) -> ProviderError:
        async with asyncio.timeout(SCENARIO_BOUND_S), httpx2.AsyncClient() as client:
            provider = openai(
                client,
                base_url=cloud.base_url + "/v1",
                sleep=sleep,
                first_byte_timeout_s=60,
                max_attempts=3,
                max_total_s=0.5,
                # A backoff far below max_total_s: the retry starts however long the 503 took.
                backoff_base_s=0.02,
            )
            with pytest.raises(ProviderError) as caught:
                await provider.start(HELLO_STREAM)
            return caught.value

    # A 503, then silence.
    with FakeCloud(openai_key=OPENAI_KEY, default_fault=SILENT) as cloud:
        cloud.push(Fault.status(503))
        error = asyncio.run(scenario(cloud))
        requests = len(cloud.requests)

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
