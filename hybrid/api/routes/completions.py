"""``POST /v1/completions``: raw text completion, streamed and not."""

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
from hybrid.wire.openai.decode import completion_request
from hybrid.wire.openai.respond import ResponseMeta, completion_json, completion_logprobs_json
from hybrid.wire.openai.schema import CompletionRequest
from hybrid.wire.sse import SSE_DONE, sse_event

router = APIRouter()
log = logging.getLogger("hybrid.api")


@router.post("/v1/completions")
async def completions(
    body: Annotated[CompletionRequest, Depends(JsonBody(CompletionRequest))], request: Request
) -> Response:
    """Complete a raw prompt with the local model, without chat formatting."""
    request_id = request_id_of(request.scope)
    created = int(time.time())
    want_logprobs = body.logprobs is not None
    include_usage = bool(body.stream_options and body.stream_options.include_usage)

    def meta(answer: Answer) -> ResponseMeta:
        return ResponseMeta(id=f"cmpl-{request_id}", created=created, model=answer.model)

    def frames(answer: Answer) -> AsyncGenerator[bytes, None]:
        return _stream(
            answer.generation, meta(answer), include_usage=include_usage, logprobs=want_logprobs
        )

    def whole(answer: Answer, completion: Completion) -> dict[str, Any]:
        logprobs = completion_logprobs_json(completion.logprobs, 0) if want_logprobs else None
        done = completion.done
        return completion_json(
            meta(answer), completion.text, logprobs, done.finish_reason, done.usage
        )

    return await respond(
        request,
        completion_request(body, request_id),
        model=body.model,
        stream=bool(body.stream),
        frames=frames,
        error_event=lambda exc: sse_event(wire_error(exc).body()),
        whole=whole,
    )


async def _stream(
    generation: Generation, meta: ResponseMeta, *, include_usage: bool, logprobs: bool
) -> AsyncGenerator[bytes, None]:
    offset = 0
    try:
        async for event in generation:
            if isinstance(event, ThinkingDelta):
                continue  # OpenAI's answers have no thinking blocks (nor do its clients ask)
            if isinstance(event, TextDelta):
                if event.text or (logprobs and event.logprobs):
                    lp = completion_logprobs_json(event.logprobs, offset) if logprobs else None
                    piece = completion_json(
                        meta, event.text, lp, None, None, chunk=True, include_usage=include_usage
                    )
                    yield sse_event(piece)
                    offset += len(event.text)
                continue
            if isinstance(event, ToolCallDelta):
                continue  # a raw prompt offers no tools: none is ever called
            last = completion_json(
                meta, "", None, event.finish_reason, None, chunk=True, include_usage=include_usage
            )
            yield sse_event(last)
            if include_usage:
                usage_chunk = completion_json(meta, "", None, None, event.usage, chunk=True)
                usage_chunk["choices"] = []
                yield sse_event(usage_chunk)
        yield SSE_DONE
    except HybridError as exc:
        log.warning("%s failed mid-stream: %s", meta.id, exc)
        yield sse_event(wire_error(exc).body())
    finally:
        await generation.aclose()
