"""The fake cloud's HTTP/1.1 on a raw asyncio stream: reading a request, framing an answer
(Content-Length or chunked SSE), and delivering it piece by piece where a fault slows it down,
stalls it or breaks it off on the real socket."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
from email.utils import formatdate
from http import HTTPStatus

from fake_cloud_answers import Answer, Json, Request, encode_event, http_chunk
from fake_cloud_faults import Fault

TERMINATOR = b"0\r\n\r\n"  # the end of a chunked body


async def read_request(reader: asyncio.StreamReader, *, body: bool = True) -> Request | None:
    """The next request on the connection, or None when the client closed it.

    Args:
        body: Read the body too; False reads the request line and headers only, leaves the
            body unread on the socket and gives the request an empty one.

    Raises:
        ValueError: a chunked request body, which the fake does not read.
        asyncio.IncompleteReadError: the connection closed mid-request.
    """
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
    length = int(headers.get("content-length", "0")) if body else 0
    raw_body = await reader.readexactly(length) if length else b""
    keep_alive = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
    return Request(method, target.split("?", 1)[0], headers, raw_body, keep_alive)


def head(answer: Answer, keep_alive: bool) -> bytes:
    """The status line and headers, framed by Content-Length or as chunked SSE."""
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
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def whole_response(answer: Answer, keep_alive: bool) -> bytes:
    """Every byte of `answer`, head to the end of its body, to go out in one write."""
    data = head(answer, keep_alive)
    if answer.events is None:
        return data + answer.body
    return data + b"".join(http_chunk(encode_event(e)) for e in answer.events) + TERMINATOR


def json_response(payload: Json) -> bytes:
    """A 200 with `payload` as its JSON body."""
    body = json.dumps(payload).encode()
    answer = Answer(200, (("content-type", "application/json"),), body)
    return head(answer, keep_alive=True) + body


async def send(writer: asyncio.StreamWriter, data: bytes, keep_alive: bool) -> bool:
    """Write `data`; True if the connection stays open for the next request."""
    writer.write(data)
    await writer.drain()
    return keep_alive


async def deliver(
    answer: Answer, writer: asyncio.StreamWriter, fault: Fault, keep_alive: bool
) -> bool:
    """Write `answer` piece by piece, pausing or breaking off where `fault` says; True if the
    connection lives."""
    interrupt = fault.kind in ("stall", "reset")
    pause = fault.delay_s if fault.kind == "slow_body" else 0.0
    writer.write(head(answer, keep_alive))
    await writer.drain()
    if answer.events is None:
        if interrupt:
            if fault.after_chunks:
                writer.write(answer.body[: len(answer.body) // 2])
            await _break_off(writer, fault)
            return False
        await asyncio.sleep(pause)
        writer.write(answer.body)
    else:
        for index, event in enumerate(answer.events):
            if interrupt and index == fault.after_chunks:
                break
            await asyncio.sleep(pause)
            writer.write(http_chunk(encode_event(event)))
            await writer.drain()
        if interrupt:
            await _break_off(writer, fault)
            return False
        await asyncio.sleep(pause)
        writer.write(TERMINATOR)
    await writer.drain()
    return keep_alive


async def _break_off(writer: asyncio.StreamWriter, fault: Fault) -> None:
    """Stall then close, or reset, once what was written has reached the kernel."""
    if fault.kind == "stall" and fault.comment is not None:
        writer.write(http_chunk(f": {fault.comment}\n\n".encode()))
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
