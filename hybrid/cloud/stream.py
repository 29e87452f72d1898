"""A streamed answer after its first output event: reading, stall detection, connection reuse.

:func:`open_stream` reads a streamed response until output arrives (still before the first
byte the client sees, so a failure there is retried by the provider) and returns a
:class:`StreamGeneration`.  From then on events flow to the client; a failure raises from the
iterator and is never retried.  The generation tells the provider's circuit breaker how the
stream ended, exactly once, and drains the body after the terminal event so that its
connection returns to the pool.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from typing import TYPE_CHECKING, Literal

import httpx2

from hybrid.backend import Generation
from hybrid.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderRateLimitedError,
    ProviderRejectedError,
)
from hybrid.generation import GenerationDone, GenerationEvent
from hybrid.wire.sse import SseEvent, StreamDecoder, iter_sse

if TYPE_CHECKING:
    from hybrid.cloud.provider import CloudProvider

log = logging.getLogger("hybrid.cloud")

# What may follow a stream's terminal event and still be read so that its connection is reused
# (normally only the chunked body's terminator); past this the connection is not worth it.
_MAX_DRAIN_BYTES = 64 * 2**10

Outcome = Literal["success", "failure", "release"]
"""How a request ended, for the circuit breaker: ``success`` (a complete answer), ``failure``
(the provider is unwell) or ``release`` (no verdict)."""


async def open_stream(
    provider: CloudProvider,
    response: httpx2.Response,
    decoder: StreamDecoder,
    *,
    deadline: float,
    idle_timeout_s: float,
) -> StreamGeneration:
    """Read a streamed response up to its first output event, and hand it on as a generation.

    Args:
        provider: The provider that sent the request (told how the stream ends).
        response: The open response; the generation owns it from here on.
        decoder: A fresh decoder for this response.
        deadline: Loop time by which output must have arrived (the first-byte deadline).
        idle_timeout_s: The longest gap between two chunks once output flows.

    Returns:
        The stream, whose first output event (or whole answer) is pending.

    Raises:
        TimeoutError: No output arrived by ``deadline``.
        ProviderError: The decoder rejected an event (an ``error`` event, malformed data).
        httpx2.HTTPError: The connection failed; the provider translates it.
        UnicodeDecodeError: The stream is not UTF-8; the provider translates it.
    """
    # Until output arrives the client has seen nothing, so this stays retryable and the
    # first-byte deadline (not the idle timeout) applies: the first token of a long
    # prompt may take much longer than the gap between two later tokens.
    chunks = TimedChunks(response, None)
    events = iter_sse(chunks)
    pending: list[GenerationEvent] = []
    try:
        async with asyncio.timeout_at(deadline):
            while not pending:
                event = await anext(events, None)
                if event is None:
                    pending = decoder.end()
                    break
                pending = decoder.feed(event)
    except BaseException:
        await events.aclose()
        raise
    chunks.timeout_s = idle_timeout_s
    return StreamGeneration(provider, response, chunks, events, decoder, pending)


class TimedChunks:
    """A response body's chunks, each of which must arrive within ``timeout_s``.

    The limit applies per network chunk, so a keep-alive comment on an SSE stream counts as
    life.  ``timeout_s`` may change between reads (None: no limit of its own).

    Raises:
        TimeoutError: From ``__anext__``, when a chunk is late.
    """

    def __init__(self, response: httpx2.Response, timeout_s: float | None) -> None:
        self._chunks = response.aiter_bytes()
        self.timeout_s = timeout_s

    def __aiter__(self) -> TimedChunks:
        return self

    async def __anext__(self) -> bytes:
        async with asyncio.timeout(self.timeout_s):
            return await anext(self._chunks)


class StreamGeneration(Generation):
    """A streamed answer whose first output event has arrived.

    Owns the open response until the stream ends or :meth:`aclose`; reports the outcome to
    the provider's circuit breaker exactly once.  After the terminal event the rest of the body
    (the chunked terminator) is read before the response is closed, so that its connection goes
    back to the pool instead of being dropped.
    """

    def __init__(
        self,
        provider: CloudProvider,
        response: httpx2.Response,
        chunks: TimedChunks,
        events: AsyncGenerator[SseEvent, None],
        decoder: StreamDecoder,
        pending: list[GenerationEvent],
    ) -> None:
        self._provider = provider
        self._response = response
        self._chunks = chunks
        self._released = False
        self._events = events
        self._decoder = decoder
        self._pending = pending
        self._iterator: AsyncGenerator[GenerationEvent, None] | None = None
        self._settled = False

    def __aiter__(self) -> AsyncIterator[GenerationEvent]:
        if self._iterator is None:
            self._iterator = self._run()
        return self._iterator

    async def aclose(self) -> None:
        """Close the upstream response now; an unfinished answer gives the breaker no verdict."""
        self._settle("release")
        # The response first: it is what frees the connection, and this may run in a
        # cancelled task where any later await can be interrupted (the close is in a finally
        # behind the drain, so a cancelled drain still closes).
        await self._release()
        if self._iterator is not None:
            await self._iterator.aclose()
        await self._events.aclose()

    def _settle(self, outcome: Outcome, *, rate_limited: bool = False) -> None:
        if not self._settled:
            self._settled = True
            self._provider._settle(outcome, rate_limited=rate_limited)

    async def _run(self) -> AsyncGenerator[GenerationEvent, None]:
        batch = self._pending
        try:
            while True:
                for event in batch:
                    if isinstance(event, GenerationDone):
                        self._settle("success")
                    yield event
                if self._decoder.finished:
                    return
                batch = await self._next_batch()
        except ProviderError as exc:
            self._provider._scrub(exc)
            if counts_against_provider(exc):
                self._settle("failure", rate_limited=isinstance(exc, ProviderRateLimitedError))
            else:
                self._settle("release")
            raise
        finally:
            await self._release()

    async def _release(self) -> None:
        """Close the response once; after a complete answer, drain it first.

        A response closed before its body's end cannot be reused, so every streamed answer
        would cost a new connection (and a TLS handshake).  The drain is bounded by
        ``_MAX_DRAIN_BYTES`` and the idle timeout, and its failures are dropped: the answer is
        already complete, and at worst the connection is closed as it would have been anyway.
        """
        if self._released:
            return
        self._released = True
        try:
            if self._decoder.finished:
                await self._drain()
        finally:
            await self._response.aclose()

    async def _drain(self) -> None:
        # The SSE parser sits suspended at its last event; reading the chunks beneath it
        # directly keeps leftover bytes out of the decoder and the answer.
        self._chunks.timeout_s = None
        size = 0
        try:
            async with asyncio.timeout(self._provider._policy.idle_timeout_s):
                while size <= _MAX_DRAIN_BYTES:
                    chunk = await anext(self._chunks, None)
                    if chunk is None:
                        return  # the body ended: httpx2 hands the connection back to the pool
                    size += len(chunk)
        except (TimeoutError, httpx2.HTTPError) as exc:
            log.debug("%s: not reusing the connection (%r)", self._provider.name, exc)

    async def _next_batch(self) -> list[GenerationEvent]:
        provider = self._provider
        try:
            event = await anext(self._events, None)
        except TimeoutError as exc:  # from TimedChunks: no byte, not even a keep-alive
            raise provider._stall_error() from exc
        except httpx2.HTTPError as exc:
            raise provider._transport_error(exc, mid_answer=True) from exc
        except UnicodeDecodeError as exc:
            raise provider._protocol_error(
                f"the stream is not UTF-8 ({exc.reason}); the answer is incomplete"
            ) from exc
        return self._decoder.end() if event is None else self._decoder.feed(event)


def counts_against_provider(error: ProviderError) -> bool:
    """Whether a failure says the provider is unwell (a bad key or request says nothing).

    A 429 counts, on purpose: a provider that still rate-limits once the retries have honoured
    its ``Retry-After`` (or asks for more than ``max_retry_after_s``) is overloaded for this
    account, and after ``breaker_failures`` such requests in a row it is left alone for
    ``breaker_reset_s``, or until its ``Retry-After`` has passed when that is longer, instead of
    being sent more.
    """
    return not isinstance(error, ProviderAuthError | ProviderRejectedError)
