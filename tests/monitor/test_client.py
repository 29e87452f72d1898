"""DaemonClient: SSE in, one DaemonUnreachable with a useful message out, whatever went wrong."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Callable

import httpx2
import pytest
from monitor_fakes import FakeDaemon, snapshot, sse, stats, synchronous

from hybrid.monitor.client import DaemonClient, DaemonUnreachable

URL = "http://127.0.0.1:8642"


async def first_events(client: DaemonClient, count: int) -> list[tuple[str, object]]:
    events: list[tuple[str, object]] = []
    async for event in client.events():
        events.append(event)
        if len(events) == count:
            break
    return events


def streaming(chunks: list[bytes], content_type: str = "text/event-stream") -> httpx2.MockTransport:
    """A daemon that answers the event stream with ``chunks`` and then ends it."""

    async def handler(request: httpx2.Request) -> httpx2.Response:
        async def body() -> AsyncIterator[bytes]:
            for chunk in chunks:
                yield chunk

        return httpx2.Response(200, headers={"content-type": content_type}, content=body())

    return httpx2.MockTransport(handler)


@synchronous
async def test_events_are_parsed_across_chunk_boundaries_and_pings_are_skipped() -> None:
    stream = (
        sse("snapshot", snapshot())
        + b": ping\n\n"
        + b'event: mode\ndata: {"mode":\ndata:  "local-only"}\n\n'
        + b"event: budget\r\ndata: not json\r\n\r\n"
    )
    chunks = [stream[i : i + 7] for i in range(0, len(stream), 7)]
    client = DaemonClient(URL, transport=streaming(chunks))

    events = await first_events(client, 3)

    assert [name for name, _ in events] == ["snapshot", "mode", "budget"]
    assert events[1][1] == {"mode": "local-only"}
    assert events[2][1] == "not json"  # handed on as text, for the parser to report
    await client.aclose()


@synchronous
async def test_the_key_is_sent_as_a_bearer_token() -> None:
    fake = FakeDaemon(api_key="s3cret")
    async with DaemonClient(URL, "s3cret", fake.transport()) as client:
        [(name, _)] = await first_events(client, 1)

    assert name == "snapshot"
    assert fake.seen_headers[0]["authorization"] == "Bearer s3cret"
    assert fake.seen_headers[0]["accept"] == "text/event-stream"


@synchronous
async def test_a_wrong_key_says_which_setting_to_fix() -> None:
    fake = FakeDaemon(api_key="s3cret")
    async with DaemonClient(URL, "wrong", fake.transport()) as client:
        with pytest.raises(DaemonUnreachable, match=r"refused the monitor's key \(HTTP 401\)"):
            await first_events(client, 1)
        with pytest.raises(DaemonUnreachable, match="HYBRID_SERVER__API_KEY"):
            await client.set_mode("auto")


@synchronous
async def test_no_daemon_running_names_the_command_that_starts_one() -> None:
    async with DaemonClient(URL, transport=FakeDaemon(up=False).transport()) as client:
        with pytest.raises(DaemonUnreachable) as caught:
            await first_events(client, 1)

    assert str(caught.value).startswith(f"cannot reach the hybrid daemon at {URL}")
    assert "`hybrid serve`" in str(caught.value)
    assert caught.value.url == URL


@pytest.mark.parametrize(
    ("transport", "message"),
    [
        (streaming([sse("snapshot", snapshot())]), "closed the event stream"),
        (streaming([b"<html>"], "text/html"), "answered text/html, not an event stream"),
        (streaming([b"event: snapshot\ndata: \xff\n\n"]), "is not UTF-8"),
        (httpx2.MockTransport(lambda r: httpx2.Response(404)), "has no /v1/hybrid/events"),
        (
            httpx2.MockTransport(lambda r: httpx2.Response(500, text="model crashed")),
            "answered HTTP 500 to /v1/hybrid/events: model crashed",
        ),
    ],
)
@synchronous
async def test_every_failure_is_one_error_that_says_what_happened(
    transport: httpx2.MockTransport, message: str
) -> None:
    async with DaemonClient(URL, transport=transport) as client:
        with pytest.raises(DaemonUnreachable, match=message):
            async for _ in client.events():
                pass


@synchronous
async def test_a_dropped_stream_is_reported_as_dropped() -> None:
    fake = FakeDaemon()
    async with DaemonClient(URL, transport=fake.transport()) as client:
        events = client.events()
        assert (await anext(events))[0] == "snapshot"
        fake.drop()
        with pytest.raises(DaemonUnreachable, match="dropped"):
            await anext(events)


@synchronous
async def test_set_mode_posts_the_mode_and_returns_what_the_daemon_confirms() -> None:
    fake = FakeDaemon()
    async with DaemonClient(URL, transport=fake.transport()) as client:
        assert await client.set_mode("local-only") == "local-only"
        with pytest.raises(ValueError, match="auto, local-only, cloud-only"):
            await client.set_mode("cheap")
        fake.mode_status = 422
        with pytest.raises(DaemonUnreachable, match="HTTP 422 to /v1/hybrid/mode"):
            await client.set_mode("auto")

    assert fake.mode_posts == [{"mode": "local-only"}, {"mode": "auto"}]


@synchronous
async def test_stats_and_a_base_url_with_v1() -> None:
    fake = FakeDaemon()
    async with DaemonClient(URL + "/v1/", transport=fake.transport()) as client:
        result = await client.stats()

    assert client.url == URL
    assert result.all_time.requests == stats()["all_time"]["requests"]


# --- a real HTTP server on loopback --------------------------------------------------------------


class LoopbackDaemon:
    """A few lines of HTTP/1.1 serving the event stream, chunked, as uvicorn would.

    Each connection gets a snapshot and one request_finished; ``then`` decides how it ends.
    """

    def __init__(self, then: Callable[[asyncio.StreamWriter], None]) -> None:
        self.then = then
        self.requests: list[str] = []
        self.server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        self.requests.append(head.split("\r\n")[0])
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
            b"transfer-encoding: chunked\r\ncache-control: no-cache\r\n\r\n"
        )
        for event in (
            sse("snapshot", snapshot()),
            b": ping\n\n",
            sse("request_finished", json.loads(json.dumps(snapshot()["recent"][0]))),
        ):
            writer.write(b"%x\r\n%s\r\n" % (len(event), event))
        await writer.drain()
        self.then(writer)


async def read_until_failure(client: DaemonClient) -> tuple[list[str], DaemonUnreachable]:
    names: list[str] = []
    try:
        async for name, _ in client.events():
            names.append(name)
    except DaemonUnreachable as exc:
        return names, exc
    raise AssertionError("the event stream ended without an error")


def abort(writer: asyncio.StreamWriter) -> None:
    writer.transport.abort()


def finish(writer: asyncio.StreamWriter) -> None:
    writer.write(b"0\r\n\r\n")
    writer.close()


@pytest.mark.parametrize(
    ("then", "message"), [(abort, "dropped"), (finish, "closed the event stream")]
)
@synchronous
async def test_over_real_http_a_lost_stream_is_reported_and_the_next_call_reconnects(
    then: Callable[[asyncio.StreamWriter], None], message: str
) -> None:
    daemon = LoopbackDaemon(then)
    await daemon.start()
    client = DaemonClient(daemon.url)
    try:
        first, error = await read_until_failure(client)
        second, _ = await read_until_failure(client)
        await daemon.stop()
        _, down = await read_until_failure(client)
    finally:
        await client.aclose()

    assert first == second == ["snapshot", "request_finished"]
    assert message in str(error)
    assert daemon.requests == ["GET /v1/hybrid/events HTTP/1.1"] * 2
    assert "`hybrid serve`" in str(down)


@synchronous
async def test_over_real_http_a_daemon_gone_silent_is_noticed() -> None:
    held: list[asyncio.StreamWriter] = []
    daemon = LoopbackDaemon(held.append)  # sends two events, then neither events nor pings
    await daemon.start()
    client = DaemonClient(daemon.url, idle_timeout_s=0.1)
    try:
        names, error = await read_until_failure(client)
    finally:
        await client.aclose()
        for writer in held:
            writer.close()
        await daemon.stop()

    assert names == ["snapshot", "request_finished"]
    assert "sent nothing for 0.1 s (not even a ping)" in str(error)


@synchronous
async def test_a_daemon_on_this_machine_is_reached_past_the_environments_proxy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A corporate laptop's proxy cannot reach 127.0.0.1: the monitor must not send it there.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        proxy = f"http://127.0.0.1:{closed.getsockname()[1]}"
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, proxy)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    daemon = LoopbackDaemon(finish)
    await daemon.start()
    client = DaemonClient(daemon.url.replace("127.0.0.1", "localhost"))
    try:
        names, _ = await read_until_failure(client)
    finally:
        await client.aclose()
        await daemon.stop()
    assert names == ["snapshot", "request_finished"]
