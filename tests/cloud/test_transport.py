"""Http11Transport against real loopback servers that write raw HTTP/1.1, faults included."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gzip
import json
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any

import httpx2
import pytest
import trustme

from hybrid.cloud.transport import Http11Client, Http11Transport

# A handler gets the request head and body and the writer; it writes whatever it likes.
Handler = Callable[[bytes, bytes, asyncio.StreamWriter], Awaitable[None]]


class RawServer:
    """A loopback server that reads one request at a time and lets a handler answer it."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[tuple[bytes, bytes]] = []
        self.port = 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = await reader.readexactly(length)
                self.requests.append((head, body))
                await self.handler(head, body, writer)
                if writer.is_closing():
                    return
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def raw_server(handler: Handler) -> AsyncIterator[RawServer]:
    server = RawServer(handler)
    listener = await asyncio.start_server(server._serve, "127.0.0.1", 0)
    server.port = listener.sockets[0].getsockname()[1]
    try:
        yield server
    finally:
        listener.close()


def reply(body: bytes, *, extra: bytes = b"") -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
        + extra
        + b"content-length: %d\r\n\r\n" % len(body)
        + body
    )


async def json_ok(head: bytes, body: bytes, writer: asyncio.StreamWriter) -> None:
    writer.write(reply(json.dumps({"echo": body.decode(), "len": len(body)}).encode()))


def synchronous(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test on a fresh event loop."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return run


def client(transport: Http11Transport) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(transport=transport, follow_redirects=False)


@synchronous
async def test_a_json_answer_arrives_and_the_connection_is_reused() -> None:
    async with raw_server(json_ok) as server, client(Http11Transport()) as http:
        url = f"http://127.0.0.1:{server.port}/v1/chat/completions?x=1"
        for n in range(3):
            response = await http.post(url, json={"n": n})
            assert response.status_code == 200
            assert response.json()["echo"] == json.dumps({"n": n}, separators=(",", ":"))
    assert server.connections == 1
    head = server.requests[0][0]
    assert head.startswith(b"POST /v1/chat/completions?x=1 HTTP/1.1\r\n")
    assert b"\r\nhost: 127.0.0.1:" in head.lower()


@synchronous
async def test_a_chunked_stream_is_read_chunk_by_chunk_as_it_arrives() -> None:
    release = asyncio.Event()

    async def chunked(head: bytes, body: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"transfer-encoding: chunked\r\n\r\n"
        )
        writer.write(b"6\r\ndata: \r\n")
        await writer.drain()
        await release.wait()
        writer.write(b"3\r\nend\r\n0\r\n\r\n")

    async with raw_server(chunked) as server, client(Http11Transport()) as http:
        request = http.build_request("POST", f"http://127.0.0.1:{server.port}/s", content=b"x")
        response = await http.send(request, stream=True)
        chunks = response.aiter_bytes()
        # The first chunk is here before the server has written the rest.
        assert await anext(chunks) == b"data: "
        release.set()
        assert b"".join([chunk async for chunk in chunks]) == b"end"
        await response.aclose()
        # Read to its end: the connection goes back to the pool.
        await http.post(f"http://127.0.0.1:{server.port}/again", content=b"y")
    assert server.connections == 1


@synchronous
async def test_connection_close_and_a_body_closed_early_are_not_reused() -> None:
    async def closing(head: bytes, body: bytes, writer: asyncio.StreamWriter) -> None:
        if b"/close" in head:
            writer.write(reply(b"{}", extra=b"connection: close\r\n"))
            await writer.drain()
            writer.close()
        else:
            writer.write(reply(b"x" * 100_000))

    async with raw_server(closing) as server, client(Http11Transport()) as http:
        base = f"http://127.0.0.1:{server.port}"
        assert (await http.post(f"{base}/close", content=b"")).json() == {}
        response = await http.send(http.build_request("POST", f"{base}/big"), stream=True)
        await anext(response.aiter_raw())
        await response.aclose()  # the rest of the body is still on the wire
        assert (await http.post(f"{base}/big")).content == b"x" * 100_000
    assert server.connections == 3


@synchronous
async def test_an_idle_connection_the_server_closed_is_not_used_again() -> None:
    async def once(head: bytes, body: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(reply(b"{}"))
        await writer.drain()
        writer.close()  # without saying so in a header

    async with raw_server(once) as server, client(Http11Transport()) as http:
        for _ in range(3):
            assert (await http.post(f"http://127.0.0.1:{server.port}/")).json() == {}
            await asyncio.sleep(0.01)  # the FIN arrives while the connection is idle
    assert server.connections == 3


@pytest.mark.parametrize(
    ("written", "error"),
    [
        (b"", "without sending a response"),
        (b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc", "complete message body"),
        (b"NOT HTTP AT ALL\r\n\r\n", "malformed HTTP"),
    ],
)
@synchronous
async def test_a_broken_response_raises_remote_protocol_error(written: bytes, error: str) -> None:
    async def broken(head: bytes, body: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(written)
        await writer.drain()
        writer.close()

    async with raw_server(broken) as server, client(Http11Transport()) as http:
        with pytest.raises(httpx2.RemoteProtocolError, match=error):
            await http.post(f"http://127.0.0.1:{server.port}/")


@synchronous
async def test_a_body_that_ends_when_the_server_closes_is_complete() -> None:
    async def until_close(head: bytes, body: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nall of it")
        await writer.drain()
        writer.close()

    async with raw_server(until_close) as server, client(Http11Transport()) as http:
        assert (await http.post(f"http://127.0.0.1:{server.port}/")).text == "all of it"


@synchronous
async def test_a_refused_connection_raises_connect_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused
        async with client(Http11Transport()) as http:
            with pytest.raises(httpx2.ConnectError):
                await http.post(f"http://127.0.0.1:{port}/")


@synchronous
async def test_a_large_body_is_sent_whole_and_gzip_is_decoded_by_the_client() -> None:
    async def gzipped(head: bytes, body: bytes, writer: asyncio.StreamWriter) -> None:
        packed = gzip.compress(json.dumps({"len": len(body)}).encode())
        writer.write(reply(packed, extra=b"content-encoding: gzip\r\n"))

    async with raw_server(gzipped) as server, client(Http11Transport()) as http:
        response = await http.post(f"http://127.0.0.1:{server.port}/", content=b"z" * 3_000_000)
        assert response.json() == {"len": 3_000_000}


@synchronous
async def test_a_closed_transport_refuses_new_requests() -> None:
    async with raw_server(json_ok) as server:
        transport = Http11Transport()
        http = client(transport)
        assert (await http.post(f"http://127.0.0.1:{server.port}/", content=b"")).status_code == 200
        await http.aclose()
        with pytest.raises(RuntimeError):
            await http.post(f"http://127.0.0.1:{server.port}/", content=b"")
        with pytest.raises(httpx2.ConnectError, match="closed"):
            await transport.handle_async_request(
                httpx2.Request("POST", f"http://127.0.0.1:{server.port}/")
            )


@synchronous
async def test_the_direct_client_streams_through_its_transport_and_reads_whole_answers_too() -> (
    None
):
    async with raw_server(json_ok) as server:
        http = Http11Client()
        url = f"http://127.0.0.1:{server.port}/v1/x"
        streamed = await http.send(http.build_request("POST", url, content=b"ab"), stream=True)
        assert streamed.request.url == url
        assert json.loads(await streamed.aread()) == {"echo": "ab", "len": 2}
        whole = await http.post(url, content=b"abc")  # the client's own path (not streamed)
        assert whole.json()["len"] == 3
        await http.aclose()
        with pytest.raises(RuntimeError, match="closed"):
            await http.send(http.build_request("POST", url), stream=True)
    assert server.connections == 1


@synchronous
async def test_https_verifies_the_server_and_reuses_the_tls_connection() -> None:
    authority = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("localhost").configure_cert(server_context)
    trusting = ssl.create_default_context()
    authority.configure_trust(trusting)

    server = RawServer(json_ok)
    listener = await asyncio.start_server(server._serve, "127.0.0.1", 0, ssl=server_context)
    port = listener.sockets[0].getsockname()[1]
    try:
        async with client(Http11Transport(ssl_context=trusting)) as http:
            for n in range(2):
                response = await http.post(f"https://localhost:{port}/v1/x", content=b"n" * n)
                assert response.json()["len"] == n
        assert server.connections == 1
        # A client that does not trust the certificate refuses the connection.
        async with client(Http11Transport()) as untrusting:
            with pytest.raises(httpx2.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await untrusting.post(f"https://localhost:{port}/v1/x")
    finally:
        listener.close()
