"""``POST /v1/chat/completions``, streamed and not."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from hybrid.api.answering import start_answer
from hybrid.api.bodies import JsonBody
from hybrid.api.disconnect import collect_unless_disconnected
from hybrid.api.keepalive import stream_answer
from hybrid.api.middleware import request_id_of
from hybrid.api.responses import JsonResponse
from hybrid.api.state import app_state
from hybrid.backend import Generation
from hybrid.errors import HybridError
from hybrid.generation import TextDelta, ToolCallDelta
from hybrid.routing.dispatcher import Answer
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

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


@router.post("/v1/chat/completions")
async def chat_completions(
    body: Annotated[ChatCompletionRequest, Depends(JsonBody(ChatCompletionRequest))],
    request: Request,
) -> Response:
    """Answer a chat completion request, locally or through a cloud provider."""
    request_id = request_id_of(request.scope)
    generation_request = chat_request(body, request_id)
    starting = start_answer(request, generation_request, model=body.model)
    want_logprobs = bool(body.logprobs)
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)

        def frames(answer: Answer) -> AsyncGenerator[bytes, None]:
            meta = ResponseMeta(
                id=f"chatcmpl-{request_id}", created=int(time.time()), model=answer.model
            )
            return _stream(
                answer.generation, meta, include_usage=include_usage, logprobs=want_logprobs
            )

        return await stream_answer(
            starting,
            frames,
            lambda exc: sse_event(wire_error(exc).body()),
            headers=SSE_HEADERS,
            keep_alive_s=app_state(request).settings.cloud.stream_keep_alive_s,
        )
    answer = await starting
    meta = ResponseMeta(id=f"chatcmpl-{request_id}", created=int(time.time()), model=answer.model)
    headers = answer.headers()
    completion = await collect_unless_disconnected(request.receive, answer.generation)
    payload = chat_completion_json(
        meta,
        completion.text,
        completion.logprobs if want_logprobs else None,
        completion.done,
        completion.tool_calls,
    )
    return JsonResponse(payload, headers=headers)


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
