"""The one SSE module: what hybrid writes (events, comments) and how it reads streams."""

from __future__ import annotations

import ast
import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx2
import pytest

from hybrid.wire.sse import SSE_DONE, SseEvent, SseParser, iter_sse, sse_comment, sse_event

PACKAGE = Path(__file__).resolve().parents[2] / "hybrid"


def parse(*chunks: bytes) -> list[SseEvent]:
    parser = SseParser()
    events = [event for chunk in chunks for event in parser.feed(chunk)]
    return events + parser.close()


def test_events_with_and_without_a_type() -> None:
    stream = b'event: message_start\ndata: {"a": 1}\n\ndata: {"b": 2}\n\n'
    assert parse(stream) == [SseEvent("message_start", '{"a": 1}'), SseEvent(None, '{"b": 2}')]


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_every_line_ending(newline: bytes) -> None:
    stream = newline.join([b"event: ping", b"data: one", b"", b"data: two", b"", b""])
    assert parse(stream) == [SseEvent("ping", "one"), SseEvent(None, "two")]


def test_multi_line_data_is_joined_with_newlines() -> None:
    assert parse(b"data: first\ndata:second\ndata:  third\n\n") == [
        SseEvent(None, "first\nsecond\n third")
    ]


def test_comments_and_unknown_fields_are_ignored() -> None:
    stream = b": OPENROUTER PROCESSING\n\nid: 7\nretry: 100\nfoo: bar\ndata: x\n\n"
    assert parse(stream) == [SseEvent(None, "x")]


def test_a_type_without_data_dispatches_nothing() -> None:
    assert parse(b"event: ping\n\ndata: x\n\n") == [SseEvent(None, "x")]


def test_events_split_byte_by_byte_come_out_whole() -> None:
    stream = 'event: delta\r\ndata: {"text": "héllo ✓"}\r\n\r\ndata: [DONE]\r\n\r\n'.encode()
    chunks = [stream[i : i + 1] for i in range(len(stream))]
    assert parse(*chunks) == [SseEvent("delta", '{"text": "héllo ✓"}'), SseEvent(None, "[DONE]")]


def test_crlf_split_between_chunks_is_one_line_end() -> None:
    # Were "\r" and "\n" counted apart, the "\n" would be a blank line and dispatch early.
    assert parse(b"data: a\r", b"\ndata: b\r\n\r\n") == [SseEvent(None, "a\nb")]


def test_a_last_event_without_its_blank_line_is_kept() -> None:
    assert parse(b"data: one\n\ndata: [DONE]") == [SseEvent(None, "one"), SseEvent(None, "[DONE]")]


def test_a_byte_order_mark_is_dropped() -> None:
    assert parse(b"\xef\xbb\xbfdata: x\n\n") == [SseEvent(None, "x")]


def test_invalid_utf8_is_an_error() -> None:
    with pytest.raises(UnicodeDecodeError):
        parse(b"data: \xff\xfe\n\n")


def test_iter_sse_reads_a_streamed_httpx_response() -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b"data: he"
        yield b"llo\n"
        yield b"\nevent: end\ndata: {}\n\n"

    async def scenario() -> list[SseEvent]:
        def handler(request: httpx2.Request) -> httpx2.Response:
            return httpx2.Response(200, content=body())

        async with httpx2.AsyncClient(transport=httpx2.MockTransport(handler)) as client:
            async with client.stream("GET", "https://example.test/") as response:
                return [event async for event in iter_sse(response)]

    assert asyncio.run(scenario()) == [SseEvent(None, "hello"), SseEvent("end", "{}")]


def test_an_event_is_one_line_of_compact_json_that_reads_back() -> None:
    payload = {"type": "content_block_delta", "delta": {"text": "café ☕", "n": [1, 2.5, None]}}
    framed = sse_event(payload, "content_block_delta")

    assert framed.startswith(b"event: content_block_delta\ndata: {")
    assert framed.endswith(b"\n\n") and framed.count(b"\n") == 3
    [event] = parse(framed)
    assert event.event == "content_block_delta"
    assert json.loads(event.data) == payload


def test_an_event_without_a_type_has_no_event_line() -> None:
    assert sse_event({"a": 1}) == b'data: {"a":1}\n\n'
    assert parse(sse_event({"a": 1}), SSE_DONE) == [
        SseEvent(None, '{"a":1}'),
        SseEvent(None, "[DONE]"),
    ]


def test_comments_are_one_block_that_readers_skip() -> None:
    block = sse_comment("X-Hybrid-Route: cloud", "X-Hybrid-Model: openai/gpt-4.1")

    assert block == b": X-Hybrid-Route: cloud\n: X-Hybrid-Model: openai/gpt-4.1\n\n"
    assert parse(sse_comment("keep-alive"), block, sse_event({"b": 2}, "x")) == [
        SseEvent("x", '{"b":2}')
    ]


def _literals(tree: ast.AST) -> list[tuple[int, str]]:
    """Every str or bytes literal of a module that is not a docstring."""
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and id(node) not in docstrings:
            value = node.value
            if isinstance(value, bytes):
                value = value.decode("latin-1")
            if isinstance(value, str):
                found.append((node.lineno, value))
    return found


def test_every_stream_hybrid_writes_is_framed_by_the_one_encoder() -> None:
    framing = ("data: ", "event: ", ": ping", ": keep-alive")
    elsewhere = [
        f"{path.relative_to(PACKAGE.parent)}:{line}: {value!r}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path != PACKAGE / "wire" / "sse.py"
        for line, value in _literals(ast.parse(path.read_text(), str(path)))
        if any(value.startswith(start) for start in framing)
    ]
    assert not elsewhere, "SSE framed outside hybrid.wire.sse:\n" + "\n".join(elsewhere)
