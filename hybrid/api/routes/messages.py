"""``POST /v1/messages``: Anthropic's Messages API, streamed and not.

Anthropic SDK clients and tools that take ``ANTHROPIC_BASE_URL`` talk to hybrid through this
route; it answers locally or through any provider, like the OpenAI routes, and every error on it
comes out in Anthropic's shape (:func:`hybrid.api.errors.shape_for_path`).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response

from hybrid.api.answering import respond
from hybrid.api.bodies import JsonBody
from hybrid.api.middleware import request_id_of
from hybrid.backend import (
    Completion,
    Generation,
    ResumedGeneration,
    close_events,
    prompt_tokens_of,
)
from hybrid.errors import GenerationError, HybridError
from hybrid.generation import GenerationDone, TextDelta, Usage
from hybrid.routing.answer import Answer
from hybrid.wire.anthropic.decode import messages_request
from hybrid.wire.anthropic.respond import (
    ContentBlocks,
    MessageMeta,
    frame,
    message_delta_event,
    message_json,
    message_start_event,
    message_stop_event,
    ping_event,
)
from hybrid.wire.anthropic.schema import MessagesRequest
from hybrid.wire.errors import wire_error

log = logging.getLogger("hybrid.api")

router = APIRouter()


@router.post("/v1/messages")
async def messages(
    body: Annotated[MessagesRequest, Depends(JsonBody(MessagesRequest))], request: Request
) -> Response:
    """Answer an Anthropic Messages request, locally or through a cloud provider."""
    request_id = request_id_of(request.scope)

    def meta(answer: Answer) -> MessageMeta:
        return MessageMeta(id=f"msg_{request_id}", model=answer.model)

    def frames(answer: Answer) -> AsyncGenerator[bytes, None]:
        return _stream(answer.generation, meta(answer), request_id)

    def whole(answer: Answer, completion: Completion) -> dict[str, Any]:
        return message_json(
            meta(answer),
            completion.text,
            completion.done,
            completion.tool_calls,
            completion.thinking,
        )

    return await respond(
        request,
        messages_request(body, request_id),
        model=body.model,
        stream=bool(body.stream),
        frames=frames,
        error_event=_error_event,
        whole=whole,
    )


async def _stream(
    generation: Generation, meta: MessageMeta, request_id: str
) -> AsyncGenerator[bytes, None]:
    try:
        generation, prompt = await _prompt_counts(generation)
        yield frame(message_start_event(meta, prompt))
        yield frame(ping_event())
        blocks = ContentBlocks()
        done: GenerationDone | None = None
        async for event in generation:
            if isinstance(event, GenerationDone):
                done = event
                continue
            for payload in blocks.events(event):
                yield frame(payload)
        if done is None:
            raise GenerationError("the answer ended without its closing event; retry the request")
        if done.refusal:
            for payload in blocks.text_block(done.refusal):
                yield frame(payload)
        for payload in blocks.close():
            yield frame(payload)
        yield frame(message_delta_event(done))
        yield frame(message_stop_event())
    except HybridError as exc:
        # Headers and part of the answer are gone: the failure travels as an error event with no
        # message_stop after it, so the client cannot take the cut answer for a whole one.
        log.warning("request %s failed mid-stream: %s", request_id, exc)
        yield _error_event(exc)
    finally:
        await generation.aclose()


async def _prompt_counts(generation: Generation) -> tuple[Generation, Usage]:
    """The prompt's token counts for ``message_start``, and the generation to read on.

    The local model counts its prompt before it starts (the split into cached and new tokens
    comes with ``message_delta``).  A provider that reports the counts early (Anthropic, in its
    own ``message_start``) has them on the answer's first event, which has arrived by the time
    a cloud answer starts (:mod:`hybrid.cloud.stream`), as every event of a whole answer has:
    reading it ahead waits for nothing.  Otherwise the counts are zeros until
    ``message_delta`` (OpenAI-compatible streams report usage only at their end).
    """
    prompt = prompt_tokens_of(generation)
    if prompt is not None:
        return generation, Usage(prompt, 0)
    events = aiter(generation)
    try:
        first = await anext(events, None)
    except BaseException:
        await close_events(events)
        raise
    counted = first.prompt_usage if isinstance(first, TextDelta) else None
    read = [] if first is None else [first]
    return ResumedGeneration(generation, events, read), counted or Usage(0, 0)


def _error_event(exc: HybridError) -> bytes:
    """A failure after the stream began, as Anthropic's ``error`` event."""
    return frame(wire_error(exc).body("anthropic"))
