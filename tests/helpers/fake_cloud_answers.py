"""What the fake cloud puts on the wire: OpenAI's and Anthropic's answers, errors and SSE events.

`api_answer` judges one request as the real API would (key, version header, path, body) and
builds the answer, whole or as SSE events (`fake_cloud_faults` builds what a fault puts in its
place or changes in it). An `Answer` is not yet bytes: the server frames it (Content-Length or
chunked) and breaks it off where a fault says. Replies are cut into words, each carrying the
whitespace before it; the usage counts words, prompt and reply alike.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any, Literal

from fake_cloud_thinking import Thinking, asks_for_thinking, thinking_problem, with_thinking
from fake_cloud_tools import ToolScript, calls_due, tool_answer, tool_problem

Api = Literal["openai", "anthropic"]
Json = dict[str, Any]
Event = tuple[str | None, str]  # (SSE event name or None, data line)

_FINGERPRINT = "fp_fakec10ud1"
_OPENAI_BAD_JSON = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't using"
    " your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was"
    " not valid JSON. If you have trouble figuring out how to fix this, please contact us through"
    " our help center at help.openai.com.)"
)


@dataclass(frozen=True)
class PromptCache:
    """Prompt tokens every answer reports as read from and written to the provider's cache.

    Attributes:
        read: Cache hits (OpenAI's ``cached_tokens``, Anthropic's ``cache_read_input_tokens``).
        write: Tokens written to the cache (Anthropic's ``cache_creation_input_tokens``;
            OpenAI reports none, they count as ordinary prompt tokens there).
    """

    read: int = 0
    write: int = 0


@dataclass(frozen=True)
class Request:
    """One request as read off the wire: the path without its query, lower-case header
    names."""

    method: str
    path: str
    headers: dict[str, str]
    raw_body: bytes
    keep_alive: bool

    @property
    def api(self) -> Api:
        return "anthropic" if self.path.startswith("/v1/messages") else "openai"

    def json_body(self) -> Json | None:
        try:
            body = json.loads(self.raw_body)
        except ValueError:
            return None
        return body if isinstance(body, dict) else None


@dataclass(frozen=True)
class Answer:
    """A response before delivery: a complete JSON body, or SSE events when `events` is set."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes = b""
    events: tuple[Event, ...] | None = None


def json_answer(api: Api, status: int, payload: Json, *extra: tuple[str, str]) -> Answer:
    headers = (*_api_headers(api, "application/json"), *extra)
    return Answer(status, headers, compact(payload).encode())


def sse_answer(api: Api, events: list[Event]) -> Answer:
    headers = _api_headers(api, "text/event-stream; charset=utf-8")
    headers += (("cache-control", "no-cache"),)
    return Answer(200, headers, events=tuple(events))


def _api_headers(api: Api, content_type: str) -> tuple[tuple[str, str], ...]:
    request_id = "x-request-id" if api == "openai" else "request-id"
    return (("content-type", content_type), (request_id, f"req_{secrets.token_hex(12)}"))


def compact(payload: object) -> str:
    return json.dumps(payload, separators=(",", ":"))


def openai_error(
    status: int, message: str, kind: str, code: str | None = None, param: str | None = None
) -> Answer:
    error = {"message": message, "type": kind, "param": param, "code": code}
    return json_answer("openai", status, {"error": error})


def anthropic_error(status: int, kind: str, message: str, *extra: tuple[str, str]) -> Answer:
    payload = {"type": "error", "error": {"type": kind, "message": message}}
    return json_answer("anthropic", status, payload, *extra)


def auth_error(api: Api, presented: str) -> Answer:
    if api == "anthropic":
        return anthropic_error(401, "authentication_error", "invalid x-api-key")
    masked = presented[:3] + "*" * max(len(presented) - 7, 0) + presented[-4:]
    message = (
        f"Incorrect API key provided: {masked if len(presented) > 7 else presented}. You can"
        " find your API key at https://platform.openai.com/account/api-keys."
    )
    return openai_error(401, message, "invalid_request_error", "invalid_api_key")


def not_found(request: Request) -> Answer:
    """The API's 404 for a path it does not serve."""
    if request.api == "anthropic":
        return anthropic_error(404, "not_found_error", "Not Found")
    message = f"Invalid URL ({request.method} {request.path})"
    return openai_error(404, message, "invalid_request_error")


def api_answer(
    request: Request,
    *,
    key: str | None,
    models: tuple[str, ...],
    reply: str,
    tools: ToolScript,
    cache: PromptCache,
    refuse_key: bool = False,
    answer_model: str | None = None,
    refusal: str | None = None,
    thinking: Thinking | None = None,
) -> Answer:
    """The answer the real API would give, judged on key, version header, path and body.

    Args:
        request: What arrived.
        key: The key this API wants (OpenAI: ``Authorization: Bearer``; Anthropic:
            ``x-api-key``, or Bearer, which its Python SDK 2.x sends); None takes any key or
            none.
        models: What ``GET /v1/models`` lists.
        reply: The text a successful answer carries.
        tools: The tool calls an answer makes to a request that offers the tools.
        cache: The prompt-cache tokens a plain answer reports.
        refuse_key: Answer 401 whatever key was sent (`Fault.wrong_key`).
        answer_model: The ``model`` a generated answer names instead of the requested one
            (`Fault.wrong_model`).
        refusal: What an OpenAI chat answer says instead of `reply`, as a refusal
            (``content: null``, ``refusal``; streamed as ``delta.refusal`` pieces), with
            ``finish_reason: "stop"``, as Structured Outputs refuse; None for no refusal.
        thinking: What an Anthropic answer to a request with thinking on thinks
            (`fake_cloud_thinking`); None for the default.
    """
    api, headers = request.api, request.headers
    bearer = headers.get("authorization", "").removeprefix("Bearer ").strip()
    presented = headers.get("x-api-key", bearer) if api == "anthropic" else bearer
    if (key is not None and presented != key) or refuse_key:
        return auth_error(api, presented)
    if api == "anthropic" and "anthropic-version" not in headers:
        message = "anthropic-version: header is required"
        return anthropic_error(400, "invalid_request_error", message)

    route = (request.method, request.path)
    if route == ("GET", "/v1/models"):
        created = 1_700_000_000
        listed = [
            {"id": model, "object": "model", "created": created, "owned_by": "system"}
            for model in models
        ]
        return json_answer("openai", 200, {"object": "list", "data": listed})
    known = {("POST", "/v1/chat/completions"), ("POST", "/v1/completions")}
    if api == "anthropic":
        known = {("POST", "/v1/messages")}
    if route not in known:
        return not_found(request)

    body = request.json_body()
    if body is None:
        if api == "anthropic":
            message = "The request body is not valid JSON: expected a JSON object."
            return anthropic_error(400, "invalid_request_error", message)
        return openai_error(400, _OPENAI_BAD_JSON, "invalid_request_error")
    if answer_model is not None and "model" in body:
        body = {**body, "model": answer_model}
    if api == "anthropic":
        answer = _anthropic_answer(body, reply, tools, cache)
        if answer.status == 200 and asks_for_thinking(body):
            return with_thinking(answer, thinking or Thinking())
        return answer
    return _openai_answer(request.path, body, reply, tools, cache, refusal)


@dataclass(frozen=True)
class _Reply:
    """The reply text as the model would emit it for one request."""

    chunks: tuple[str, ...]
    prompt_tokens: int
    hit_limit: bool
    stop_sequence: str | None

    @classmethod
    def compose(cls, reply: str, prompt: object, stops: object, limit: object) -> _Reply:
        """Cut `reply` at the first stop sequence found in it, then at `limit` chunks."""
        stop_list = [stops] if isinstance(stops, str) else stops if isinstance(stops, list) else []
        found = [
            (reply.find(stop), stop)
            for stop in stop_list
            if isinstance(stop, str) and stop and stop in reply
        ]
        first = min(found, default=None)
        chunks = _word_chunks(reply[: first[0]] if first else reply)
        hit_limit = False
        if isinstance(limit, int) and limit < len(chunks):
            chunks, hit_limit = chunks[: max(limit, 0)], True
        stop = first[1] if first and not hit_limit else None
        return cls(tuple(chunks), _count_words(prompt), hit_limit, stop)

    @property
    def text(self) -> str:
        return "".join(self.chunks)


def _word_chunks(text: str) -> list[str]:
    """Split into words, each carrying the whitespace before it, so the chunks join back."""
    chunks = re.findall(r"\s*\S+", text)
    tail = text[len("".join(chunks)) :]
    if tail and chunks:
        chunks[-1] += tail
    elif tail:
        chunks.append(tail)
    return chunks


def request_text(part: object) -> str:
    """Every string of a request body's messages, system prompt and prompt, joined."""
    if isinstance(part, str):
        return part
    if isinstance(part, list):
        return "\n".join(request_text(item) for item in part)
    if isinstance(part, dict):
        keys = ("messages", "system", "prompt", "content", "text")
        return "\n".join(request_text(part.get(key)) for key in keys if key in part)
    return ""


def _count_words(part: object) -> int:
    """Words in a prompt: strings, lists of messages or content blocks, and their text fields."""
    if isinstance(part, str):
        return len(part.split())
    if isinstance(part, list):
        return sum(_count_words(item) for item in part)
    if isinstance(part, dict):
        return _count_words(part.get("content")) + _count_words(part.get("text"))
    return 0


def _openai_usage(reply: _Reply, cache: PromptCache) -> Json:
    prompt = reply.prompt_tokens + cache.read + cache.write
    return {
        "prompt_tokens": prompt,
        "completion_tokens": len(reply.chunks),
        "total_tokens": prompt + len(reply.chunks),
        "prompt_tokens_details": {"cached_tokens": cache.read, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _tool_answer(api: Api, body: Json, script: ToolScript, prompt: object) -> Answer | None:
    """The 400 the API gives a request's tool parts, or its answer with tool calls, or None
    when this request gets no calls."""
    problem = tool_problem(api, body)
    if problem is not None:
        if api == "anthropic":
            return anthropic_error(400, "invalid_request_error", problem)
        return openai_error(400, problem, "invalid_request_error")
    calls = calls_due(api, body, script)
    if not calls:
        return None
    answer = tool_answer(api, body, script, calls, _count_words(prompt))
    if answer.events is None:
        return json_answer(api, 200, answer.body)
    return sse_answer(api, answer.events)


def _openai_answer(
    path: str,
    body: Json,
    reply_text: str,
    tools: ToolScript,
    cache: PromptCache,
    refusal: str | None = None,
) -> Answer:
    """`chat.completion` / `text_completion` objects, or their SSE streams ending in [DONE]."""
    chat = path == "/v1/chat/completions"
    required = ("model", "messages") if chat else ("model", "prompt")
    missing = [name for name in required if name not in body]
    if missing:
        problem = f"Missing required parameter: '{missing[0]}'."
        return openai_error(
            400, problem, "invalid_request_error", "missing_required_parameter", missing[0]
        )
    if chat and (called := _tool_answer("openai", body, tools, body["messages"])) is not None:
        return called
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    prompt = body["messages"] if chat else body["prompt"]
    refuses = chat and refusal is not None
    reply = _Reply.compose(refusal if refuses else reply_text, prompt, body.get("stop"), limit)
    said = "refusal" if refuses else "content"  # the message's field that carries the words
    finish = "length" if reply.hit_limit else "stop"
    head: Json = {
        "id": f"{'chatcmpl' if chat else 'cmpl'}-{secrets.token_hex(12)}",
        "object": "chat.completion" if chat else "text_completion",
        "created": int(time.time()),
        "model": body["model"],
    }
    if not body.get("stream"):
        if chat:
            message = {"role": "assistant", "content": None, "refusal": None, said: reply.text}
            choice: Json = {"index": 0, "message": {**message, "annotations": []}}
        else:
            choice = {"text": reply.text, "index": 0}
        choice |= {"logprobs": None, "finish_reason": finish}
        return json_answer(
            "openai",
            200,
            {
                **head,
                "choices": [choice],
                "usage": _openai_usage(reply, cache),
                "service_tier": "default",
                "system_fingerprint": _FINGERPRINT,
            },
        )

    if chat:
        head |= {"object": "chat.completion.chunk", "service_tier": "default"}
    head["system_fingerprint"] = _FINGERPRINT
    options = body.get("stream_options")
    with_usage = isinstance(options, dict) and options.get("include_usage") is True
    if with_usage:
        head["usage"] = None  # every chunk but the last says so, as OpenAI's do

    def sse(piece: Json, finish_reason: str | None = None) -> Event:
        if chat:
            choice = {"index": 0, "delta": piece, "logprobs": None}
        else:
            choice = {"text": piece.get("content", ""), "index": 0, "logprobs": None}
        choice["finish_reason"] = finish_reason
        return None, compact({**head, "choices": [choice]})

    opening = {"role": "assistant", "content": None, "refusal": ""} if refuses else None
    opening = opening or {"role": "assistant", "content": "", "refusal": None}
    events = [sse(opening)] if chat else []
    events += [sse({said: piece}) for piece in reply.chunks]
    events.append(sse({}, finish))
    if with_usage:
        usage = _openai_usage(reply, cache)
        events.append((None, compact({**head, "choices": [], "usage": usage})))
    events.append((None, "[DONE]"))
    return sse_answer("openai", events)


def _anthropic_answer(body: Json, reply_text: str, tools: ToolScript, cache: PromptCache) -> Answer:
    """A `message` object, or its SSE stream from message_start to message_stop."""
    missing = [name for name in ("model", "messages", "max_tokens") if name not in body]
    if missing:
        return anthropic_error(400, "invalid_request_error", f"{missing[0]}: Field required")
    if (problem := _anthropic_turns_problem(body) or thinking_problem(body)) is not None:
        return anthropic_error(400, "invalid_request_error", problem)
    prompt = [body.get("system"), body["messages"]]
    if (called := _tool_answer("anthropic", body, tools, prompt)) is not None:
        return called
    reply = _Reply.compose(
        reply_text,
        [body.get("system"), body["messages"]],
        body.get("stop_sequences"),
        body["max_tokens"],
    )
    stop_reason = (
        "max_tokens" if reply.hit_limit else "stop_sequence" if reply.stop_sequence else "end_turn"
    )
    usage = {
        "input_tokens": reply.prompt_tokens,
        "cache_creation_input_tokens": cache.write,
        "cache_read_input_tokens": cache.read,
        "output_tokens": len(reply.chunks),
        "service_tier": "standard",
    }
    message: Json = {
        "id": f"msg_{secrets.token_hex(12)}",
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "content": [{"type": "text", "text": reply.text}],
        "stop_reason": stop_reason,
        "stop_sequence": reply.stop_sequence,
        "usage": usage,
    }
    if not body.get("stream"):
        return json_answer("anthropic", 200, message)

    def event(name: str, **data: Any) -> Event:
        return name, compact({"type": name, **data})

    started = message | {"content": [], "stop_reason": None, "stop_sequence": None}
    started["usage"] = usage | {"output_tokens": 1}  # what Anthropic reports before generating
    events = [
        event("message_start", message=started),
        event("content_block_start", index=0, content_block={"type": "text", "text": ""}),
        event("ping"),
    ]
    events += [
        event("content_block_delta", index=0, delta={"type": "text_delta", "text": piece})
        for piece in reply.chunks
    ]
    events += [
        event("content_block_stop", index=0),
        event(
            "message_delta",
            delta={"stop_reason": stop_reason, "stop_sequence": reply.stop_sequence},
            usage={"output_tokens": len(reply.chunks)},
        ),
        event("message_stop"),
    ]
    return sse_answer("anthropic", events)


def _anthropic_turns_problem(body: Json) -> str | None:
    """What Anthropic answers 400 about in a request's turns and cache markers, or None: no
    message at all, an empty message other than a final assistant one, an empty text block,
    more than four ``cache_control`` breakpoints."""
    messages = body["messages"]
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    for index, message in enumerate(messages):
        content = message.get("content") if isinstance(message, dict) else None
        final_assistant = index == len(messages) - 1 and message.get("role") == "assistant"
        if not content and not final_assistant:
            return (
                f"messages.{index}: all messages must have non-empty content except for the "
                f"optional final assistant message"
            )
        blocks = [b for b in content if isinstance(b, dict)] if isinstance(content, list) else []
        if any(b.get("type") == "text" and not b.get("text") for b in blocks):
            return "messages: text content blocks must be non-empty"
    marked = _count_key(body, "cache_control") - ("cache_control" in body)
    if marked > 4:
        return f"A maximum of 4 blocks with cache_control may be provided. Found {marked}."
    return None


def _count_key(value: object, key: str) -> int:
    """How many objects in `value`, at any depth, have `key`."""
    if isinstance(value, dict):
        return (key in value) + sum(_count_key(item, key) for item in value.values())
    if isinstance(value, list):
        return sum(_count_key(item, key) for item in value)
    return 0


def encode_event(event: Event) -> bytes:
    name, data = event
    return (f"event: {name}\n" if name else "").encode() + f"data: {data}\n\n".encode()


def http_chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)
