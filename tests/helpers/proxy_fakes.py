"""Loopback middlemen for the HTTP client tests: a forward proxy and a TLS front.

``ForwardProxy`` is an HTTP proxy as ``HTTP_PROXY`` / ``HTTPS_PROXY`` name one: a plain
``http://`` request arrives in absolute form (``POST http://host:port/path HTTP/1.1``) and is
forwarded to its origin in origin form, one request per connection; an ``https://`` one arrives
as ``CONNECT host:port`` and gets a byte tunnel.  It records every request line it receives.

``TlsFront`` terminates TLS with a certificate from a test CA and relays the plain bytes to a
server behind it (the fake cloud), so that the fake cloud can be reached over ``https://``.

Both run on the test's own event loop (``async with``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import TracebackType
from urllib.parse import urlsplit


@dataclass(frozen=True)
class ProxiedRequest:
    """A request line the proxy received: ``("POST", "http://127.0.0.1:5/v1/...")`` or
    ``("CONNECT", "127.0.0.1:5")``."""

    method: str
    target: str


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        writer.close()


async def _closed(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError, ssl.SSLError, asyncio.CancelledError):
        await writer.wait_closed()


@contextlib.asynccontextmanager
async def _connection(
    host: str, port: int
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """A connection to ``host:port``, closed on the way out (cancelled or not)."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        yield reader, writer
    finally:
        await _closed(writer)


async def relay(
    client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter],
) -> None:
    """Copy bytes both ways until both sides have closed."""
    await asyncio.gather(_copy(client[0], upstream[1]), _copy(upstream[0], client[1]))


class _LoopbackListener:
    """A loopback server whose connection tasks are cancelled when it closes."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self._ssl = ssl_context
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        assert self._server is not None, "use it inside `async with`"
        return int(self._server.sockets[0].getsockname()[1])

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self.handle(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            await _closed(writer)
            self._tasks.discard(task)

    async def __aenter__(self) -> _LoopbackListener:
        self._server = await asyncio.start_server(self._connected, "127.0.0.1", 0, ssl=self._ssl)
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()


class ForwardProxy(_LoopbackListener):
    """An HTTP forward proxy on loopback; see the module docstring.

    Attributes:
        seen: Every request line received, in order.
    """

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[ProxiedRequest] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> ForwardProxy:
        await super().__aenter__()
        return self

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        request_line, *lines = head.rstrip("\r\n").split("\r\n")
        method, target, version = request_line.split(" ", 2)
        self.seen.append(ProxiedRequest(method, target))
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
            async with _connection(host, int(port)) as upstream:
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                await writer.drain()
                await relay((reader, writer), upstream)
            return
        url = urlsplit(target)
        if url.scheme != "http" or url.hostname is None or url.port is None:
            writer.write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
            return
        headers = [
            line
            for line in lines
            if not line.lower().startswith(("proxy-", "connection:", "keep-alive:"))
        ]
        lengths = [line for line in headers if line.lower().startswith("content-length:")]
        length = int(lengths[0].split(":", 1)[1]) if lengths else 0
        body = await reader.readexactly(length)
        path = url.path + (f"?{url.query}" if url.query else "")
        forwarded = [f"{method} {path} {version}", *headers, "connection: close"]
        async with _connection(url.hostname, url.port) as (upstream_reader, upstream_writer):
            head_out = "\r\n".join(forwarded) + "\r\n\r\n"
            upstream_writer.write(head_out.encode("latin-1") + body)
            await upstream_writer.drain()
            # The origin closes after its answer ("connection: close"), and so does the proxy.
            await _copy(upstream_reader, writer)


class TlsFront(_LoopbackListener):
    """TLS on a loopback port, relayed in plain bytes to ``127.0.0.1:<backend_port>``.

    Args:
        backend_port: Where the decrypted bytes go.
        ssl_context: The server's TLS settings (its certificate).

    Attributes:
        handshakes: The ALPN protocol agreed on each connection (None when none was).
    """

    def __init__(self, backend_port: int, ssl_context: ssl.SSLContext) -> None:
        super().__init__(ssl_context)
        self._backend_port = backend_port
        self.handshakes: list[str | None] = []

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    async def __aenter__(self) -> TlsFront:
        await super().__aenter__()
        return self

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tls = writer.get_extra_info("ssl_object")
        self.handshakes.append(tls.selected_alpn_protocol() if tls is not None else None)
        async with _connection("127.0.0.1", self._backend_port) as upstream:
            await relay((reader, writer), upstream)
