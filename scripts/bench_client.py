"""The load generator of ``scripts/bench_proxy.py``: a raw HTTP/1.1 keep-alive client.

httpx would cost more CPU per request than the upstream it measures (0.6 to 0.9 ms on the
two-core machine this was written on, against 0.04 ms for this client), which would blur the
baseline and steal CPU from the servers under test.  This client is httptools' C parser on an
asyncio protocol, one connection per concurrent worker, one request at a time per connection,
and it checks every answer: the status, the whole reply text, ``[DONE]`` for a stream, and
``x-hybrid-route`` where one is expected.

A batch sends warm-up requests, then the measured ones, then ``concurrency - 1`` more, without a
pause, so that every measured request sees the same concurrency.
"""

from __future__ import annotations

import asyncio
import json
import math
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

import httptools
import httpx2

from hybrid.cloud.client import cloud_client
from hybrid.cloud.policy import ReliabilityPolicy

# The upstream's whole reply (``scripts/bench_proxy.py`` starts it with this text); every answer
# must carry it.
REPLY = "Hello from the bench upstream."
MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Say hello."},
]


@dataclass(frozen=True)
class Target:
    """Where requests go and what a correct answer looks like.

    Attributes:
        name: Shown in the report.
        port: Its loopback port.
        model: The ``model`` the request names.
        authorization: The bearer token sent (the upstream's key, LiteLLM's master key; hybrid
            ignores it).
        expect_status: 200, or 404 for the probe that hybrid refuses before any upstream call.
        expect_route: The ``x-hybrid-route`` every answer must carry, if any.
        reaches_upstream: Whether each answer is one upstream request.
        pid: The serving process, for its CPU time (None: not measured).
        via_httpx: Send through ``httpx2.AsyncClient`` (the way hybrid calls a provider) instead
            of the raw client: what that HTTP client costs on its own.
    """

    name: str
    port: int
    model: str
    authorization: str
    expect_status: int = 200
    expect_route: str | None = None
    reaches_upstream: bool = True
    pid: int | None = None
    via_httpx: bool = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/chat/completions"

    def body(self, stream: bool) -> dict[str, Any]:
        """The JSON body, identical for every target but for the model name."""
        body: dict[str, Any] = {
            "model": self.model,
            "messages": MESSAGES,
            "max_tokens": 16,
            "temperature": 0,
        }
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return body

    def request(self, stream: bool) -> bytes:
        """The whole HTTP request, as the raw client sends it."""
        payload = json.dumps(self.body(stream)).encode()
        head = (
            f"POST /v1/chat/completions HTTP/1.1\r\n"
            f"host: 127.0.0.1:{self.port}\r\n"
            f"content-type: application/json\r\n"
            f"accept: {'text/event-stream' if stream else 'application/json'}\r\n"
            f"authorization: Bearer {self.authorization}\r\n"
            f"x-hybrid-route: cloud\r\n"
            f"content-length: {len(payload)}\r\n\r\n"
        )
        return head.encode() + payload


@dataclass(frozen=True)
class Exchange:
    """One request's outcome.

    Attributes:
        sent_at: ``perf_counter`` when the request was written.
        done_at: When the answer was complete (or failed).
        seconds: Latency to the whole answer (json) or to the first token (stream); None on error.
        error: What went wrong, or None.
    """

    sent_at: float
    done_at: float
    seconds: float | None
    error: str | None


class ClientConnection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection that carries one request at a time.

    Args:
        target: What a correct answer looks like.
    """

    def __init__(self, target: Target) -> None:
        self._target = target
        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[None] | None = None
        self.lost = False
        self._reset(stream=False)

    def _reset(self, *, stream: bool) -> None:
        self._stream = stream
        self._status = 0
        self._route: bytes | None = None
        self._body = bytearray()
        self._sse = bytearray()
        self._sse_pos = 0
        self._first: float | None = None
        self._text: list[str] = []
        self._done = False
        self._fault: str | None = None

    async def exchange(self, payload: bytes, *, stream: bool, timeout_s: float) -> Exchange:
        """Send one request and wait for its whole answer.

        Returns:
            The outcome; failures are reported in it, never raised.
        """
        loop = asyncio.get_running_loop()
        self._reset(stream=stream)
        waiter = self._waiter = loop.create_future()
        expiry = loop.call_later(timeout_s, self._fail, f"no answer within {timeout_s:g} s")
        assert self._transport is not None
        sent = time.perf_counter()
        self._transport.write(payload)
        try:
            await waiter
        except ConnectionError as exc:
            return Exchange(sent, time.perf_counter(), None, str(exc))
        finally:
            expiry.cancel()
            self._waiter = None
        done = time.perf_counter()
        error = self._verdict()
        if error is not None:
            return Exchange(sent, done, None, error)
        # A refusal (the 404 probe) has no first token: its latency is the whole answer's.
        measured = self._first if self._first is not None else done
        return Exchange(sent, done, measured - sent, None)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    async def aclose(self) -> None:
        self.close()

    def _verdict(self) -> str | None:
        target = self._target
        if self._status != target.expect_status:
            return f"HTTP {self._status}: {bytes(self._body[:200])!r}"
        if self._fault is not None:
            return self._fault
        if target.expect_route is not None and self._route != target.expect_route.encode():
            return f"x-hybrid-route is {self._route!r}, not {target.expect_route!r}"
        if target.expect_status != 200:
            return None
        if self._stream:
            text = "".join(self._text)
            if self._first is None or not self._done or text != REPLY:
                return f"incomplete stream (text {text!r}, [DONE] seen: {self._done})"
            return None
        try:
            content = json.loads(self._body)["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            return f"not a completion ({exc!r}): {bytes(self._body[:200])!r}"
        return None if content == REPLY else f"wrong reply {content!r}"

    def _fail(self, reason: str) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionError(reason))
        # A late or broken answer leaves the connection in an unknown state: drop it.
        self.lost = True
        self.close()

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionError(f"connection closed mid-answer ({exc})"))

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(f"malformed HTTP response: {exc}")

    # httptools callbacks

    def on_headers_complete(self) -> None:
        self._status = self._parser.get_status_code()

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"x-hybrid-route":
            self._route = value

    def on_body(self, body: bytes) -> None:
        if self._stream and self._status == 200:
            self._feed_sse(body)
        else:
            self._body += body

    def on_message_complete(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _feed_sse(self, data: bytes) -> None:
        now = time.perf_counter()
        self._sse += data.replace(b"\r\n", b"\n") if b"\r" in data else data
        while (end := self._sse.find(b"\n\n", self._sse_pos)) >= 0:
            event = bytes(self._sse[self._sse_pos : end])
            self._sse_pos = end + 2
            for line in event.split(b"\n"):
                if not line.startswith(b"data:"):
                    continue
                payload = line[5:].strip()
                if payload == b"[DONE]":
                    self._done = True
                    continue
                content = self._content(payload)
                if content:
                    if self._first is None:
                        self._first = now
                    self._text.append(content)

    def _content(self, payload: bytes) -> str | None:
        try:
            chunk = json.loads(payload)
        except ValueError:
            self._fault = f"a stream event is not JSON: {payload[:200]!r}"
            return None
        if not isinstance(chunk, dict):
            self._fault = f"a stream event is not an object: {payload[:200]!r}"
            return None
        if chunk.get("error") is not None:
            self._fault = f"error event: {payload[:300]!r}"
            return None
        try:
            content = chunk["choices"][0]["delta"].get("content")
        except (KeyError, IndexError, TypeError, AttributeError):
            return None  # the usage chunk has no choices
        return content if isinstance(content, str) else None


class Connection(Protocol):
    """What a batch's worker sends through: one request at a time."""

    lost: bool

    async def exchange(self, payload: bytes, *, stream: bool, timeout_s: float) -> Exchange:
        """Send one request and wait for its whole answer; failures are in the outcome."""
        ...

    async def aclose(self) -> None:
        """Close the connection."""
        ...


class HttpxConnection:
    """Whole answers through hybrid's own HTTP client, called the way hybrid calls a provider.

    The ``httpx2.AsyncClient`` every provider gets (:func:`hybrid.cloud.client.cloud_client`):
    ``build_request`` with a JSON body, ``send(stream=True)``, the body read chunk by chunk,
    ``aclose``, then the JSON parsed.  Only for whole answers.

    Args:
        target: Where to send.
    """

    def __init__(self, target: Target) -> None:
        self._target = target
        self._body = target.body(stream=False)
        self._headers = {"Authorization": f"Bearer {target.authorization}"}
        self._client = cloud_client(ReliabilityPolicy())
        self.lost = False

    async def exchange(self, payload: bytes, *, stream: bool, timeout_s: float) -> Exchange:
        """As :meth:`ClientConnection.exchange`; ``payload`` is ignored (httpx builds its own)."""
        if stream:
            raise ValueError("HttpxConnection measures whole answers only")
        sent = time.perf_counter()
        try:
            request = self._client.build_request(
                "POST", self._target.url, json=self._body, headers=self._headers, timeout=timeout_s
            )
            response = await self._client.send(request, stream=True)
            data = b"".join([chunk async for chunk in response.aiter_bytes()])
            await response.aclose()
            content = json.loads(data)["choices"][0]["message"]["content"]
        except (httpx2.HTTPError, ValueError, KeyError, IndexError, TypeError) as exc:
            return Exchange(sent, time.perf_counter(), None, repr(exc))
        done = time.perf_counter()
        if response.status_code != 200 or content != REPLY:
            return Exchange(sent, done, None, f"HTTP {response.status_code}: {data[:200]!r}")
        return Exchange(sent, done, done - sent, None)

    async def aclose(self) -> None:
        await self._client.aclose()


async def open_connection(target: Target) -> Connection:
    """A fresh connection to ``target`` (through httpx when the target says so)."""
    if target.via_httpx:
        return HttpxConnection(target)
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_connection(
        lambda: ClientConnection(target), "127.0.0.1", target.port
    )
    sock = transport.get_extra_info("socket")
    if sock is not None:  # small requests must not wait for Nagle's algorithm
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return protocol


@dataclass(frozen=True)
class Batch:
    """One target at one point for one round.

    Attributes:
        samples: The measured latencies (s), successes only.
        errors: Every error, warm-up included.
        answered: Correct answers, warm-up and cool-down included.
        window_s: From the first measured request's send to the last one's.
        window_completions: Answers completed inside that window (for requests/s).
        truncated: The time limit stopped the batch before its count.
    """

    samples: tuple[float, ...]
    errors: tuple[str, ...]
    answered: int
    window_s: float
    window_completions: int
    truncated: bool


async def run_batch(
    target: Target,
    *,
    stream: bool,
    concurrency: int,
    count: int,
    warmup: int,
    time_limit_s: float,
    timeout_s: float,
) -> Batch:
    """``count`` measured requests at ``concurrency``, between a warm-up and a cool-down.

    Warm-up and measured requests flow without a pause; after the last measured request,
    ``concurrency - 1`` more keep the load on until it has been answered, so every measured
    request sees the same concurrency.

    Args:
        target: Where to send.
        stream: Streamed requests (time to first token) or whole answers.
        concurrency: Workers, one connection each.
        count: Measured requests.
        warmup: Requests sent first and not measured.
        time_limit_s: No request is started after this long.
        timeout_s: Longest wait for one answer.

    Returns:
        The batch's samples and errors.
    """
    payload = target.request(stream)
    total = warmup + count + concurrency - 1
    first_measured, last_measured = warmup, warmup + count - 1
    issued = 0
    records: list[tuple[int, Exchange]] = []
    connections = await asyncio.gather(*(open_connection(target) for _ in range(concurrency)))
    deadline = time.perf_counter() + time_limit_s

    async def worker(connection: Connection) -> None:
        nonlocal issued
        try:
            while issued < total and time.perf_counter() < deadline:
                index = issued
                issued += 1
                if connection.lost:
                    connection = await open_connection(target)
                outcome = await connection.exchange(payload, stream=stream, timeout_s=timeout_s)
                records.append((index, outcome))
        finally:
            await connection.aclose()

    await asyncio.gather(*(worker(c) for c in connections))
    measured = [e for i, e in records if first_measured <= i <= last_measured]
    sends = [e.sent_at for e in measured]
    window = (min(sends), max(sends)) if sends else (0.0, 0.0)
    return Batch(
        samples=tuple(e.seconds for e in measured if e.seconds is not None),
        errors=tuple(e.error for _, e in records if e.error is not None),
        answered=sum(1 for _, e in records if e.error is None),
        window_s=window[1] - window[0],
        window_completions=sum(
            1 for _, e in records if e.error is None and window[0] <= e.done_at <= window[1]
        ),
        truncated=len(measured) < count,
    )


def percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of sorted values; NaN when there are none."""
    if not ordered:
        return math.nan
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]
