"""Failures that happen in real sockets (refused connections, resets, stalls, redirects), over
the HTTP client every provider is built with."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import httpx2
import pytest
from cloud_fakes import OPENAI_KEY, FakeClock, FakeSleep, chat, drain, openai
from fake_cloud import FakeCloud, Fault, closed_port

from hybrid.backend import collect
from hybrid.cloud.client import cloud_client
from hybrid.cloud.policy import ReliabilityPolicy
from hybrid.errors import (
    ProviderError,
    ProviderProtocolError,
    ProviderRateLimitedError,
    ProviderTimeoutError,
    ProviderUnavailableError,
)
from hybrid.generation import GenerationEvent, TextDelta

ClientFactory = Callable[..., httpx2.AsyncClient]


@pytest.fixture
def new_client() -> ClientFactory:
    """The client every provider gets (hybrid.cloud.client); with options, a plain httpx2 one."""

    def make(**options: Any) -> httpx2.AsyncClient:
        if options:
            return httpx2.AsyncClient(**options)
        return cloud_client(ReliabilityPolicy())

    return make


@pytest.fixture
def cloud() -> Iterator[FakeCloud]:
    """The fake cloud, taking the key the providers here send."""
    with FakeCloud(openai_key=OPENAI_KEY) as fake:
        yield fake


HELLO = chat(("user", "Say hello"))
HELLO_STREAM = chat(("user", "Say hello"), stream=True)
# A body far larger than a loopback connection's socket buffers hold (a few MiB at most), so a
# server that closes the connection without reading it cuts the request while it is written.
LONG_PROMPT = chat(("user", "Say hello. " + "x" * 32 * 2**20))


def text_of(events: list[GenerationEvent]) -> str:
    return "".join(event.text for event in events if isinstance(event, TextDelta))


def test_a_refused_connection_is_retried_then_reported_as_unavailable(
    new_client: ClientFactory,
) -> None:
    sleep = FakeSleep()
    port = closed_port()

    async def scenario() -> ProviderError:
        async with new_client() as client:
            provider = openai(client, base_url=f"http://127.0.0.1:{port}/v1", sleep=sleep)
            with pytest.raises(ProviderError) as caught:
                await provider.start(HELLO)
            return caught.value

    error = asyncio.run(scenario())
    assert isinstance(error, ProviderUnavailableError)
    assert "could not connect to 127.0.0.1" in str(error)
    assert len(sleep.delays) == 2, "three attempts, two waits"


def test_a_connection_reset_mid_stream_raises_from_the_iterator(
    new_client: ClientFactory, cloud: FakeCloud
) -> None:
    # The role chunk and two words, then a close that leaves the chunked body unfinished: the
    # peer sees a cut stream.
    cloud.reply = "Hello wor"
    cloud.push(Fault.stall(after_chunks=3, stall_s=0))

    async def scenario() -> tuple[list[GenerationEvent], ProviderError]:
        events: list[GenerationEvent] = []
        async with new_client() as client:
            generation = await openai(client, base_url=cloud.base_url + "/v1").start(HELLO_STREAM)
            with pytest.raises(ProviderError) as caught:
                await drain(generation, events)
            return events, caught.value

    events, error = asyncio.run(scenario())
    assert text_of(events) == "Hello wor"
    assert isinstance(error, ProviderUnavailableError)
    assert "mid-answer" in str(error) and "incomplete" in str(error)


def test_a_stall_on_a_real_socket_is_an_idle_timeout(
    new_client: ClientFactory, cloud: FakeCloud
) -> None:
    cloud.reply = "Hello"
    cloud.push(Fault.stall(after_chunks=2, stall_s=30))

    async def scenario() -> tuple[list[GenerationEvent], ProviderError]:
        events: list[GenerationEvent] = []
        async with new_client() as client:
            provider = openai(client, base_url=cloud.base_url + "/v1", idle_timeout_s=0.1)
            generation = await provider.start(HELLO_STREAM)
            with pytest.raises(ProviderError) as caught:
                await drain(generation, events)
            return events, caught.value

    events, error = asyncio.run(scenario())
    assert text_of(events) == "Hello"
    assert isinstance(error, ProviderTimeoutError)


def test_a_server_that_never_answers_a_stream_hits_the_first_byte_timeout(
    new_client: ClientFactory, cloud: FakeCloud
) -> None:
    cloud.default_fault = Fault.black_hole()

    async def scenario() -> ProviderError:
        async with new_client() as client:
            provider = openai(
                client, base_url=cloud.base_url + "/v1", first_byte_timeout_s=0.1, max_attempts=2
            )
            with pytest.raises(ProviderError) as caught:
                await provider.start(HELLO_STREAM)
            return caught.value

    error = asyncio.run(scenario())
    requests = len(cloud.requests)
    assert isinstance(error, ProviderTimeoutError)
    assert requests == 2


def test_a_redirect_to_another_host_never_receives_the_key(new_client: ClientFactory) -> None:
    async def scenario(home: FakeCloud) -> ProviderError:
        async with new_client(follow_redirects=True) as client:
            with pytest.raises(ProviderError) as caught:
                await openai(client, base_url=home.base_url + "/v1").start(HELLO)
            return caught.value

    with (
        FakeCloud(openai_key=OPENAI_KEY, reply="stolen") as elsewhere,
        FakeCloud(openai_key=OPENAI_KEY) as home,
    ):
        # "localhost" is another host name for the same machine: a different origin.
        target = elsewhere.base_url.replace("127.0.0.1", "localhost") + "/v1/chat/completions"
        home.push(Fault.redirect(target))
        error = asyncio.run(scenario(home))

    assert isinstance(error, ProviderProtocolError)
    assert "redirect" in str(error)
    assert home.requests[0].headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert elsewhere.requests == []


@pytest.mark.parametrize("read_to_end", [True, False], ids=["iterated-to-end", "collected"])
def test_a_finished_stream_leaves_its_connection_for_the_next_request(
    new_client: ClientFactory, cloud: FakeCloud, read_to_end: bool
) -> None:
    # The terminator in a later read than [DONE], as on a real network.
    cloud.reply = "Hello world"
    cloud.default_fault = Fault.slow_body(0.01)

    async def scenario() -> list[str]:
        texts: list[str] = []
        async with new_client() as client:
            provider = openai(client, base_url=cloud.base_url + "/v1")
            for _ in range(3):
                generation = await provider.start(HELLO_STREAM)
                if read_to_end:
                    events: list[GenerationEvent] = []
                    await drain(generation, events)
                    texts.append(text_of(events))
                else:
                    texts.append((await collect(generation)).text)
            return texts

    texts = asyncio.run(scenario())
    connections = cloud.connections
    assert texts == ["Hello world"] * 3
    assert connections == 1, "each answer read to its end hands its connection to the next"


def test_a_stream_that_never_ends_after_its_answer_is_still_complete(
    new_client: ClientFactory, cloud: FakeCloud
) -> None:
    # Every event out, [DONE] included, and the body never terminated.
    cloud.reply = "Hello world"
    cloud.default_fault = Fault.stall(after_chunks=99, stall_s=30)

    async def scenario() -> list[str]:
        async with new_client() as client:
            provider = openai(client, base_url=cloud.base_url + "/v1", idle_timeout_s=0.1)
            return [(await collect(await provider.start(HELLO_STREAM))).text for _ in range(2)]

    texts = asyncio.run(scenario())
    connections = cloud.connections
    assert texts == ["Hello world"] * 2, "a hung tail after [DONE] does not fail the answer"
    assert connections == 2, "the unfinished connection is closed, not reused"


def test_a_request_on_a_pooled_connection_the_server_closed_is_sent_again_at_once(
    new_client: ClientFactory,
) -> None:
    sleep = FakeSleep()

    async def scenario(cloud: FakeCloud) -> list[str]:
        async with new_client() as client:
            # One attempt only: a closed pooled connection must not use it up.
            provider = openai(client, base_url=cloud.base_url + "/v1", sleep=sleep, max_attempts=1)
            return [(await collect(await provider.start(LONG_PROMPT))).text for _ in range(2)]

    # The server answers the first request on each connection and hangs up on the next one
    # without reading it, as a server does whose idle timeout closes a kept-alive connection
    # just as a request goes out on it.  The prompt is longer than the sockets can hold, so the
    # close cuts it while it is being written: the server verifiably never had it.
    with FakeCloud(openai_key=OPENAI_KEY, reply="Hello", answers_per_connection=1) as cloud:
        texts = asyncio.run(scenario(cloud))
        connections, requests = cloud.connections, len(cloud.requests)

    assert texts == ["Hello", "Hello"]
    assert sleep.delays == [], "sent again at once, without a backoff"
    assert (connections, requests) == (2, 3), "the second answer came on a new connection"


def test_a_request_the_server_received_on_a_pooled_connection_is_not_sent_again(
    new_client: ClientFactory, cloud: FakeCloud
) -> None:
    sleep = FakeSleep()

    async def scenario() -> tuple[str, ProviderError, str]:
        async with new_client() as client:
            provider = openai(
                client,
                base_url=cloud.base_url + "/v1",
                sleep=sleep,
                max_attempts=1,
                breaker_failures=1,
            )
            first = (await collect(await provider.start(HELLO))).text
            # The next request, on the connection the first one left in the pool, is read
            # whole, and then the server hangs up on it (a worker that crashed while
            # generating, a load balancer's reset): it may have been worked on, and billed.
            cloud.push(Fault.hang_up())
            with pytest.raises(ProviderError) as caught:
                await provider.start(HELLO)
            return first, caught.value, provider.breaker.state

    first, error, circuit = asyncio.run(scenario())
    connections, requests = cloud.connections, len(cloud.requests)

    assert first == cloud.reply
    assert isinstance(error, ProviderUnavailableError)
    assert (connections, requests) == (1, 2), "not sent a second time"
    assert circuit == "open", "the failure counts for the circuit breaker"


def test_a_request_the_server_received_is_retried_as_a_counted_attempt(
    new_client: ClientFactory, cloud: FakeCloud
) -> None:
    sleep = FakeSleep()

    async def scenario() -> list[str]:
        async with new_client() as client:
            provider = openai(client, base_url=cloud.base_url + "/v1", sleep=sleep, max_attempts=2)
            first = (await collect(await provider.start(HELLO))).text
            cloud.push(Fault.hang_up())  # the pooled connection's next request, read whole
            return [first, (await collect(await provider.start(HELLO))).text]

    texts = asyncio.run(scenario())
    requests = len(cloud.requests)

    assert texts == [cloud.reply] * 2
    assert requests == 3
    assert len(sleep.delays) == 1, "the second attempt came after a backoff"


def test_a_server_that_hangs_up_on_new_connections_still_uses_up_the_attempts(
    new_client: ClientFactory, cloud: FakeCloud
) -> None:
    sleep = FakeSleep()
    cloud.default_fault = Fault.hang_up()

    async def scenario() -> ProviderError:
        async with new_client() as client:
            provider = openai(client, base_url=cloud.base_url + "/v1", sleep=sleep, max_attempts=2)
            with pytest.raises(ProviderError) as caught:
                await provider.start(HELLO)
            return caught.value

    error = asyncio.run(scenario())
    requests = len(cloud.requests)
    assert isinstance(error, ProviderUnavailableError)
    assert requests == 2, "each fresh connection's failure is an attempt"
    assert len(sleep.delays) == 1


# OpenAI's answer when the requests per minute are used up and it says nothing of retrying.
REQUESTS_USED_UP = {
    "x-ratelimit-limit-requests": "3",
    "x-ratelimit-remaining-requests": "0",
    "x-ratelimit-reset-requests": "2s",
    "x-ratelimit-remaining-tokens": "39000",
    "x-ratelimit-reset-tokens": "1m30s",
}


def test_a_429_without_retry_after_waits_until_the_used_up_limit_resets(
    new_client: ClientFactory, cloud: FakeCloud
) -> None:
    sleep = FakeSleep()
    cloud.push(Fault.rate_limit(retry_after_s=None, headers=REQUESTS_USED_UP))

    async def scenario() -> str:
        async with new_client() as client:
            provider = openai(client, base_url=cloud.base_url + "/v1", sleep=sleep, max_attempts=2)
            return (await collect(await provider.start(HELLO))).text

    text = asyncio.run(scenario())
    assert text == cloud.reply
    assert sleep.delays == [2.0], "the requests limit's reset, not a jittered backoff"


def test_a_429_without_retry_after_keeps_the_circuit_open_until_the_limit_resets(
    new_client: ClientFactory, cloud: FakeCloud
) -> None:
    cloud.push(Fault.rate_limit(retry_after_s=None, headers=REQUESTS_USED_UP))

    async def scenario() -> tuple[ProviderError, float | None, ProviderError]:
        async with new_client() as client:
            provider = openai(
                client,
                base_url=cloud.base_url + "/v1",
                clock=FakeClock(),
                max_attempts=1,
                breaker_failures=1,
                breaker_reset_s=0.5,
            )
            with pytest.raises(ProviderError) as caught:
                await provider.start(HELLO)
            return caught.value, provider.breaker.retry_in_s(), provider.circuit_open_error()

    error, retry_in, skipped = asyncio.run(scenario())
    assert isinstance(error, ProviderRateLimitedError) and error.retry_after == 2.0
    assert retry_in == 2.0, "no probe before the limit resets"
    assert skipped.retry_after == 2.0
