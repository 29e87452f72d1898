"""``POST /v1/chat/completions``, streamed and not."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response

from hybrid.api.answering import respond
from hybrid.api.bodies import JsonBody
from hybrid.api.middleware import request_id_of
from hybrid.backend import Completion, Generation
from hybrid.errors import HybridError
from hybrid.generation import TextDelta, ThinkingDelta, ToolCallDelta
from hybrid.routing.answer import Answer
from hybrid.wire.errors import wire_error
from hybrid.wire.openai.decode import chat_request
from hybrid.wire.openai.respond import (
    ResponseMeta,
    chat_chunk,
    chat_completion_json,
    chat_usage_chunk,
)
from hybrid.wire.openai.schema import ChatCompletionRequest
from hybrid.wire.openai.tools import tool_call_deltas
from hybrid.wire.sse import SSE_DONE, sse_event

router = APIRouter()
log = logging.getLogger("hybrid.api")


@router.post("/v1/chat/completions")
async def chat_completions(
    body: Annotated[ChatCompletionRequest, Depends(JsonBody(ChatCompletionRequest))],
    request: Request,
) -> Response:
    """Answer a chat completion request, locally or through a cloud provider."""
    request_id = request_id_of(request.scope)
    created = int(time.time())
    want_logprobs = bool(body.logprobs)
    include_usage = bool(body.stream_options and body.stream_options.include_usage)

    def meta(answer: Answer) -> ResponseMeta:
        return ResponseMeta(id=f"chatcmpl-{request_id}", created=created, model=answer.model)

    def frames(answer: Answer) -> AsyncGenerator[bytes, None]:
        return _stream(
            answer.generation, meta(answer), include_usage=include_usage, logprobs=want_logprobs
        )

    def whole(answer: Answer, completion: Completion) -> dict[str, Any]:
        return chat_completion_json(
            meta(answer),
            completion.text,
            completion.logprobs if want_logprobs else None,
            completion.done,
            completion.tool_calls,
        )

    return await respond(
        request,
        chat_request(body, request_id),
        model=body.model,
        stream=bool(body.stream),
        frames=frames,
        error_event=lambda exc: sse_event(wire_error(exc).body()),
        whole=whole,
    )


async def _stream(
    generation: Generation, meta: ResponseMeta, *, include_usage: bool, logprobs: bool
) -> AsyncGenerator[bytes, None]:
    try:
        first = {"role": "assistant", "content": "", "refusal": None}
        yield sse_event(chat_chunk(meta, first, include_usage=include_usage))
        # Calls whose arguments never came (a tool without parameters): they get "{}" before
        # the end, as the whole answer has, since clients parse arguments as a JSON object.
        without_arguments: set[int] = set()
        async for event in generation:
            if isinstance(event, ThinkingDelta):
                continue  # OpenAI's answers have no thinking blocks (nor do its clients ask)
            if isinstance(event, TextDelta):
                if event.text or (logprobs and event.logprobs):
                    yield sse_event(
                        chat_chunk(
                            meta,
                            {"content": event.text},
                            logprobs=event.logprobs if logprobs else None,
                            include_usage=include_usage,
                        )
                    )
                continue
            if isinstance(event, ToolCallDelta):
                if event.id is not None:
                    without_arguments.add(event.index)
                if event.arguments:
                    without_arguments.discard(event.index)
                for delta in tool_call_deltas(event):
                    yield sse_event(chat_chunk(meta, delta, include_usage=include_usage))
                continue
            for index in sorted(without_arguments):
                empty = tool_call_deltas(ToolCallDelta(index, arguments="{}"))
                yield sse_event(chat_chunk(meta, empty[0], include_usage=include_usage))
            if event.refusal is not None:
                refusal = {"refusal": event.refusal}
                yield sse_event(chat_chunk(meta, refusal, include_usage=include_usage))
            yield sse_event(
                chat_chunk(meta, {}, finish_reason=event.finish_reason, include_usage=include_usage)
            )
            if include_usage:
                yield sse_event(chat_usage_chunk(meta, event.usage))
        yield SSE_DONE
    except HybridError as exc:
        # Headers are gone: the failure travels as an error event, and no [DONE] follows, so
        # the client cannot mistake a cut answer for a complete one.
        log.warning("%s failed mid-stream: %s", meta.id, exc)
        yield sse_event(wire_error(exc).body())
    finally:
        await generation.aclose()
