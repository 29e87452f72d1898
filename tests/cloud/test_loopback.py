"""Failures that happen in real sockets (refused connections, resets, stalls, redirects), over
the HTTP client every provider is built with."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx2
import pytest
from cloud_fakes import OPENAI_KEY, FakeSleep, chat, drain, openai, openai_completion, openai_stream
from cloud_server import Exchange, LoopbackServer, free_port

from hybrid.backend import collect
from hybrid.cloud.client import cloud_client
from hybrid.cloud.policy import ReliabilityPolicy
from hybrid.errors import (
    ProviderError,
    ProviderProtocolError,
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


HELLO = chat(("user", "Say hello"))
HELLO_STREAM = chat(("user", "Say hello"), stream=True)


def text_of(events: list[GenerationEvent]) -> str:
    return "".join(event.text for event in events if isinstance(event, TextDelta))


def test_a_refused_connection_is_retried_then_reported_as_unavailable(
    new_client: ClientFactory,
) -> None:
    sleep = FakeSleep()
    port = free_port()

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


def test_a_connection_reset_mid_stream_raises_from_the_iterator(new_client: ClientFactory) -> None:
    async def half_then_hang_up(exchange: Exchange) -> None:
        await exchange.start_chunked()
        for event in openai_stream("Hello", " wor")[:3]:
            await exchange.chunk(event)
        # Closing now leaves the chunked body unfinished: the peer sees a cut stream.

    async def scenario() -> tuple[list[GenerationEvent], ProviderError]:
        events: list[GenerationEvent] = []
        async with LoopbackServer(half_then_hang_up) as server, new_client() as client:
            generation = await openai(client, base_url=server.url + "/v1").start(HELLO_STREAM)
            with pytest.raises(ProviderError) as caught:
                await drain(generation, events)
            return events, caught.value

    events, error = asyncio.run(scenario())
    assert text_of(events) == "Hello wor"
    assert isinstance(error, ProviderUnavailableError)
    assert "mid-answer" in str(error) and "incomplete" in str(error)


def test_a_stall_on_a_real_socket_is_an_idle_timeout(new_client: ClientFactory) -> None:
    async def start_then_stall(exchange: Exchange) -> None:
        await exchange.start_chunked()
        for event in openai_stream("Hello")[:2]:
            await exchange.chunk(event)
        await asyncio.sleep(30)

    async def scenario() -> tuple[list[GenerationEvent], ProviderError]:
        events: list[GenerationEvent] = []
        async with LoopbackServer(start_then_stall) as server, new_client() as client:
            provider = openai(client, base_url=server.url + "/v1", idle_timeout_s=0.1)
            generation = await provider.start(HELLO_STREAM)
            with pytest.raises(ProviderError) as caught:
                await drain(generation, events)
            return events, caught.value

    events, error = asyncio.run(scenario())
    assert text_of(events) == "Hello"
    assert isinstance(error, ProviderTimeoutError)


def test_a_server_that_never_answers_hits_the_first_byte_timeout(new_client: ClientFactory) -> None:
    async def silent(exchange: Exchange) -> None:
        await asyncio.sleep(30)

    async def scenario() -> tuple[ProviderError, int]:
        async with LoopbackServer(silent) as server, new_client() as client:
            provider = openai(
                client, base_url=server.url + "/v1", first_byte_timeout_s=0.1, max_attempts=2
            )
            with pytest.raises(ProviderError) as caught:
                await provider.start(HELLO)
            return caught.value, len(server.received)

    error, requests = asyncio.run(scenario())
    assert isinstance(error, ProviderTimeoutError)
    assert requests == 2


def test_a_redirect_to_another_host_never_receives_the_key(new_client: ClientFactory) -> None:
    async def scenario() -> tuple[ProviderError, LoopbackServer, LoopbackServer]:
        async def answer(exchange: Exchange) -> None:
            await exchange.respond(
                "200 OK",
                {"content-type": "application/json"},
                httpx2.Response(200, json=openai_completion("stolen")).content,
            )

        async with LoopbackServer(answer) as elsewhere:
            # "localhost" is another host name for the same machine: a different origin.
            target = elsewhere.url.replace("127.0.0.1", "localhost") + "/v1/chat/completions"

            async def redirect(exchange: Exchange) -> None:
                await exchange.respond("307 Temporary Redirect", {"location": target})

            async with (
                LoopbackServer(redirect) as home,
                new_client(follow_redirects=True) as client,
            ):
                with pytest.raises(ProviderError) as caught:
                    await openai(client, base_url=home.url + "/v1").start(HELLO)
                return caught.value, home, elsewhere

    error, home, elsewhere = asyncio.run(scenario())
    assert isinstance(error, ProviderProtocolError)
    assert "redirect" in str(error)
    assert home.received[0].header("authorization") == f"Bearer {OPENAI_KEY}"
    assert elsewhere.received == []


async def _events_then_terminator(exchange: Exchange) -> None:
    await exchange.start_chunked()
    for event in openai_stream("Hello", " world"):
        await exchange.chunk(event)
    # The terminator in a later read than [DONE], as on a real network.
    await asyncio.sleep(0.01)
    await exchange.end_chunked()


@pytest.mark.parametrize("read_to_end", [True, False], ids=["iterated-to-end", "collected"])
def test_a_finished_stream_leaves_its_connection_for_the_next_request(
    new_client: ClientFactory, read_to_end: bool
) -> None:
    async def scenario() -> tuple[list[str], int]:
        texts: list[str] = []
        async with (
            LoopbackServer(_events_then_terminator, keep_alive=True) as server,
            new_client() as client,
        ):
            provider = openai(client, base_url=server.url + "/v1")
            for _ in range(3):
                generation = await provider.start(HELLO_STREAM)
                if read_to_end:
                    events: list[GenerationEvent] = []
                    await drain(generation, events)
                    texts.append(text_of(events))
                else:
                    texts.append((await collect(generation)).text)
            return texts, server.connections

    texts, connections = asyncio.run(scenario())
    assert texts == ["Hello world"] * 3
    assert connections == 1, "each answer read to its end hands its connection to the next"


def test_a_stream_that_never_ends_after_its_answer_is_still_complete(
    new_client: ClientFactory,
) -> None:
    async def done_then_hang(exchange: Exchange) -> None:
        await exchange.start_chunked()
        for event in openai_stream("Hello", " world"):
            await exchange.chunk(event)
        await asyncio.Event().wait()  # [DONE] sent, the body never terminated

    async def scenario() -> tuple[list[str], int]:
        async with (
            LoopbackServer(done_then_hang, keep_alive=True) as server,
            new_client() as client,
        ):
            provider = openai(client, base_url=server.url + "/v1", idle_timeout_s=0.1)
            texts = [(await collect(await provider.start(HELLO_STREAM))).text for _ in range(2)]
            return texts, server.connections

    texts, connections = asyncio.run(scenario())
    assert texts == ["Hello world"] * 2, "a hung tail after [DONE] does not fail the answer"
    assert connections == 2, "the unfinished connection is closed, not reused"


def _one_answer_per_connection() -> Callable[[Exchange], Awaitable[None]]:
    """Answers the first request on each connection and hangs up on the next one, as a server
    does whose idle timeout closes a kept-alive connection just as a request goes out on it."""
    answered: set[asyncio.StreamWriter] = set()
    body = httpx2.Response(200, json=openai_completion("Hello")).content

    async def script(exchange: Exchange) -> None:
        if exchange.writer in answered:
            exchange.writer.close()
            return
        answered.add(exchange.writer)
        await exchange.respond("200 OK", {"content-type": "application/json"}, body)

    return script


def test_a_request_on_a_pooled_connection_the_server_closed_is_sent_again_at_once(
    new_client: ClientFactory,
) -> None:
    sleep = FakeSleep()

    async def scenario() -> tuple[list[str], int, int]:
        async with (
            LoopbackServer(_one_answer_per_connection(), keep_alive=True) as server,
            new_client() as client,
        ):
            # One attempt only: a closed pooled connection must not use it up.
            provider = openai(client, base_url=server.url + "/v1", sleep=sleep, max_attempts=1)
            texts = [(await collect(await provider.start(HELLO))).text for _ in range(2)]
            return texts, server.connections, len(server.received)

    texts, connections, requests = asyncio.run(scenario())
    assert texts == ["Hello", "Hello"]
    assert sleep.delays == [], "sent again at once, without a backoff"
    assert (connections, requests) == (2, 3), "the second answer came on a new connection"


def test_a_server_that_hangs_up_on_new_connections_still_uses_up_the_attempts(
    new_client: ClientFactory,
) -> None:
    sleep = FakeSleep()

    async def hang_up(exchange: Exchange) -> None:
        exchange.writer.close()

    async def scenario() -> tuple[ProviderError, int]:
        async with LoopbackServer(hang_up) as server, new_client() as client:
            provider = openai(client, base_url=server.url + "/v1", sleep=sleep, max_attempts=2)
            with pytest.raises(ProviderError) as caught:
                await provider.start(HELLO)
            return caught.value, len(server.received)

    error, requests = asyncio.run(scenario())
    assert isinstance(error, ProviderUnavailableError)
    assert requests == 2, "each fresh connection's failure is an attempt"
    assert len(sleep.delays) == 1
