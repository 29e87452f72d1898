"""``POST /v1/messages``: Anthropic's Messages API, streamed and not.

Anthropic SDK clients and tools that take ``ANTHROPIC_BASE_URL`` talk to hybrid through this
route; it answers locally or through any provider, like the OpenAI routes, and every error on it
comes out in Anthropic's shape (:func:`hybrid.api.errors.shape_for_path`).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Callable

from fastapi import APIRouter, Request, Response

from hybrid.api.answering import start_answer
from hybrid.api.anthropic_schema import MessagesRequest
from hybrid.api.anthropic_tools import input_json_delta_event, tool_use_start_event
from hybrid.api.anthropic_wire import (
    MessageMeta,
    content_block_start_event,
    content_block_stop_event,
    error_event,
    message_delta_event,
    message_json,
    message_start_event,
    message_stop_event,
    messages_request,
    ping_event,
    sse_event,
    text_delta_event,
)
from hybrid.api.disconnect import collect_unless_disconnected
from hybrid.api.keepalive import stream_answer
from hybrid.api.middleware import request_id_of
from hybrid.api.responses import JsonResponse
from hybrid.api.routes.chat import SSE_HEADERS
from hybrid.api.state import app_state
from hybrid.backend import Generation
from hybrid.errors import GenerationError, HybridError
from hybrid.generation import GenerationDone, GenerationEvent, TextDelta, ToolCallDelta
from hybrid.routing.dispatcher import Answer

log = logging.getLogger("hybrid.api")

router = APIRouter()


@router.post("/v1/messages")
async def messages(body: MessagesRequest, request: Request) -> Response:
    """Answer an Anthropic Messages request, locally or through a cloud provider."""
    request_id = request_id_of(request.scope)
    generation_request = messages_request(body, request_id)
    starting = start_answer(request, generation_request, model=body.model)
    if body.stream:

        def frames(answer: Answer) -> AsyncGenerator[bytes, None]:
            meta = MessageMeta(id=f"msg_{request_id}", model=answer.model)
            return _stream(answer.generation, meta, request_id)

        return await stream_answer(
            starting,
            frames,
            lambda exc: sse_event(error_event(exc)),
            headers=SSE_HEADERS,
            keep_alive_s=app_state(request).settings.cloud.stream_keep_alive_s,
        )
    answer = await starting
    meta = MessageMeta(id=f"msg_{request_id}", model=answer.model)
    headers = answer.headers()
    completion = await collect_unless_disconnected(request.receive, answer.generation)
    payload = message_json(meta, completion.text, completion.done, completion.tool_calls)
    return JsonResponse(payload, headers=headers)


class _ContentBlocks:
    """Numbers and frames the content blocks of a streamed answer.

    A text block opens with the first text, so that an empty answer has no empty block
    (Anthropic refuses one when the client sends the turn back), as message_json does; each
    tool call opens a tool_use block.  A block closes when the next one opens, or at the end.
    """

    def __init__(self) -> None:
        self._count = 0
        self._open: int | None = None
        self._text_open = False
        self._tool_blocks: dict[int, int] = {}  # block index by tool call index

    def events(self, event: GenerationEvent) -> list[dict[str, object]]:
        """The Anthropic events that carry one text or tool call delta."""
        if isinstance(event, TextDelta):
            if not event.text:
                return []
            events = [] if self._text_open else self._start(content_block_start_event)
            self._text_open = True
            assert self._open is not None
            return [*events, text_delta_event(event.text, self._open)]
        if not isinstance(event, ToolCallDelta):
            return []
        events = []
        if event.id is not None and event.index not in self._tool_blocks:
            call_id, name = event.id, event.name or ""
            events = self._start(lambda index: tool_use_start_event(index, call_id, name))
            assert self._open is not None
            self._tool_blocks[event.index] = self._open
        block = self._tool_blocks.get(event.index)
        if block is not None and event.arguments:
            events.append(input_json_delta_event(block, event.arguments))
        return events

    def close(self) -> list[dict[str, object]]:
        """Closes the block still open, if any."""
        if self._open is None:
            return []
        index, self._open = self._open, None
        return [content_block_stop_event(index)]

    def _start(self, opening: Callable[[int], dict[str, object]]) -> list[dict[str, object]]:
        events = self.close()
        self._text_open = False
        self._open = self._count
        self._count += 1
        return [*events, opening(self._open)]


async def _stream(
    generation: Generation, meta: MessageMeta, request_id: str
) -> AsyncGenerator[bytes, None]:
    try:
        yield sse_event(message_start_event(meta))
        yield sse_event(ping_event())
        blocks = _ContentBlocks()
        done: GenerationDone | None = None
        async for event in generation:
            if isinstance(event, GenerationDone):
                done = event
                continue
            for payload in blocks.events(event):
                yield sse_event(payload)
        if done is None:
            raise GenerationError("the answer ended without its closing event; retry the request")
        for payload in blocks.close():
            yield sse_event(payload)
        yield sse_event(message_delta_event(done))
        yield sse_event(message_stop_event())
    except HybridError as exc:
        # Headers and part of the answer are gone: the failure travels as an error event with no
        # message_stop after it, so the client cannot take the cut answer for a whole one.
        log.warning("request %s failed mid-stream: %s", request_id, exc)
        yield sse_event(error_event(exc))
    finally:
        await generation.aclose()
