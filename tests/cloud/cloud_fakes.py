"""Fakes for the cloud provider tests: a scripted upstream, byte streams, a sleep and a clock."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import httpx2
from pydantic import SecretStr

from hybrid.backend import Generation
from hybrid.cloud.anthropic_provider import AnthropicProvider
from hybrid.cloud.openai_provider import OpenAIProvider
from hybrid.cloud.policy import ReliabilityPolicy
from hybrid.generation import GenerationEvent, GenerationRequest, Message, SamplingParams

OPENAI_KEY = "sk-test-openai-0123456789abcdef"
ANTHROPIC_KEY = "sk-ant-test-0123456789abcdef"
SEED = 1234

Reply = httpx2.Response | Exception | Callable[[httpx2.Request], Awaitable[httpx2.Response]]


class FakeSleep:
    """Records the delays a provider asked for, without waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


class FakeClock:
    """Monotonic seconds that move only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Upstream:
    """A scripted provider: each request gets the next reply; every request is recorded."""

    def __init__(self, *replies: Reply) -> None:
        self.replies = list(replies)
        self.requests: list[httpx2.Request] = []

    async def handler(self, request: httpx2.Request) -> httpx2.Response:
        await request.aread()
        self.requests.append(request)
        assert self.replies, f"unexpected extra request to {request.url}"
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        if isinstance(reply, httpx2.Response):
            return reply
        return await reply(request)

    def body(self, index: int = 0) -> Any:
        return json.loads(self.requests[index].content)


class ChunkStream(httpx2.AsyncByteStream):
    """A response body sent in the given chunks.

    It can stall (for good) before one chunk, pause a while before others, or break at the end.
    """

    def __init__(
        self,
        chunks: Sequence[bytes],
        *,
        stall_before: int | None = None,
        pauses: dict[int, float] | None = None,
        fail_with: Exception | None = None,
    ) -> None:
        self.chunks = list(chunks)
        self.stall_before = stall_before
        self.pauses = pauses or {}
        self.fail_with = fail_with
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for index, chunk in enumerate(self.chunks):
            if index == self.stall_before:
                await asyncio.sleep(30)
            await asyncio.sleep(self.pauses.get(index, 0))
            yield chunk
        if self.stall_before == len(self.chunks):
            await asyncio.sleep(30)
        if self.fail_with is not None:
            raise self.fail_with

    async def aclose(self) -> None:
        self.closed = True


def policy(**overrides: Any) -> ReliabilityPolicy:
    """Quick timeouts, so a stall costs a test a fraction of a second."""
    values: dict[str, Any] = {
        "connect_timeout_s": 1.0,
        "first_byte_timeout_s": 2.0,
        "whole_answer_timeout_s": 2.0,
        "idle_timeout_s": 2.0,
    }
    values.update(overrides)
    return ReliabilityPolicy(**values)


def openai(
    client: httpx2.AsyncClient,
    *,
    name: str = "openai",
    base_url: str = "https://api.openai.com/v1",
    key: str | None = OPENAI_KEY,
    sleep: FakeSleep | None = None,
    clock: FakeClock | None = None,
    **overrides: Any,
) -> OpenAIProvider:
    return OpenAIProvider(
        name=name,
        base_url=base_url,
        api_key=None if key is None else SecretStr(key),
        models=("gpt-4.1-mini",),
        client=client,
        policy=policy(**overrides),
        sleep=sleep or FakeSleep(),
        rng=random.Random(SEED),
        clock=clock or FakeClock(),
    )


def anthropic(
    client: httpx2.AsyncClient,
    *,
    sleep: FakeSleep | None = None,
    **overrides: Any,
) -> AnthropicProvider:
    return AnthropicProvider(
        name="anthropic",
        base_url="https://api.anthropic.com",
        api_key=SecretStr(ANTHROPIC_KEY),
        models=("claude-sonnet-4-5",),
        client=client,
        policy=policy(**overrides),
        sleep=sleep or FakeSleep(),
        rng=random.Random(SEED),
        clock=FakeClock(),
    )


def mock_client(upstream: Upstream) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(transport=httpx2.MockTransport(upstream.handler))


def chat(
    *messages: tuple[str, str], stream: bool = False, model: str | None = None, **params: Any
) -> GenerationRequest:
    return GenerationRequest(
        request_id="req-1",
        messages=tuple(Message(role, content) for role, content in messages),
        params=SamplingParams(**params),
        model=model,
        stream=stream,
    )


async def drain(generation: Generation, into: list[GenerationEvent]) -> None:
    """Collect events into ``into`` (kept when the iterator raises), then close."""
    try:
        async for event in generation:
            into.append(event)
    finally:
        await generation.aclose()


def json_response(payload: Any, status: int = 200, **headers: str) -> httpx2.Response:
    return httpx2.Response(status, json=payload, headers=headers)


def sse_response(body: bytes | ChunkStream) -> httpx2.Response:
    headers = {"content-type": "text/event-stream"}
    if isinstance(body, bytes):
        return httpx2.Response(200, headers=headers, content=body)
    return httpx2.Response(200, headers=headers, stream=body)


# -- OpenAI's wire format -------------------------------------------------------------------


def openai_error(message: str, kind: str = "invalid_request_error") -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


def openai_completion(
    text: str, *, finish: str = "stop", prompt_tokens: int = 12, completion_tokens: int = 3
) -> dict[str, Any]:
    return {
        "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
        "object": "chat.completion",
        "created": 1741569952,
        "model": "gpt-4.1-mini-2025-04-14",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": text,
                    "refusal": None,
                    "annotations": [],
                },
                "logprobs": None,
                "finish_reason": finish,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
        },
        "service_tier": "default",
        "system_fingerprint": "fp_6ec83003ad",
    }


def openai_chunk(
    delta: dict[str, Any] | None, *, finish: str | None = None, usage: dict[str, Any] | None = None
) -> bytes:
    """One chat.completion.chunk event, framed as OpenAI frames it."""
    payload: dict[str, Any] = {
        "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
        "object": "chat.completion.chunk",
        "created": 1741569952,
        "model": "gpt-4.1-mini-2025-04-14",
        "service_tier": "default",
        "system_fingerprint": "fp_6ec83003ad",
        "choices": []
        if delta is None
        else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        "usage": usage,
    }
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


def openai_stream(
    *pieces: str, finish: str = "stop", usage: tuple[int, int] | None = (12, 3), done: bool = True
) -> list[bytes]:
    """The events of a streamed chat completion with ``include_usage``: one chunk each."""
    events = [openai_chunk({"role": "assistant", "content": "", "refusal": None})]
    events += [openai_chunk({"content": piece}) for piece in pieces]
    events.append(openai_chunk({}, finish=finish))
    if usage is not None:
        prompt, completion = usage
        events.append(
            openai_chunk(
                None,
                usage={
                    "prompt_tokens": prompt,
                    "completion_tokens": completion,
                    "total_tokens": prompt + completion,
                },
            )
        )
    if done:
        events.append(b"data: [DONE]\n\n")
    return events


# -- Anthropic's wire format ----------------------------------------------------------------


def anthropic_event(kind: str, payload: dict[str, Any]) -> bytes:
    return f"event: {kind}\ndata: {json.dumps({'type': kind, **payload})}\n\n".encode()


def anthropic_message(
    *texts: str,
    stop_reason: str = "end_turn",
    stop_sequence: str | None = None,
    usage: dict[str, int] | None = None,
) -> dict[str, Any]:
    return {
        "id": "msg_013Zva2CMHLNnXjNJJKqJ2EF",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5-20250929",
        "content": [{"type": "text", "text": text} for text in texts],
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": usage or {"input_tokens": 21, "output_tokens": 5},
    }


def anthropic_start(input_tokens: int = 21) -> bytes:
    return anthropic_event(
        "message_start",
        {
            "message": {
                "id": "msg_013Zva2CMHLNnXjNJJKqJ2EF",
                "type": "message",
                "role": "assistant",
                "model": "claude-sonnet-4-5-20250929",
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {
                    "input_tokens": input_tokens,
                    "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": 0,
                    "output_tokens": 1,
                },
            }
        },
    )


def anthropic_text(*pieces: str) -> list[bytes]:
    """A text content block: start, a ping, one delta per piece, stop."""
    events = [
        anthropic_event(
            "content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}
        ),
        anthropic_event("ping", {}),
    ]
    events += [
        anthropic_event(
            "content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": piece}}
        )
        for piece in pieces
    ]
    events.append(anthropic_event("content_block_stop", {"index": 0}))
    return events


def anthropic_end(
    stop_reason: str = "end_turn", output_tokens: int = 7, stop_sequence: str | None = None
) -> list[bytes]:
    return [
        anthropic_event(
            "message_delta",
            {
                "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence},
                "usage": {"output_tokens": output_tokens},
            },
        ),
        anthropic_event("message_stop", {}),
    ]


def anthropic_error(kind: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": message}}
