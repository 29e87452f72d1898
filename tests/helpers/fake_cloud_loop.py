"""The fake cloud's life on loopback: a listening socket served by an event loop of its own in
a background thread, started and stopped from the test thread, and a port nothing listens on."""

from __future__ import annotations

import asyncio
import socket
import threading
from abc import ABC, abstractmethod
from types import TracebackType
from typing import Self


def closed_port() -> int:
    """A loopback port with nothing listening, so connecting to it is refused.

    Returns:
        A port the OS just handed out and released; nothing in the test run binds it again
        unless it asks the OS for any free port and is given this one.
    """
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class LoopbackServer(ABC):
    """A TCP server on 127.0.0.1 whose connections are served on a background event loop.

    Subclasses implement `_converse`, which answers the requests of one connection. Use it as
    a context manager, or call `start` and `stop`.

    Args:
        port: The loopback port to listen on; 0 for any free one.
    """

    def __init__(self, port: int = 0) -> None:
        self._wanted_port = port
        # Only the server thread touches these (start and stop hand them over).
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._port: int | None = None

    @abstractmethod
    async def _converse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Answer the requests of one connection, returning when it should be closed.

        Raises:
            ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
            ValueError: the client went away or spoke garbage; the socket is aborted.
        """

    def start(self) -> Self:
        """Listen on the loopback port, serving from a background thread.

        Returns:
            self, listening once this returns.

        Raises:
            RuntimeError: already started.
            OSError: the port asked for is taken.
        """
        if self._thread is not None:
            raise RuntimeError(f"this {type(self).__name__} is already running; stop() it first")
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="fake-cloud", daemon=True)
        thread.start()
        listen = asyncio.start_server(self._serve, "127.0.0.1", self._wanted_port, backlog=4096)
        try:
            server = asyncio.run_coroutine_threadsafe(listen, loop).result(timeout=10)
        except BaseException:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
            loop.close()
            raise
        self._loop, self._thread, self._server = loop, thread, server
        self._port = int(server.sockets[0].getsockname()[1])
        return self

    def stop(self) -> None:
        """Stop listening and drop open connections (stalled ones included); a no-op when not
        running. Afterwards connecting to `port` is refused."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
        self._loop = self._thread = self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The port it listens on (kept after `stop`, when it refuses connections).

        Raises:
            RuntimeError: never started.
        """
        if self._port is None:
            raise RuntimeError(f"{type(self).__name__} has no port until start() is called")
        return self._port

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    async def _shutdown(self) -> None:
        assert self._server is not None
        self._server.close()
        await asyncio.sleep(0)  # a connection accepted just now registers its handler first
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._server.wait_closed()
        await asyncio.sleep(0)  # aborted transports close their sockets on the next turn

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._converse(reader, writer)
            writer.close()
        except (
            asyncio.CancelledError,
            ConnectionError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            ValueError,
        ):
            # Cancelled by stop(), or the client went away or spoke garbage: drop the socket.
            # CancelledError is swallowed because asyncio logs it as an error from a
            # client_connected_cb task, and the task ends here either way.
            writer.transport.abort()
        finally:
            self._tasks.discard(task)
