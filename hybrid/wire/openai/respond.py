"""hybrid's answers to OpenAI clients: whole objects and the chunks of a stream.

Answers go out as OpenAI's JSON objects and stream chunks, framed exactly as OpenAI frames them:
``role`` in the first delta only, a last chunk with ``finish_reason``, an optional usage chunk
with ``choices: []``, then ``data: [DONE]`` (:data:`hybrid.wire.sse.SSE_DONE`).  Each chunk is
one event of :func:`hybrid.wire.sse.sse_event`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hybrid.generation import GenerationDone, TokenLogprob, ToolCall, Usage
from hybrid.wire.openai.tools import tool_calls_json


@dataclass(frozen=True)
class ResponseMeta:
    """Fields shared by every object of one response."""

    id: str
    created: int
    model: str


def usage_json(usage: Usage) -> dict[str, Any]:
    """OpenAI's ``usage`` object; ``prompt_tokens_details.cached_tokens`` are the prompt tokens
    read from a cache (the provider's, or a local slot's KV cache)."""
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cache_read_tokens},
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

    An answer made only of tool calls, or only of a refusal (``message.refusal``), has
    ``content: null``, as OpenAI's do.
    """
    message: dict[str, Any] = {
        "role": "assistant",
        "content": None if (tool_calls or done.refusal is not None) and not text else text,
        "refusal": done.refusal,
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
    include_usage: bool = False,
) -> dict[str, Any]:
    """A ``text_completion`` object, whole or as one streamed chunk.

    A chunk of a stream with ``include_usage`` has ``"usage": null`` until the closing usage
    chunk, as OpenAI sends it (and :func:`chat_chunk` does); other chunks have no ``usage``.
    """
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
    if not chunk or usage is not None or include_usage:
        body["usage"] = None if usage is None else usage_json(usage)
    return body
