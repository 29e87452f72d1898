"""Upstreams that fail the way real ones do between requests, not within one.

`BlackHole` accepts connections and never answers: a provider behind a proxy that lost its
backend, a firewall that eats packets after the handshake.  `StaleCloud` is the fake cloud
closing keep-alive connections the way servers time out idle ones: it closes a connection after
``idle_close_s`` of silence, and, to lose the race a client loses when the close and its next
request cross on the wire, it may also close a connection when a request arrives on it after
``answers_per_connection`` answers, without answering.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from types import TracebackType
from typing import Any

from fake_cloud import FakeCloud


class BlackHole:
    """A loopback port that accepts every connection, reads what is sent, and says nothing.

    Use it as a context manager; on exit every connection it holds is closed.
    """

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self._held: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="black-hole", daemon=True)
        self.port = int(self._listener.getsockname()[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def accepted(self) -> int:
        """Connections accepted so far."""
        with self._lock:
            return len(self._held)

    def __enter__(self) -> BlackHole:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._closing.set()
        self._thread.join(10)
        self._listener.close()
        with self._lock:
            for connection in self._held:
                connection.close()

    def _accept(self) -> None:
        # Held connections are never read: the kernel's buffers take what a client sends.
        while not self._closing.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            with self._lock:
                self._held.append(connection)


class StaleCloud(FakeCloud):
    """The fake cloud, closing keep-alive connections as an idle timeout would.

    Args:
        idle_close_s: Close a connection that has been idle this long after an answer.
        answers_per_connection: Close a connection, unanswered, when a request arrives on it
            after this many answers; None for never.
        **fake: What `FakeCloud` takes.
    """

    def __init__(
        self,
        *,
        idle_close_s: float = 1.0,
        answers_per_connection: int | None = None,
        **fake: Any,
    ) -> None:
        super().__init__(**fake)
        self._idle_close_s = idle_close_s
        self._answers_per_connection = answers_per_connection
        self._answered: dict[asyncio.StreamReader, int] = {}
        self._dropped = 0
        self._counts = threading.Lock()

    @property
    def dropped(self) -> int:
        """Requests that arrived on a connection and were dropped with it, unanswered."""
        with self._counts:
            return self._dropped

    async def _read(self, reader: asyncio.StreamReader) -> Any:
        answered = self._answered.get(reader, 0)
        if answered == 0:
            request = await super()._read(reader)
        else:
            try:
                request = await asyncio.wait_for(super()._read(reader), self._idle_close_s)
            except TimeoutError:
                request = None
        if request is None:
            self._answered.pop(reader, None)
            return None
        if answered == self._answers_per_connection:
            with self._counts:
                self._dropped += 1
            self._answered.pop(reader, None)
            return None  # the fake closes the connection as if it had timed out just now
        self._answered[reader] = answered + 1
        return request
