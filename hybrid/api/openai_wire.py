"""Translation between OpenAI's wire format and hybrid's generation types.

Requests come in as :mod:`hybrid.api.schema` models and become a
:class:`~hybrid.generation.GenerationRequest`; events go out as OpenAI's JSON objects and SSE
chunks, framed exactly as OpenAI frames them: ``role`` in the first delta only, a last chunk
with ``finish_reason``, an optional usage chunk with ``choices: []``, then ``data: [DONE]``.
Tool calls are translated by :mod:`hybrid.api.openai_tools`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from hybrid.api.openai_tools import message_tool_fields, request_tools, tool_calls_json
from hybrid.api.schema import (
    MAX_STOP_SEQUENCES,
    ChatCompletionRequest,
    ChatMessageIn,
    CompletionRequest,
)
from hybrid.errors import InvalidRequestError
from hybrid.generation import (
    GenerationDone,
    GenerationRequest,
    Message,
    ResponseFormat,
    SamplingParams,
    TokenLogprob,
    ToolCall,
    Usage,
    tool_needs,
)

# OpenAI's default for the legacy completions endpoint.
COMPLETIONS_DEFAULT_MAX_TOKENS = 16
SSE_DONE = b"data: [DONE]\n\n"


@dataclass(frozen=True)
class ResponseMeta:
    """Fields shared by every object of one response."""

    id: str
    created: int
    model: str


def sse(payload: dict[str, Any]) -> bytes:
    """Frame one JSON payload as a server-sent event."""
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def chat_request(body: ChatCompletionRequest, request_id: str) -> GenerationRequest:
    """Translate a chat completion request.

    Raises:
        InvalidRequestError: The request asks for something hybrid cannot do, or its tools
            are inconsistent (see :func:`~hybrid.api.openai_tools.request_tools`).
    """
    _check_common(body.n, body.stop)
    tools, tool_choice, parallel_tool_calls = request_tools(body)
    max_tokens = body.max_completion_tokens or body.max_tokens
    top_logprobs = None
    if body.logprobs:
        top_logprobs = body.top_logprobs or 0
    elif body.top_logprobs is not None:
        raise InvalidRequestError("top_logprobs requires logprobs to be true", param="top_logprobs")
    response_format = None
    if body.response_format is not None and body.response_format.type != "text":
        schema = None
        if body.response_format.type == "json_schema":
            spec = body.response_format.json_schema
            if spec is None or spec.schema_ is None:
                raise InvalidRequestError(
                    "response_format of type json_schema needs json_schema.schema",
                    param="response_format",
                )
            schema = spec.schema_
        response_format = ResponseFormat(kind=body.response_format.type, schema=schema)
    translated = [_message(m, i) for i, m in enumerate(body.messages)]
    needs = frozenset(need for _, needs in translated for need in needs)
    return GenerationRequest(
        request_id=request_id,
        stream=body.stream,
        messages=tuple(message for message, _ in translated),
        needs=needs | tool_needs(tools, tool_choice),
        tools=tools,
        tool_choice=tool_choice,
        parallel_tool_calls=parallel_tool_calls,
        params=SamplingParams(
            max_tokens=max_tokens,
            temperature=body.temperature,
            top_p=body.top_p,
            stop=_stops(body.stop),
            seed=body.seed,
            top_logprobs=top_logprobs,
            response_format=response_format,
        ),
    )


def completion_request(body: CompletionRequest, request_id: str) -> GenerationRequest:
    """Translate a legacy text completion request.

    Raises:
        InvalidRequestError: Several prompts, ``echo`` or ``suffix`` were asked for.
    """
    _check_common(body.n, body.stop)
    prompt = body.prompt
    if isinstance(prompt, list):
        if len(prompt) != 1:
            raise InvalidRequestError(
                f"prompt holds {len(prompt)} prompts; the local model answers one per request",
                param="prompt",
            )
        prompt = prompt[0]
    if body.echo:
        raise InvalidRequestError("echo is not supported; omit it", param="echo")
    if body.suffix:
        raise InvalidRequestError("suffix (insertion) is not supported; omit it", param="suffix")
    return GenerationRequest(
        request_id=request_id,
        stream=body.stream,
        prompt=prompt,
        params=SamplingParams(
            max_tokens=body.max_tokens or COMPLETIONS_DEFAULT_MAX_TOKENS,
            temperature=body.temperature,
            top_p=body.top_p,
            stop=_stops(body.stop),
            seed=body.seed,
            top_logprobs=body.logprobs,
        ),
    )


def usage_json(usage: Usage) -> dict[str, int]:
    """OpenAI's ``usage`` object."""
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }


def chat_logprobs_json(logprobs: tuple[TokenLogprob, ...]) -> dict[str, Any]:
    """OpenAI's chat ``logprobs`` object."""
    return {
        "content": [
            {
                "token": lp.token,
                "logprob": lp.logprob,
                "bytes": list(lp.bytes),
                "top_logprobs": [
                    {"token": t.token, "logprob": t.logprob, "bytes": list(t.bytes)} for t in lp.top
                ],
            }
            for lp in logprobs
        ],
        "refusal": None,
    }


def completion_logprobs_json(logprobs: tuple[TokenLogprob, ...], offset: int) -> dict[str, Any]:
    """The legacy completions ``logprobs`` object; ``offset`` is where this text starts."""
    offsets = []
    for lp in logprobs:
        offsets.append(offset)
        offset += len(lp.token)
    return {
        "tokens": [lp.token for lp in logprobs],
        "token_logprobs": [lp.logprob for lp in logprobs],
        "top_logprobs": [{t.token: t.logprob for t in lp.top} for lp in logprobs],
        "text_offset": offsets,
    }


def chat_completion_json(
    meta: ResponseMeta,
    text: str,
    logprobs: tuple[TokenLogprob, ...] | None,
    done: GenerationDone,
    tool_calls: tuple[ToolCall, ...] = (),
) -> dict[str, Any]:
    """A whole ``chat.completion`` object.

    An answer made only of tool calls has ``content: null``, as OpenAI's do.
    """
    message: dict[str, Any] = {
        "role": "assistant",
        "content": None if tool_calls and not text else text,
        "refusal": None,
    }
    if tool_calls:
        message["tool_calls"] = tool_calls_json(tool_calls)
    return {
        "id": meta.id,
        "object": "chat.completion",
        "created": meta.created,
        "model": meta.model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None if logprobs is None else chat_logprobs_json(logprobs),
                "finish_reason": done.finish_reason,
            }
        ],
        "usage": usage_json(done.usage),
        "system_fingerprint": None,
    }


def chat_chunk(
    meta: ResponseMeta,
    delta: dict[str, Any],
    *,
    finish_reason: str | None = None,
    logprobs: tuple[TokenLogprob, ...] | None = None,
    include_usage: bool = False,
) -> dict[str, Any]:
    """One ``chat.completion.chunk`` with a single choice."""
    chunk: dict[str, Any] = {
        "id": meta.id,
        "object": "chat.completion.chunk",
        "created": meta.created,
        "model": meta.model,
        "system_fingerprint": None,
        "choices": [
            {
                "index": 0,
                "delta": delta,
                "logprobs": None if logprobs is None else chat_logprobs_json(logprobs),
                "finish_reason": finish_reason,
            }
        ],
    }
    if include_usage:
        chunk["usage"] = None
    return chunk


def chat_usage_chunk(meta: ResponseMeta, usage: Usage) -> dict[str, Any]:
    """The closing usage chunk of a stream with ``include_usage``: no choices."""
    return {
        "id": meta.id,
        "object": "chat.completion.chunk",
        "created": meta.created,
        "model": meta.model,
        "system_fingerprint": None,
        "choices": [],
        "usage": usage_json(usage),
    }


def completion_json(
    meta: ResponseMeta,
    text: str,
    logprobs: dict[str, Any] | None,
    finish_reason: str | None,
    usage: Usage | None,
    *,
    chunk: bool = False,
) -> dict[str, Any]:
    """A ``text_completion`` object, whole or as one streamed chunk."""
    body: dict[str, Any] = {
        "id": meta.id,
        "object": "text_completion",
        "created": meta.created,
        "model": meta.model,
        "choices": [
            {"text": text, "index": 0, "logprobs": logprobs, "finish_reason": finish_reason}
        ],
        "system_fingerprint": None,
    }
    if not chunk or usage is not None:
        body["usage"] = None if usage is None else usage_json(usage)
    return body


def _check_common(n: int | None, stop: str | list[str] | None) -> None:
    if n is not None and n != 1:
        raise InvalidRequestError(
            f"n={n} is not supported: the local model returns one choice; send n=1 "
            f"or make {n} requests",
            param="n",
        )
    if isinstance(stop, list) and len(stop) > MAX_STOP_SEQUENCES:
        raise InvalidRequestError(
            f"stop holds {len(stop)} sequences; at most {MAX_STOP_SEQUENCES} are allowed",
            param="stop",
        )


def _stops(stop: str | list[str] | None) -> tuple[str, ...]:
    if stop is None:
        return ()
    if isinstance(stop, str):
        return (stop,) if stop else ()
    return tuple(s for s in stop if s)


# Content parts other than text, and the capability each needs.
_PART_NEEDS = {"image_url": "images", "input_audio": "audio"}


def _message(message: ChatMessageIn, index: int) -> tuple[Message, set[str]]:
    content = message.content
    tools = message_tool_fields(message, index)
    if content is None:
        return Message(role=message.role, content="", **tools), set()
    if isinstance(content, str):
        return Message(role=message.role, content=content, **tools), set()
    texts = []
    needs: set[str] = set()
    for part in content:
        if part.type == "text" and part.text is not None:
            texts.append(part.text)
        elif part.type in _PART_NEEDS:
            needs.add(_PART_NEEDS[part.type])
        else:
            raise InvalidRequestError(
                f"messages[{index}] has a content part of type {part.type!r}; hybrid accepts "
                f"text, image_url and input_audio parts",
                param=f"messages[{index}].content",
            )
    parts = tuple(part.model_dump(exclude_none=True) for part in content) if needs else ()
    return Message(role=message.role, content="".join(texts), parts=parts, **tools), needs
