"""A fake cloud: a real HTTP server on loopback speaking OpenAI's and Anthropic's wire formats.

One `FakeCloud` serves OpenAI's ``/v1/chat/completions``, ``/v1/completions`` and ``/v1/models``
and Anthropic's ``/v1/messages`` on one port, with the APIs' exact JSON, SSE framing, error bodies
and headers, so that the official SDKs (and our providers) parse it as they parse the real thing.

Faults are queued with `FakeCloud.push` and consumed one per incoming request, first in first out;
an empty queue means a normal answer::

    429 rate limit (retry-after / retry-after-ms)  Fault.rate_limit(...)
    500 / 502 / 503 / 529 with the API's body      Fault.status(code)
    401 even with the right key                    Fault.wrong_key()
    silence before the status line                 Fault.slow_first_byte(delay_s)
    silence mid-stream, then close                 Fault.stall(after_chunks, stall_s)
    TCP reset (RST) mid-stream                     Fault.reset(after_chunks)
    invalid JSON in a 200 body or a data: line     Fault.malformed()
    the API's error event mid-stream               Fault.stream_error(message, after_chunks)
    connection refused                             closed_port()

The first three replace the answer; the others change how the answer the request earned (an
auth error included) is delivered.

Replies can depend on the prompt: `FakeCloud.replies` maps a piece of text to the reply a request
whose messages (or prompt) contain it gets instead of `FakeCloud.reply`; the first piece found, in
the mapping's order, wins.

Prompt caching is scripted too: set `FakeCloud.prompt_cache` to a `PromptCache` and every plain
answer (streamed or whole) reports that many prompt tokens read from and written to the
provider's cache, on top of the prompt's own words, as each API does: OpenAI counts them in
``prompt_tokens`` and says how many were read in ``prompt_tokens_details.cached_tokens`` (it
reports no writes); Anthropic keeps ``input_tokens`` for the rest and reports
``cache_read_input_tokens`` and ``cache_creation_input_tokens`` apart, in a whole message's
usage and in a stream's ``message_start``.

Tool calls are scripted like the reply: set `FakeCloud.tools` to a `ToolScript` of
`ScriptedCall` s (see `fake_cloud_tools`). A request that offers those tools and does not end with
tool results is answered with the calls, in the API's own format, streamed or not; the turn that
sends the results back gets the plain reply. Tool parts of a request that the real API would
refuse (a result without its call, a call without its result, a tool without its schema) get
that API's 400. OpenAI wants ``Authorization: Bearer <openai_key>``;
Anthropic wants ``x-api-key`` (or Bearer, which its Python SDK 2.x sends) plus
``anthropic-version``.

It is built on `asyncio.start_server` rather than uvicorn because stalls and resets must happen on
the real socket. The server runs its own event loop in a background thread, so sync and async
tests alike can drive it; `push`, `requests` and `reply` are safe to use from the test thread.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, replace
from email.utils import formatdate
from http import HTTPStatus
from types import TracebackType
from typing import Any, Literal

from fake_cloud_tools import ToolScript, calls_due, tool_answer, tool_problem

Api = Literal["openai", "anthropic"]
FaultKind = Literal[
    "rate_limit",
    "status",
    "slow_first_byte",
    "stall",
    "reset",
    "malformed",
    "wrong_key",
    "stream_error",
]
Json = dict[str, Any]

_FINGERPRINT = "fp_fakec10ud1"
_OPENAI_500 = "The server had an error while processing your request. Sorry about that!"
_OPENAI_BAD_JSON = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't using"
    " your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was"
    " not valid JSON. If you have trouble figuring out how to fix this, please contact us through"
    " our help center at help.openai.com.)"
)
_ANTHROPIC_429 = (
    "This request would exceed the rate limit for your organization of 50 requests per minute."
    " For details, refer to: https://docs.claude.com/en/api/rate-limits. You can see the response"
    " headers for current usage. Please reduce the prompt length or the maximum tokens requested,"
    " or try again later."
)


@dataclass(frozen=True)
class Fault:
    """One misbehaviour for one request; build it with the class methods, not the constructor.

    `after_chunks` counts SSE events as the API sends them, preamble included: OpenAI's chat
    stream opens with a role chunk, then one chunk per word; Anthropic's with message_start,
    content_block_start and ping, then one content_block_delta per word. The status line and
    headers always go out first. A plain (non-stream) answer has no events: with
    ``after_chunks=0`` it breaks off before its body, with more it breaks off halfway through.
    """

    kind: FaultKind
    code: int = 0
    retry_after_s: float | None = None
    retry_after_ms: int | None = None
    delay_s: float = 0.0
    after_chunks: int = 0
    stall_s: float = 0.0
    message: str = ""
    error_type: str = ""

    @classmethod
    def rate_limit(
        cls, retry_after_s: float | None = 1, retry_after_ms: int | None = None
    ) -> Fault:
        """429 with the API's rate-limit body.

        Args:
            retry_after_s: value of the ``retry-after`` header in seconds; None leaves it out.
            retry_after_ms: value of the ``retry-after-ms`` header; None leaves it out.
        """
        return cls("rate_limit", retry_after_s=retry_after_s, retry_after_ms=retry_after_ms)

    @classmethod
    def status(cls, code: int) -> Fault:
        """A server error with the API's body: OpenAI ``server_error``; Anthropic ``api_error``,
        or ``overloaded_error`` for 529.

        Raises:
            ValueError: `code` is not a 5xx status.
        """
        if not 500 <= code <= 599:
            raise ValueError(f"Fault.status takes a 5xx code, got {code}; use another Fault")
        return cls("status", code=code)

    @classmethod
    def slow_first_byte(cls, delay_s: float) -> Fault:
        """Say nothing for `delay_s` seconds after reading the request, then answer normally."""
        return cls("slow_first_byte", delay_s=delay_s)

    @classmethod
    def stall(cls, after_chunks: int, stall_s: float) -> Fault:
        """Send the head and `after_chunks` SSE events, write nothing for `stall_s`, then close
        without ending the body."""
        return cls("stall", after_chunks=after_chunks, stall_s=stall_s)

    @classmethod
    def reset(cls, after_chunks: int) -> Fault:
        """Send the head and `after_chunks` SSE events, then abort the connection with a TCP
        RST."""
        return cls("reset", after_chunks=after_chunks)

    @classmethod
    def malformed(cls, after_chunks: int = 0) -> Fault:
        """Non-stream: a 200 whose JSON body is cut in half (Content-Length still matches).
        Stream: SSE event number `after_chunks` (from 0) carries half of its JSON; the rest of
        the stream follows as normal."""
        return cls("malformed", after_chunks=after_chunks)

    @classmethod
    def wrong_key(cls) -> Fault:
        """401 with the API's authentication error body, whatever key was sent."""
        return cls("wrong_key")

    @classmethod
    def stream_error(
        cls, message: str, after_chunks: int = 0, error_type: str | None = None
    ) -> Fault:
        """Stream: SSE event number `after_chunks` (from 0) is replaced by the API's error event
        carrying `message`, and the stream ends after it (OpenAI: ``data: {"error": ...}``;
        Anthropic: ``event: error``). A plain answer is delivered as normal.

        Args:
            error_type: The error's ``type``; by default the API's server error
                (``server_error``, ``api_error``).
        """
        return cls(
            "stream_error", after_chunks=after_chunks, message=message, error_type=error_type or ""
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
class Received:
    """One request as the fake read it off the wire.

    `headers` has lower-case names; `body` is the parsed JSON object, or None when the body was
    empty, invalid or not an object; `at` is `time.monotonic()` when the request was read.
    """

    api: Api
    path: str
    headers: dict[str, str]
    body: Json | None
    at: float


def closed_port() -> int:
    """A loopback port with nothing listening, so connecting to it is refused.

    Returns:
        A port the OS just handed out and released; nothing in the test run binds it again
        unless it asks the OS for any free port and is given this one.
    """
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --- what goes on the wire ------------------------------------------------------------------

_Event = tuple[str | None, str]  # (SSE event name or None, data line)


@dataclass(frozen=True)
class _Request:
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
class _Answer:
    """A response before delivery: a complete JSON body, or SSE events when `events` is set."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes = b""
    events: tuple[_Event, ...] | None = None

    def broken_off(self, api: Api, fault: Fault) -> _Answer:
        """A stream whose event number `fault.after_chunks` is the API's error event, its last."""
        if self.events is None:
            return self
        if api == "anthropic":
            error = {"type": fault.error_type or "api_error", "message": fault.message}
            event: _Event = ("error", _compact({"type": "error", "error": error}))
        else:
            kind = fault.error_type or "server_error"
            error = {"message": fault.message, "type": kind, "param": None, "code": None}
            event = (None, _compact({"error": error}))
        at = min(fault.after_chunks, len(self.events))
        return replace(self, events=(*self.events[:at], event))

    def malformed(self, index: int) -> _Answer:
        if self.events is None:
            return replace(self, body=self.body[: len(self.body) // 2])
        events = list(self.events)
        at = min(index, len(events) - 1)
        name, data = events[at]
        events[at] = (name, data[: len(data) // 2])
        return replace(self, events=tuple(events))


def _json_answer(api: Api, status: int, payload: Json, *extra: tuple[str, str]) -> _Answer:
    headers = (*_api_headers(api, "application/json"), *extra)
    return _Answer(status, headers, _compact(payload).encode())


def _sse_answer(api: Api, events: list[_Event]) -> _Answer:
    headers = _api_headers(api, "text/event-stream; charset=utf-8")
    headers += (("cache-control", "no-cache"),)
    return _Answer(200, headers, events=tuple(events))


def _api_headers(api: Api, content_type: str) -> tuple[tuple[str, str], ...]:
    request_id = "x-request-id" if api == "openai" else "request-id"
    return (("content-type", content_type), (request_id, f"req_{secrets.token_hex(12)}"))


def _compact(payload: object) -> str:
    return json.dumps(payload, separators=(",", ":"))


def _openai_error(
    status: int, message: str, kind: str, code: str | None = None, param: str | None = None
) -> _Answer:
    error = {"message": message, "type": kind, "param": param, "code": code}
    return _json_answer("openai", status, {"error": error})


def _anthropic_error(status: int, kind: str, message: str, *extra: tuple[str, str]) -> _Answer:
    payload = {"type": "error", "error": {"type": kind, "message": message}}
    return _json_answer("anthropic", status, payload, *extra)


def _auth_error(api: Api, presented: str) -> _Answer:
    if api == "anthropic":
        return _anthropic_error(401, "authentication_error", "invalid x-api-key")
    masked = presented[:3] + "*" * max(len(presented) - 7, 0) + presented[-4:]
    message = (
        f"Incorrect API key provided: {masked if len(presented) > 7 else presented}. You can"
        " find your API key at https://platform.openai.com/account/api-keys."
    )
    return _openai_error(401, message, "invalid_request_error", "invalid_api_key")


def _fault_answer(api: Api, fault: Fault) -> _Answer | None:
    """The error answer a fault puts in place of the real one, or None for delivery faults."""
    if fault.kind == "rate_limit":
        headers: list[tuple[str, str]] = []
        if fault.retry_after_s is not None:
            headers.append(("retry-after", f"{fault.retry_after_s:g}"))
        if fault.retry_after_ms is not None:
            headers.append(("retry-after-ms", str(fault.retry_after_ms)))
        wait = fault.retry_after_s
        if wait is None:
            wait = (fault.retry_after_ms or 1000) / 1000
        if api == "anthropic":
            return _anthropic_error(429, "rate_limit_error", _ANTHROPIC_429, *headers)
        message = (
            "Rate limit reached in organization org-fakecloud on requests per min (RPM): Limit 3,"
            f" Used 3, Requested 1. Please try again in {wait:g}s. Visit"
            " https://platform.openai.com/account/rate-limits to learn more."
        )
        answer = _openai_error(429, message, "requests", "rate_limit_exceeded")
        return replace(answer, headers=(*answer.headers, *headers))
    if fault.kind == "status":
        if api == "openai":
            return _openai_error(fault.code, _OPENAI_500, "server_error")
        if fault.code == 529:
            return _anthropic_error(529, "overloaded_error", "Overloaded")
        return _anthropic_error(fault.code, "api_error", "Internal server error")
    return None


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


def _texts(part: object) -> str:
    """Every string of a request body's messages, system prompt and prompt, joined."""
    if isinstance(part, str):
        return part
    if isinstance(part, list):
        return "\n".join(_texts(item) for item in part)
    if isinstance(part, dict):
        keys = ("messages", "system", "prompt", "content", "text")
        return "\n".join(_texts(part.get(key)) for key in keys if key in part)
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


def _tool_answer(api: Api, body: Json, script: ToolScript, prompt: object) -> _Answer | None:
    """The 400 the API gives a request's tool parts, or its answer with tool calls, or None
    when this request gets no calls."""
    problem = tool_problem(api, body)
    if problem is not None:
        if api == "anthropic":
            return _anthropic_error(400, "invalid_request_error", problem)
        return _openai_error(400, problem, "invalid_request_error")
    calls = calls_due(api, body, script)
    if not calls:
        return None
    answer = tool_answer(api, body, script, calls, _count_words(prompt))
    if answer.events is None:
        return _json_answer(api, 200, answer.body)
    return _sse_answer(api, answer.events)


def _openai_answer(
    path: str, body: Json, reply_text: str, tools: ToolScript, cache: PromptCache
) -> _Answer:
    """`chat.completion` / `text_completion` objects, or their SSE streams ending in [DONE]."""
    chat = path == "/v1/chat/completions"
    required = ("model", "messages") if chat else ("model", "prompt")
    missing = [name for name in required if name not in body]
    if missing:
        problem = f"Missing required parameter: '{missing[0]}'."
        return _openai_error(
            400, problem, "invalid_request_error", "missing_required_parameter", missing[0]
        )
    if chat and (called := _tool_answer("openai", body, tools, body["messages"])) is not None:
        return called
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    prompt = body["messages"] if chat else body["prompt"]
    reply = _Reply.compose(reply_text, prompt, body.get("stop"), limit)
    finish = "length" if reply.hit_limit else "stop"
    head: Json = {
        "id": f"{'chatcmpl' if chat else 'cmpl'}-{secrets.token_hex(12)}",
        "object": "chat.completion" if chat else "text_completion",
        "created": int(time.time()),
        "model": body["model"],
    }
    if not body.get("stream"):
        if chat:
            message = {"role": "assistant", "content": reply.text, "refusal": None}
            choice: Json = {"index": 0, "message": {**message, "annotations": []}}
        else:
            choice = {"text": reply.text, "index": 0}
        choice |= {"logprobs": None, "finish_reason": finish}
        return _json_answer(
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

    def sse(piece: Json, finish_reason: str | None = None) -> _Event:
        if chat:
            choice = {"index": 0, "delta": piece, "logprobs": None}
        else:
            choice = {"text": piece.get("content", ""), "index": 0, "logprobs": None}
        choice["finish_reason"] = finish_reason
        return None, _compact({**head, "choices": [choice]})

    events = [sse({"role": "assistant", "content": "", "refusal": None})] if chat else []
    events += [sse({"content": piece}) for piece in reply.chunks]
    events.append(sse({}, finish))
    if with_usage:
        usage = _openai_usage(reply, cache)
        events.append((None, _compact({**head, "choices": [], "usage": usage})))
    events.append((None, "[DONE]"))
    return _sse_answer("openai", events)


def _anthropic_answer(
    body: Json, reply_text: str, tools: ToolScript, cache: PromptCache
) -> _Answer:
    """A `message` object, or its SSE stream from message_start to message_stop."""
    missing = [name for name in ("model", "messages", "max_tokens") if name not in body]
    if missing:
        return _anthropic_error(400, "invalid_request_error", f"{missing[0]}: Field required")
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
        return _json_answer("anthropic", 200, message)

    def event(name: str, **data: Any) -> _Event:
        return name, _compact({"type": name, **data})

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
    return _sse_answer("anthropic", events)


def _encode_event(event: _Event) -> bytes:
    name, data = event
    return (f"event: {name}\n" if name else "").encode() + f"data: {data}\n\n".encode()


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


# --- the server -----------------------------------------------------------------------------


class FakeCloud:
    """OpenAI's /v1/chat/completions, /v1/completions, /v1/models and Anthropic's /v1/messages
    on one loopback port.

    Use it as a context manager, or call `start` and `stop`. The OpenAI base URL is
    ``base_url + "/v1"``; the Anthropic one is `base_url` itself.
    """

    def __init__(
        self,
        *,
        openai_key: str = "sk-fake-openai",
        anthropic_key: str = "sk-ant-fake",
        reply: str = "Hello from the fake cloud.",
        models: Sequence[str] = ("gpt-4.1-mini", "gpt-4.1"),
    ) -> None:
        self._openai_key = openai_key
        self._anthropic_key = anthropic_key
        self._models = tuple(models)
        # The test thread and the server thread both touch these three; only under the lock.
        self._lock = threading.Lock()
        self._reply = reply
        self._replies: dict[str, str] = {}
        self._tools = ToolScript()
        self._cache = PromptCache()
        self._faults: deque[Fault] = deque()
        self._requests: list[Received] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._port: int | None = None

    # --- lifecycle, called from the test thread

    def start(self) -> FakeCloud:
        """Listen on a free loopback port, serving from a background thread.

        Returns:
            self, listening once this returns.

        Raises:
            RuntimeError: already started.
        """
        if self._thread is not None:
            raise RuntimeError("this FakeCloud is already running; stop() it first")
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="fake-cloud", daemon=True)
        thread.start()
        try:
            server = asyncio.run_coroutine_threadsafe(
                asyncio.start_server(self._serve, "127.0.0.1", 0), loop
            ).result(timeout=10)
        except BaseException:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
            loop.close()
            raise
        self._loop, self._thread, self._server = loop, thread, server
        self._port = int(server.sockets[0].getsockname()[1])
        return self

    def stop(self) -> None:
        """Stop listening and drop open connections (stalled ones included); a no-op when not
        running. Afterwards connecting to `port` is refused."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
        self._loop = self._thread = self._server = None

    def __enter__(self) -> FakeCloud:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The port it listens on (kept after `stop`, when it refuses connections).

        Raises:
            RuntimeError: never started.
        """
        if self._port is None:
            raise RuntimeError("FakeCloud has no port until start() is called")
        return self._port

    @property
    def openai_key(self) -> str:
        """The key OpenAI requests must carry as ``Authorization: Bearer``."""
        return self._openai_key

    @property
    def anthropic_key(self) -> str:
        """The key Anthropic requests must carry as ``x-api-key`` (or Bearer)."""
        return self._anthropic_key

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``: Anthropic's base URL; OpenAI's is this plus ``/v1``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def reply(self) -> str:
        """The text every successful answer carries (split into word chunks)."""
        with self._lock:
            return self._reply

    @reply.setter
    def reply(self, text: str) -> None:
        with self._lock:
            self._reply = text

    @property
    def replies(self) -> dict[str, str]:
        """Replies by a piece of the request's text (see the module docstring); empty by default."""
        with self._lock:
            return dict(self._replies)

    @replies.setter
    def replies(self, by_text: dict[str, str]) -> None:
        with self._lock:
            self._replies = dict(by_text)

    @property
    def tools(self) -> ToolScript:
        """The tool calls answers make to requests that offer the tools (none by default)."""
        with self._lock:
            return self._tools

    @tools.setter
    def tools(self, script: ToolScript) -> None:
        with self._lock:
            self._tools = script

    @property
    def prompt_cache(self) -> PromptCache:
        """The prompt-cache tokens every plain answer reports (none by default)."""
        with self._lock:
            return self._cache

    @prompt_cache.setter
    def prompt_cache(self, cache: PromptCache) -> None:
        with self._lock:
            self._cache = cache

    @property
    def requests(self) -> list[Received]:
        """A copy of every request read so far, in order of arrival, faulted ones included."""
        with self._lock:
            return list(self._requests)

    def push(self, *faults: Fault) -> None:
        """Queue faults; each incoming request (to any path) takes the oldest one."""
        with self._lock:
            self._faults.extend(faults)

    def reset(self) -> None:
        """Forget queued faults, recorded requests, scripted tool calls and the prompt cache."""
        with self._lock:
            self._faults.clear()
            self._requests.clear()
            self._tools = ToolScript()
            self._cache = PromptCache()
            self._replies = {}

    # --- the server thread

    async def _shutdown(self) -> None:
        assert self._server is not None
        self._server.close()
        await asyncio.sleep(0)  # a connection accepted just now registers its handler first
        tasks = list(self._connections)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._server.wait_closed()
        await asyncio.sleep(0)  # aborted transports close their sockets on the next turn

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            while (request := await self._read(reader)) is not None:
                if not await self._exchange(request, writer):
                    break
            writer.close()
        except (
            asyncio.CancelledError,
            ConnectionError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            ValueError,
        ):
            # Cancelled by stop(), or the client went away or spoke garbage: drop the socket.
            # CancelledError is swallowed because asyncio logs it as an error from a
            # client_connected_cb task, and the task ends here either way.
            writer.transport.abort()
        finally:
            self._connections.discard(task)

    async def _read(self, reader: asyncio.StreamReader) -> _Request | None:
        """The next request on the connection, or None when the client closed it."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                raise
            return None
        request_line, *lines = head.decode("latin-1").rstrip("\r\n").split("\r\n")
        method, target, version = request_line.split(" ", 2)
        headers: dict[str, str] = {}
        for line in lines:
            name, _, value = line.partition(":")
            key = name.strip().lower()
            headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
        if "chunked" in headers.get("transfer-encoding", "").lower():
            raise ValueError("the fake cloud reads Content-Length request bodies only")
        length = int(headers.get("content-length", "0"))
        raw_body = await reader.readexactly(length) if length else b""
        keep_alive = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
        return _Request(method, target.split("?", 1)[0], headers, raw_body, keep_alive)

    async def _exchange(self, request: _Request, writer: asyncio.StreamWriter) -> bool:
        """Record and answer one request; True if the connection stays open for the next."""
        with self._lock:
            received = Received(
                request.api, request.path, request.headers, request.json_body(), time.monotonic()
            )
            self._requests.append(received)
            fault = self._faults.popleft() if self._faults else None
            reply, tools, cache = self._reply, self._tools, self._cache
            text = _texts(received.body)
            reply = next((r for piece, r in self._replies.items() if piece in text), reply)
        answer = _fault_answer(request.api, fault) if fault else None
        if answer is None:
            answer = self._answer(request, reply, fault, tools, cache)
        if fault and fault.kind == "slow_first_byte":
            await asyncio.sleep(fault.delay_s)
        if fault and fault.kind == "malformed":
            answer = answer.malformed(fault.after_chunks)
        if fault and fault.kind == "stream_error":
            answer = answer.broken_off(request.api, fault)
        interrupt = fault if fault and fault.kind in ("stall", "reset") else None
        return await self._deliver(answer, writer, interrupt, request.keep_alive)

    def _answer(
        self,
        request: _Request,
        reply: str,
        fault: Fault | None,
        tools: ToolScript,
        cache: PromptCache,
    ) -> _Answer:
        """The answer the real API would give, judged on key, version header, path and body."""
        api, headers = request.api, request.headers
        bearer = headers.get("authorization", "").removeprefix("Bearer ").strip()
        # Anthropic takes x-api-key, and Bearer too: its Python SDK 2.x sends the key that way.
        presented = headers.get("x-api-key", bearer) if api == "anthropic" else bearer
        expected = self._anthropic_key if api == "anthropic" else self._openai_key
        if presented != expected or (fault and fault.kind == "wrong_key"):
            return _auth_error(api, presented)
        if api == "anthropic" and "anthropic-version" not in headers:
            message = "anthropic-version: header is required"
            return _anthropic_error(400, "invalid_request_error", message)

        route = (request.method, request.path)
        if route == ("GET", "/v1/models"):
            created = 1_700_000_000
            models = [
                {"id": model, "object": "model", "created": created, "owned_by": "system"}
                for model in self._models
            ]
            return _json_answer("openai", 200, {"object": "list", "data": models})
        known = {("POST", "/v1/chat/completions"), ("POST", "/v1/completions")}
        if api == "anthropic":
            known = {("POST", "/v1/messages")}
        if route not in known:
            if api == "anthropic":
                return _anthropic_error(404, "not_found_error", "Not Found")
            message = f"Invalid URL ({request.method} {request.path})"
            return _openai_error(404, message, "invalid_request_error")

        body = request.json_body()
        if body is None:
            if api == "anthropic":
                message = "The request body is not valid JSON: expected a JSON object."
                return _anthropic_error(400, "invalid_request_error", message)
            return _openai_error(400, _OPENAI_BAD_JSON, "invalid_request_error")
        if api == "anthropic":
            return _anthropic_answer(body, reply, tools, cache)
        return _openai_answer(request.path, body, reply, tools, cache)

    async def _deliver(
        self,
        answer: _Answer,
        writer: asyncio.StreamWriter,
        interrupt: Fault | None,
        keep_alive: bool,
    ) -> bool:
        """Write `answer`, breaking off where `interrupt` says; True if the connection lives."""
        try:
            reason = HTTPStatus(answer.status).phrase
        except ValueError:
            reason = "Overloaded" if answer.status == 529 else "Error"
        framing = (
            ("content-length", str(len(answer.body)))
            if answer.events is None
            else ("transfer-encoding", "chunked")
        )
        lines = [f"HTTP/1.1 {answer.status} {reason}"]
        lines += [f"{name}: {value}" for name, value in answer.headers]
        lines += [
            f"{framing[0]}: {framing[1]}",
            f"date: {formatdate(usegmt=True)}",
            f"connection: {'keep-alive' if keep_alive else 'close'}",
        ]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

        if answer.events is None:
            if interrupt:
                if interrupt.after_chunks:
                    writer.write(answer.body[: len(answer.body) // 2])
                await self._break_off(writer, interrupt)
                return False
            writer.write(answer.body)
        else:
            for index, event in enumerate(answer.events):
                if interrupt and index == interrupt.after_chunks:
                    break
                writer.write(_chunk(_encode_event(event)))
                await writer.drain()
            if interrupt:
                await self._break_off(writer, interrupt)
                return False
            writer.write(b"0\r\n\r\n")
        await writer.drain()
        return keep_alive

    async def _break_off(self, writer: asyncio.StreamWriter, fault: Fault) -> None:
        """Stall then close, or reset, once what was written has reached the kernel."""
        await writer.drain()
        while writer.transport.get_write_buffer_size():
            await asyncio.sleep(0.001)
        if fault.kind == "stall":
            await asyncio.sleep(fault.stall_s)
            writer.close()
            return
        # Linger on with a zero timeout turns close() into an RST instead of a FIN.
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()
