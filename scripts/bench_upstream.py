"""A minimal, fast OpenAI-compatible upstream on loopback, for ``scripts/bench_proxy.py``.

It answers ``POST /v1/chat/completions`` at once with a fixed short reply and its usage, as one
JSON object or as an SSE stream (one event per token, then the finish, the usage when
``stream_options.include_usage`` asks for it, and ``[DONE]``).  Every response is built once per
(model, stream, usage) and then replayed from a cache, so the upstream costs as little as an
HTTP server can: a raw asyncio protocol on uvloop with httptools' C parser, no framework.

``GET /stats`` returns how many completions it has answered and how many connections it has
accepted, so the benchmark can check that each request it counted really reached the upstream
(no proxy-side cache, no silent retry) and whether a proxy reuses its upstream connections.
Any other ``GET`` answers ``{"status": "ok"}`` (a health check).

Usage:
    python scripts/bench_upstream.py --port P [--host 127.0.0.1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import httptools

# The reply, one token per element; the benchmark checks that the text arrives whole.
REPLY_TOKENS = ("Hello", " from", " the", " bench", " upstream", ".")
REPLY = "".join(REPLY_TOKENS)
PROMPT_TOKENS = 12
COMPLETION_PATH = b"/v1/chat/completions"


@dataclass
class Counter:
    """What this upstream has done (one process, one event loop, so no lock)."""

    completions: int = 0
    connections: int = 0


@dataclass
class ReplyCache:
    """Whole HTTP responses, built once per (model, stream, include_usage) and replayed.

    Args:
        created: The ``created`` timestamp every answer carries.
    """

    created: int
    _cache: dict[tuple[str, bool, bool], bytes] = field(default_factory=dict)

    def completion(self, body: bytes) -> bytes:
        """The response to one chat completion request body.

        Returns:
            The full HTTP/1.1 response; a 400 when the body is not a JSON object.
        """
        try:
            request = json.loads(body)
        except ValueError:
            return _response(400, b"application/json", b'{"error":{"message":"bad JSON"}}')
        if not isinstance(request, dict):
            return _response(400, b"application/json", b'{"error":{"message":"not an object"}}')
        model = str(request.get("model", "bench-model"))
        stream = request.get("stream") is True
        options = request.get("stream_options")
        usage = stream and isinstance(options, dict) and options.get("include_usage") is True
        key = (model, stream, usage)
        cached = self._cache.get(key)
        if cached is None:
            cached = self._stream(model, usage) if stream else self._whole(model)
            self._cache[key] = cached
        return cached

    def _whole(self, model: str) -> bytes:
        answer = {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": self.created,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": REPLY, "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": _usage(),
        }
        return _response(200, b"application/json", _json(answer))

    def _stream(self, model: str, include_usage: bool) -> bytes:
        def chunk(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
            event: dict[str, Any] = {
                "id": "chatcmpl-bench",
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": model,
                "choices": [
                    {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
                ],
            }
            if include_usage:
                event["usage"] = None
            return event

        events = [chunk({"role": "assistant", "content": ""}, None)]
        events += [chunk({"content": token}, None) for token in REPLY_TOKENS]
        events.append(chunk({}, "stop"))
        if include_usage:
            final = chunk({}, None)
            final["choices"] = []
            final["usage"] = _usage()
            events.append(final)
        frames = [b"data: " + _json(event) + b"\n\n" for event in events]
        frames.append(b"data: [DONE]\n\n")
        # One HTTP chunk per event, as a real provider sends them, all in one write: the
        # upstream answers instantly and the proxies under test do the rest.
        body = b"".join(b"%x\r\n%s\r\n" % (len(frame), frame) for frame in frames) + b"0\r\n\r\n"
        head = (
            b"HTTP/1.1 200 OK\r\n"
            b"content-type: text/event-stream\r\n"
            b"cache-control: no-cache\r\n"
            b"transfer-encoding: chunked\r\n\r\n"
        )
        return head + body


class UpstreamProtocol(asyncio.Protocol):
    """One client connection: parse requests with httptools, answer each from the cache.

    Args:
        replies: The response cache shared by every connection.
        counter: Counts answered completions.
    """

    def __init__(self, replies: ReplyCache, counter: Counter) -> None:
        self._replies = replies
        self._counter = counter
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._url = b""
        self._body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)
        self._counter.connections += 1

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            if self._transport is not None:
                self._transport.write(_response(400, b"text/plain", b"bad request"))
                self._transport.close()

    # httptools callbacks

    def on_message_begin(self) -> None:
        self._url = b""
        self._body = []

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        transport = self._transport
        if transport is None:
            return
        method = self._parser.get_method()
        path = self._url.split(b"?", 1)[0]
        if method == b"POST" and path == COMPLETION_PATH:
            self._counter.completions += 1
            transport.write(self._replies.completion(b"".join(self._body)))
        elif method == b"GET" and path == b"/stats":
            counter = self._counter
            stats = _json({"completions": counter.completions, "connections": counter.connections})
            transport.write(_response(200, b"application/json", stats))
        elif method == b"GET":
            transport.write(_response(200, b"application/json", b'{"status":"ok"}'))
        else:
            transport.write(_response(404, b"application/json", b'{"error":"not found"}'))
        if not self._parser.should_keep_alive():
            transport.close()


def _usage() -> dict[str, int]:
    return {
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": len(REPLY_TOKENS),
        "total_tokens": PROMPT_TOKENS + len(REPLY_TOKENS),
    }


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _response(status: int, content_type: bytes, body: bytes) -> bytes:
    reason = {200: b"OK", 400: b"Bad Request", 404: b"Not Found"}[status]
    return b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %d\r\n\r\n%s" % (
        status,
        reason,
        content_type,
        len(body),
        body,
    )


async def serve(host: str, port: int) -> None:
    """Serve until cancelled (SIGTERM/SIGINT end the process)."""
    replies = ReplyCache(created=int(time.time()))
    counter = Counter()
    factory: Callable[[], UpstreamProtocol] = lambda: UpstreamProtocol(replies, counter)  # noqa: E731
    server = await asyncio.get_running_loop().create_server(factory, host, port, backlog=4096)
    async with server:
        await server.serve_forever()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:  # plain asyncio still works, only slower
        asyncio.run(serve(args.host, args.port))
    else:
        uvloop.run(serve(args.host, args.port))
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except KeyboardInterrupt:
        raise SystemExit(0) from None
