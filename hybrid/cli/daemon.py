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

import os
import signal
import socket
import sys
from collections.abc import Callable
from types import FrameType

import uvicorn

EXIT_FORCED = 130
"""Exit code after a second Ctrl-C: interrupted, the shell's 128 + SIGINT."""


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
