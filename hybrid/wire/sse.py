"""Server-sent events, both ways: the one encoder every stream hybrid sends uses, and the parser
for the streams it reads.

Writing: :func:`sse_event` frames one event (an optional ``event:`` line, then one ``data:`` line
of compact JSON) and :func:`sse_comment` frames comment lines, which every client ignores
(keep-alives, the late ``X-Hybrid-*`` headers of a streamed answer).  OpenAI's chunks, Anthropic's
typed events, the keep-alives and the admin event feed all go through them.

Reading: network chunks do not respect event boundaries: an event, a line, even a UTF-8 character
or a ``\\r\\n`` pair may be split across two chunks.  :class:`SseParser` (WHATWG HTML, 9.2.6)
keeps what it has not been able to finish and completes it with the next chunk.  What the events
mean is each API's business: a :class:`StreamDecoder` per API turns them into generation events.
"""

from __future__ import annotations

import codecs
import re
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, AsyncIterable
from dataclasses import dataclass
from typing import Any

import httpx2
import orjson

from hybrid.generation import GenerationEvent

_LINE_END = re.compile(r"\r\n|\r|\n")

SSE_DONE = b"data: [DONE]\n\n"
"""The last event of an OpenAI stream."""


def sse_event(data: Any, event: str | None = None) -> bytes:
    """Frame one event.

    Args:
        data: The event's JSON value, written compactly in UTF-8 on one ``data:`` line.
        event: The ``event:`` field (Anthropic's event types, the admin feed's names); None
            for the default type, as OpenAI's chunks have.

    Returns:
        The event, with the blank line that ends it.

    Raises:
        TypeError: ``data`` holds a value JSON cannot carry.
    """
    line = b"data: " + orjson.dumps(data) + b"\n\n"
    return line if event is None else b"event: " + event.encode() + b"\n" + line


def sse_comment(*lines: str) -> bytes:
    """Frame comment lines (``: <line>``) as one block that clients skip.

    Args:
        lines: The comments, one line each, without newlines.

    Returns:
        The block, with the blank line that ends it.
    """
    return "".join(f": {line}\n" for line in lines).encode() + b"\n"


@dataclass(frozen=True)
class SseEvent:
    """One dispatched event.

    Attributes:
        event: The ``event:`` field, or None for the default (``message``) type.
        data: The ``data:`` lines joined with ``\\n``.
    """

    event: str | None
    data: str


class SseParser:
    """Turns chunks of an event stream into events as soon as each is complete.

    ``id:`` and ``retry:`` fields are read and ignored: hybrid never reconnects a stream, since
    a resumed answer could not be told apart from a complete one.
    """

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self._pending = ""
        self._started = False
        self._event: str | None = None
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[SseEvent]:
        """Parse one chunk.

        Args:
            chunk: The next bytes of the stream, cut anywhere.

        Returns:
            The events this chunk completed, in order.

        Raises:
            UnicodeDecodeError: The stream is not UTF-8.
        """
        text = self._pending + self._decoder.decode(chunk)
        if not self._started and text:
            self._started = True
            text = text.removeprefix("\ufeff")
        events: list[SseEvent] = []
        position = 0
        while (match := _LINE_END.search(text, position)) is not None:
            if match.group() == "\r" and match.end() == len(text):
                break  # the "\n" of a "\r\n" may be in the next chunk
            self._line(text[position : match.start()], events)
            position = match.end()
        self._pending = text[position:]
        return events

    def close(self) -> list[SseEvent]:
        """The stream ended: finish the last event.

        The standard drops an event whose blank line never came; hybrid keeps it, because some
        servers end the stream right after the last ``data:`` line, and an event cut in the
        middle of its JSON fails to parse anyway.

        Returns:
            The last event, if the stream ended inside one.

        Raises:
            UnicodeDecodeError: The stream ended inside a UTF-8 character.
        """
        text = self._pending + self._decoder.decode(b"", final=True)
        self._pending = ""
        events: list[SseEvent] = []
        for line in _LINE_END.split(text):
            if line:
                self._line(line, events)
        self._line("", events)
        return events

    def _line(self, line: str, events: list[SseEvent]) -> None:
        if not line:
            if self._data:
                events.append(SseEvent(self._event, "\n".join(self._data)))
            self._event = None
            self._data = []
            return
        if line.startswith(":"):
            return  # a comment: keep-alive padding such as ": ping" or ": OPENROUTER PROCESSING"
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value


async def iter_sse(
    source: httpx2.Response | AsyncIterable[bytes],
) -> AsyncGenerator[SseEvent, None]:
    """Iterate over the events of a streamed response.

    Args:
        source: A response opened with ``stream=True`` (its decoded body is read), or any
            async iterable of byte chunks.

    Yields:
        Each event as soon as its blank line arrives; the last one when the stream ends.

    Raises:
        UnicodeDecodeError: The stream is not UTF-8.
        httpx2.HTTPError: Reading the response failed.
    """
    chunks = source.aiter_bytes() if isinstance(source, httpx2.Response) else source
    parser = SseParser()
    async for chunk in chunks:
        for event in parser.feed(chunk):
            yield event
    for event in parser.close():
        yield event


class StreamDecoder(ABC):
    """Turns one streamed response's SSE events into generation events.

    One decoder per response; it remembers what the stream said so far (usage, the finish
    reason) and knows whether the stream reached its terminal event.
    """

    @property
    @abstractmethod
    def finished(self) -> bool:
        """The terminal event arrived (its GenerationDone was returned); read no further."""

    @abstractmethod
    def feed(self, event: SseEvent) -> list[GenerationEvent]:
        """Translate one event.

        Args:
            event: The next event of the stream.

        Returns:
            The generation events it carries (often none: pings, role announcements); the
            last one is a GenerationDone when this was the terminal event.

        Raises:
            ProviderProtocolError: The event is malformed.
            ProviderError: The event is the provider's own error report.
        """

    @abstractmethod
    def end(self) -> list[GenerationEvent]:
        """The stream ended before :attr:`finished`.

        Returns:
            The closing GenerationDone when the stream is nevertheless complete (an API whose
            terminal marker is optional).

        Raises:
            ProviderProtocolError: The answer was cut short.
        """
