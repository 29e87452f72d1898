"""Streamed answers that are slow to start: SSE keep-alive comments until they do.

A streamed answer's headers wait for the answer to start, so that they can say where it is
answered (``X-Hybrid-Route``, ``X-Hybrid-Model``, ``X-Hybrid-Reason``) and a request that
nothing can answer still gets its HTTP error status.  Starting can take a while: a cloud
provider slow to its first byte, its retries, failover, the fall back to the local model.
Proxies and clients give up on a response that stays silent for long, so when the answer has
not started after ``keep_alive_s`` the response begins anyway: status 200 with the SSE headers,
then a ``: keep-alive`` comment every ``keep_alive_s`` until it starts.  Such a response's
``X-Hybrid-Route``, ``X-Hybrid-Model`` and ``X-Hybrid-Reason`` headers say ``pending``, and:

- the answer's own ``X-Hybrid-*`` values, too late for headers, come first as SSE comments;
- a failure to start is the API's error event, with no ``[DONE]`` or ``message_stop`` after it.

Every SSE client ignores comments (the OpenAI and Anthropic SDKs included), and one is only
ever sent before the first event, never inside one.  A client that leaves while the answer
starts does not stop it: the start runs to its end (its ledger record is written as for any
answer) and the answer is closed at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Callable, Coroutine, Mapping
from typing import Any

from hybrid.api.responses import EventStreamResponse
from hybrid.errors import HybridError
from hybrid.routing.answer import Answer
from hybrid.wire.sse import sse_comment

log = logging.getLogger("hybrid.api")

KEEP_ALIVE = sse_comment("keep-alive")
"""The comment sent while a streamed answer waits to start."""

# The X-Hybrid-* headers of a response that began before its answer started.
_PENDING = {"X-Hybrid-Route": "pending", "X-Hybrid-Model": "pending", "X-Hybrid-Reason": "pending"}


async def stream_answer(
    starting: Coroutine[Any, Any, Answer],
    frames: Callable[[Answer], AsyncGenerator[bytes, None]],
    error_event: Callable[[HybridError], bytes],
    *,
    headers: Mapping[str, str],
    keep_alive_s: float,
) -> EventStreamResponse:
    """The SSE response of an answer being started, with keep-alives should it start slowly.

    Args:
        starting: Starts the answer (``start_answer(...)``), not yet awaited.
        frames: The answer's SSE bytes; closes its generation when it ends or is closed.
        error_event: The API's SSE error event for a failure to start.
        headers: Headers of every SSE response (beside the answer's own ``X-Hybrid-*``).
        keep_alive_s: How long the start may keep the response silent, and the interval of
            the keep-alive comments after that.

    Returns:
        The response: the answer's, with its headers, when it started within
        ``keep_alive_s``; otherwise one that sends keep-alives until it starts.

    Raises:
        HybridError: The answer failed to start within ``keep_alive_s``.
    """
    task = asyncio.ensure_future(starting)
    try:
        await asyncio.wait((task,), timeout=keep_alive_s)
    except BaseException:
        task.cancel()
        raise
    if task.done():
        answer = task.result()
        return EventStreamResponse(
            frames(answer),
            media_type="text/event-stream",
            headers={**answer.headers(), **headers},
        )
    return EventStreamResponse(
        _started_late(task, frames, error_event, keep_alive_s),
        media_type="text/event-stream",
        headers={**_PENDING, **headers},
    )


async def _started_late(
    task: asyncio.Future[Answer],
    frames: Callable[[Answer], AsyncGenerator[bytes, None]],
    error_event: Callable[[HybridError], bytes],
    keep_alive_s: float,
) -> AsyncGenerator[bytes, None]:
    answer: Answer | None = None
    body: AsyncGenerator[bytes, None] | None = None
    consumed = False
    try:
        while not task.done():
            yield KEEP_ALIVE
            await asyncio.wait((task,), timeout=keep_alive_s)
        consumed = True
        try:
            answer = task.result()
        except HybridError as exc:
            # Recorded by start_answer already; the client hears of it in its protocol.
            log.warning("a streamed answer failed to start after its headers: %s", exc)
            yield error_event(exc)
            return
        yield _headers_comment(answer)
        body = frames(answer)
        # From the first step on, ``frames`` owns the generation and closes it.
        async for chunk in body:
            yield chunk
    finally:
        if body is not None:
            await body.aclose()
        elif answer is not None:
            await answer.generation.aclose()
        elif not consumed:
            await _close_when_started(task)


async def _close_when_started(task: asyncio.Future[Answer]) -> None:
    """Wait for an answer nobody will read to start, and close it (which records it)."""
    try:
        answer = await task  # cancelled with it should the server shut down meanwhile
    except HybridError:
        return  # recorded by start_answer
    except Exception:
        log.exception("a streamed answer whose client left failed to start")
        return
    await answer.generation.aclose()


def _headers_comment(answer: Answer) -> bytes:
    return sse_comment(*(f"{name}: {value}" for name, value in answer.headers().items()))
