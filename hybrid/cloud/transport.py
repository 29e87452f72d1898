"""An HTTP/1.1 transport for httpx2 on asyncio streams and the ``httptools`` parser.

The cloud path's whole overhead is about a millisecond, and httpx2's default transport
(httpcore2 and the pure-Python ``h11`` parser) spends half of it on a loopback request.  This
transport keeps httpx2's client (its request building, auth, decoding and error types) and
replaces the connection layer: a keep-alive pool per origin, requests written in one go, and
responses parsed by llhttp (the parser uvicorn already uses), the body streamed as it arrives.

It speaks plain HTTP/1.1 to ``http://`` and ``https://`` origins, and nothing else: no HTTP/2,
no proxies (a client with proxies uses httpx2's own transport), no ``HEAD`` (whose responses
have no body to frame).  Failures raise httpx2's own exceptions (``ConnectError``,
``ConnectTimeout``, ``ReadError``, ``WriteError``, ``RemoteProtocolError``), so callers cannot
tell the transports apart; a request's ``trace`` extension hears, as from httpx2's transport,
``connection.connect_tcp.started`` when a new connection is opened for it and
``http11.send_request_headers.started`` as it is written.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
from collections.abc import AsyncIterator
from typing import Any

import httptools
import httpx2

_READ_SIZE = 64 * 2**10
# A request body past this is flushed (drain) before the response is awaited.
_WRITE_HIGH_WATER = 64 * 2**10

_Origin = tuple[str, str, int]


class Http11Transport(httpx2.AsyncBaseTransport):
    """HTTP/1.1 with keep-alive over asyncio; see the module docstring for what it speaks.

    Args:
        max_idle_per_origin: Idle connections kept per origin; more are closed when released.
        ssl_context: TLS settings for ``https://`` origins (httpx2's defaults when None).
    """

    def __init__(
        self, *, max_idle_per_origin: int = 64, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self._max_idle = max_idle_per_origin
        self._ssl_context = ssl_context
        self._idle: dict[_Origin, list[_Connection]] = {}
        self._closed = False

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        """Send a request and return its response once the headers have arrived.

        Raises:
            httpx2.ConnectError, httpx2.ConnectTimeout: No connection could be made.
            httpx2.WriteError: The request could not be sent.
            httpx2.ReadError, httpx2.RemoteProtocolError: The response broke or is not HTTP.
            httpx2.UnsupportedProtocol: Not an http(s) URL, or a HEAD request.
        """
        url = request.url
        if url.scheme not in ("http", "https") or request.method == "HEAD":
            raise httpx2.UnsupportedProtocol(
                f"{url.scheme.upper()} {request.method} is not handled by this transport",
                request=request,
            )
        if self._closed:
            raise httpx2.ConnectError("the transport is closed", request=request)
        origin = (url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80))
        body = await request.aread()
        trace = request.extensions.get("trace")
        connection = self._take_idle(origin)
        if connection is None:
            if trace is not None:
                await trace("connection.connect_tcp.started", {"host": url.host, "port": origin[2]})
            connection = await self._connect(origin, request)
        try:
            if trace is not None:
                await trace("http11.send_request_headers.started", {"request": request})
            connection.send(request, body)
            if len(body) > _WRITE_HIGH_WATER:
                await connection.drain(request)
            await connection.read_head(request)
        except BaseException:
            connection.close()
            raise
        return httpx2.Response(
            connection.status,
            headers=connection.headers,
            stream=_ResponseBody(self, origin, connection, request),
            extensions={"http_version": b"HTTP/1.1"},
        )

    async def aclose(self) -> None:
        """Close every idle connection; connections in use close when their body does."""
        self._closed = True
        for connections in self._idle.values():
            for connection in connections:
                connection.close()
        self._idle.clear()

    def _take_idle(self, origin: _Origin) -> _Connection | None:
        connections = self._idle.get(origin)
        while connections:
            connection = connections.pop()
            # A server closes idle connections when it likes; its FIN has been read by now.
            if connection.reusable:
                return connection
            connection.close()
        return None

    def release(self, origin: _Origin, connection: _Connection) -> None:
        """Take back a connection whose response was read to its end."""
        connections = self._idle.setdefault(origin, [])
        if self._closed or not connection.reusable or len(connections) >= self._max_idle:
            connection.close()
        else:
            connections.append(connection)

    async def _connect(self, origin: _Origin, request: httpx2.Request) -> _Connection:
        scheme, host, port = origin
        timeouts = request.extensions.get("timeout", {})
        tls: ssl.SSLContext | None = None
        if scheme == "https":
            if self._ssl_context is None:
                self._ssl_context = httpx2.create_ssl_context()
                # Say so in the handshake: a server that could pick HTTP/2 must not.
                self._ssl_context.set_alpn_protocols(["http/1.1"])
            tls = self._ssl_context
        try:
            async with asyncio.timeout(timeouts.get("connect")):
                reader, writer = await asyncio.open_connection(
                    host, port, ssl=tls, server_hostname=host if tls else None
                )
        except TimeoutError as exc:
            raise httpx2.ConnectTimeout(f"connect to {host}:{port} timed out") from exc
        except (OSError, ssl.SSLError) as exc:
            raise httpx2.ConnectError(str(exc) or type(exc).__name__, request=request) from exc
        return _Connection(reader, writer)


class _Connection:
    """One TCP (or TLS) connection and the response being parsed on it.

    httptools calls the ``on_*`` methods while :meth:`_fill` feeds it bytes.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._parser = httptools.HttpResponseParser(self)
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunks: collections.deque[bytes] = collections.deque()
        self.complete = False
        self._head_done = False
        self._keep_alive = False
        self._closed = False

    @property
    def reusable(self) -> bool:
        """Whether another request may be sent on this connection."""
        return (
            not self._closed
            and self._keep_alive
            and not self._reader.at_eof()
            and not self._writer.is_closing()
        )

    # -- httptools callbacks ------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()
        self._head_done = True

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        self.complete = True
        self._keep_alive = self._parser.should_keep_alive()

    # -- the exchange -----------------------------------------------------------------------

    def send(self, request: httpx2.Request, body: bytes) -> None:
        """Write the request line, headers and body, and get ready to parse a new response."""
        self._parser = httptools.HttpResponseParser(self)
        self.status, self.headers, self.complete, self._head_done = 0, [], False, False
        self._keep_alive = False
        self.chunks.clear()
        lines = [b"%s %s HTTP/1.1" % (request.method.encode(), request.url.raw_path)]
        lines.extend(b"%s: %s" % (name, value) for name, value in request.headers.raw)
        try:
            self._writer.write(b"\r\n".join(lines) + b"\r\n\r\n" + body)
        except (OSError, RuntimeError) as exc:
            raise httpx2.WriteError(str(exc) or type(exc).__name__, request=request) from exc

    async def drain(self, request: httpx2.Request) -> None:
        """Wait until a large request body has been handed to the network."""
        try:
            await self._writer.drain()
        except OSError as exc:
            raise httpx2.WriteError(str(exc) or type(exc).__name__, request=request) from exc

    async def read_head(self, request: httpx2.Request) -> None:
        """Read until the status line and headers are parsed (and whatever body came along)."""
        while not self._head_done:
            if not await self._fill(request):
                raise httpx2.RemoteProtocolError(
                    "Server disconnected without sending a response.", request=request
                )

    async def read_body(self, request: httpx2.Request) -> AsyncIterator[bytes]:
        """The response body's chunks as they arrive (chunked encoding already undone)."""
        while True:
            while self.chunks:
                yield self.chunks.popleft()
            if self.complete:
                return
            if not await self._fill(request):
                if self._ends_at_close():
                    self.complete = True
                    continue
                raise httpx2.RemoteProtocolError(
                    "peer closed connection without sending complete message body",
                    request=request,
                )

    async def _fill(self, request: httpx2.Request) -> bool:
        """Read once and parse it; False at end of stream."""
        try:
            data = await self._reader.read(_READ_SIZE)
        except OSError as exc:
            raise httpx2.ReadError(str(exc) or type(exc).__name__, request=request) from exc
        if not data:
            return False
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            message = "unexpected protocol upgrade"
            raise httpx2.RemoteProtocolError(message, request=request) from exc
        except httptools.HttpParserError as exc:
            raise httpx2.RemoteProtocolError(f"malformed HTTP: {exc}", request=request) from exc
        return True

    def _ends_at_close(self) -> bool:
        # A response with neither a length nor chunked encoding ends when the server closes.
        names = {name.lower() for name, _ in self.headers}
        return self._head_done and not names & {b"content-length", b"transfer-encoding"}

    def close(self) -> None:
        """Close the connection (idempotent)."""
        if not self._closed:
            self._closed = True
            self._writer.close()


class _ResponseBody(httpx2.AsyncByteStream):
    """A response body read straight off its connection, which returns to the pool at the end."""

    def __init__(
        self,
        transport: Http11Transport,
        origin: _Origin,
        connection: _Connection,
        request: httpx2.Request,
    ) -> None:
        self._transport = transport
        self._origin = origin
        self._connection = connection
        self._request = request
        self._done = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._connection.read_body(self._request):
                yield chunk
        except BaseException:
            self._finish(reuse=False)
            raise
        self._finish(reuse=True)

    async def aclose(self) -> None:
        # Closed before its end: what is left of the body would be read by the next request.
        self._finish(reuse=False)

    def _finish(self, *, reuse: bool) -> None:
        if self._done:
            return
        self._done = True
        if reuse and self._connection.complete:
            self._transport.release(self._origin, self._connection)
        else:
            self._connection.close()


class Http11Client(httpx2.AsyncClient):
    """An ``httpx2.AsyncClient`` on :class:`Http11Transport` whose streamed sends go straight
    to the transport.

    hybrid's providers send requests they built whole (headers merged once), stream the
    response, never follow redirects and use no client-side auth, cookies or event hooks; for
    such a send, the client's auth, redirect and hook layers are pure cost.  Any other send
    takes the normal path.
    """

    def __init__(self, transport: Http11Transport | None = None) -> None:
        self._direct = transport if transport is not None else Http11Transport()
        super().__init__(transport=self._direct, follow_redirects=False)

    async def send(
        self,
        request: httpx2.Request,
        *,
        stream: bool = False,
        auth: Any = httpx2.USE_CLIENT_DEFAULT,
        follow_redirects: Any = httpx2.USE_CLIENT_DEFAULT,
    ) -> httpx2.Response:
        """As ``httpx2.AsyncClient.send``; see the class docstring for the shortcut."""
        direct = (
            stream
            and follow_redirects is not True
            and auth is httpx2.USE_CLIENT_DEFAULT
            and self.auth is None
            and not any(self.event_hooks.values())
            and not self.is_closed
        )
        if not direct:
            return await super().send(
                request, stream=stream, auth=auth, follow_redirects=follow_redirects
            )
        response = await self._direct.handle_async_request(request)
        response.request = request
        return response
