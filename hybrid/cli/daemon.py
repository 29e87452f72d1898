"""How ``hybrid serve`` stops: uvicorn's server with hybrid's answer to SIGINT and SIGTERM.

- The first SIGINT (Ctrl-C) or SIGTERM starts uvicorn's graceful shutdown: no new connections,
  in-flight requests get ``server.shutdown_timeout_s`` to finish, then the lifespan closes the
  model and the ledger.  The process then exits 0 for either signal: an orderly stop is a
  success, for a service manager and for a shell alike.
- A second SIGINT during that shutdown exits at once with 130, without a word: in-flight
  requests are cut off and nothing more is waited for (not even a generation running on the
  model's thread).  Every answer already sent is in the ledger's journal, which the next start
  commits.  A second SIGTERM changes nothing; the shutdown already under way goes on.

Imported only when ``hybrid serve`` runs: ``hybrid --help`` must not load uvicorn.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any

import uvicorn
from uvicorn.protocols.http.auto import AutoHTTPProtocol

if TYPE_CHECKING:
    from fastapi import FastAPI

    from hybrid.settings.server import ServerSettings

EXIT_FORCED = 130
"""Exit code after a second Ctrl-C: interrupted, the shell's 128 + SIGINT."""


def server_config(
    app: FastAPI,
    server: ServerSettings,
    *,
    host: str | None = None,
    port: int | None = None,
    log_level: str = "info",
    access_log: bool = False,
) -> uvicorn.Config:
    """Uvicorn's configuration for hybrid's app, built the same way for ``hybrid serve`` and tests.

    Args:
        app: The application.
        server: The ``server`` settings (address, timeouts).
        host: Address to report, when it differs from ``server.host`` (a test's port).
        port: Port to report, when it differs from ``server.port``.
        log_level: Uvicorn's log level.
        access_log: Whether uvicorn logs every request.
    """
    return uvicorn.Config(
        app,
        host=host or server.host,
        port=port or server.port,
        log_level=log_level,
        lifespan="on",
        http=header_timeout_protocol(server.header_timeout_s),
        timeout_graceful_shutdown=server.shutdown_timeout_s,
        access_log=access_log,
    )


def header_timeout_protocol(timeout_s: float) -> type[asyncio.Protocol]:
    """Uvicorn's HTTP/1.1 protocol, closing connections whose request headers take too long.

    Uvicorn times out an idle keep-alive connection but not one that opened and sent nothing, or
    part of a request line or headers: such a client would hold a connection (and a file
    descriptor) for ever.  The subclass arms a timer when a connection opens and again after
    each response, and disarms it once a request's headers are complete (uvicorn has then
    started the request's cycle; the body has ``server.body_timeout_s`` of its own).

    Args:
        timeout_s: Seconds a client has to send a whole request line and headers.
    """
    base: Any = AutoHTTPProtocol  # httptools' parser when installed, else h11

    class HeaderTimeoutProtocol(base):  # type: ignore[misc]
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)
            self._arm_header_timer()

        def data_received(self, data: bytes) -> None:
            cycle = self.cycle
            super().data_received(data)
            if self.cycle is not cycle and self.cycle is not None:
                self._disarm_header_timer()  # a new request's headers are in

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm_header_timer()  # the next request on this connection

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm_header_timer()
            super().connection_lost(exc)

        def _arm_header_timer(self) -> None:
            self._disarm_header_timer()
            self._header_timer = self.loop.call_later(timeout_s, self._headers_timed_out)

        def _disarm_header_timer(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_timed_out(self) -> None:
            self._header_timer = None
            if self.cycle is None or self.cycle.response_complete:
                self.transport.close()

    return HeaderTimeoutProtocol


class DaemonServer(uvicorn.Server):
    """A :class:`uvicorn.Server` that ends with a return, never by re-raising the signal.

    Uvicorn records the signals that stopped it and raises them again once it has shut down,
    which turns a clean Ctrl-C into a ``KeyboardInterrupt`` and a clean SIGTERM into death by
    signal.  This server records nothing, so :meth:`run` simply returns.

    Args:
        config: Uvicorn's configuration.
        on_shutdown: Called on the event loop when the graceful shutdown starts, before
            in-flight requests are waited for (it ends the open event streams).
    """

    def __init__(
        self, config: uvicorn.Config, *, on_shutdown: Callable[[], None] | None = None
    ) -> None:
        super().__init__(config)
        self._on_shutdown = on_shutdown

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Tell the app that the shutdown starts, then shut down as uvicorn does."""
        if self._on_shutdown is not None:
            self._on_shutdown()
        await super().shutdown(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """Start the graceful shutdown; on a second SIGINT, exit the process at once.

        Args:
            sig: The signal received.
            frame: The interrupted frame (unused).
        """
        if self.should_exit and sig == signal.SIGINT:
            _exit_now(EXIT_FORCED)
        self.should_exit = True


def _exit_now(code: int) -> None:
    # os._exit skips the interpreter's shutdown, which would join the model's worker thread
    # (a generation may have hundreds of tokens to go) and print every cancelled task.
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass  # a closed or broken stream: nothing more can be said there anyway
    os._exit(code)
