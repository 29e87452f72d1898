"""Cutting a PostgreSQL connection whose call the database has not answered in time.

A server that is stopped (SIGSTOP, a frozen virtual machine) or that waits on a lock held
elsewhere keeps its connections open: its kernel still answers TCP keepalives, and the
server's own statement timeout cannot fire while it is stopped.  A client then waits for an
answer that never comes.  :class:`Watchdog` bounds that wait: the shared budget
(:mod:`hybrid.ledger.pg_budget`) watches each of its transactions, and the shared ledger
(:func:`hybrid.ledger.pg.open_ledger`) each of its reads and writes, so that a frozen database
counts as unavailable (:class:`~hybrid.errors.LedgerUnavailableError`) after
:data:`ANSWER_TIMEOUT_S`, as one that is down does.

This module knows nothing of psycopg beyond a connection's file descriptor.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Protocol

from hybrid.errors import LedgerUnavailableError

ANSWER_TIMEOUT_S = 5.0
"""The longest a call watched by a :class:`Watchdog` (each budget transaction) waits for the
database's answer before its connection is cut and the database counts as unavailable."""

LEDGER_ANSWER_TIMEOUT_S = 35.0
"""The same for each read or write of a shared ledger: longer than the server's own statement
timeout (:data:`hybrid.ledger.pg.STATEMENT_TIMEOUT_S`, 30 s), so that a large read the server
allows (a ``calibrate --from-ledger``, a year of ``hybrid stats``) is never cut; only a server
that cannot answer at all (stopped, frozen) is."""


class Socketed(Protocol):
    """A connection with a socket (a psycopg connection)."""

    def fileno(self) -> int:
        """The connection's socket's file descriptor."""
        ...


class Watchdog:
    """Cuts the connection of a call that has waited ``limit_s`` for the database's answer.

    Around each call, :meth:`watching` arms the watchdog's thread; if the call still runs at
    its deadline, the thread shuts the connection's socket down (through a copy of its file
    descriptor, taken when the call began, so never another file's).  psycopg then raises an
    ``OperationalError`` at once and the connection is broken: the caller drops it, sees
    :attr:`cut`, and reports the database unavailable (:meth:`error`), as after a connection
    lost.

    One call is watched at a time (callers hold a lock around their connection, or use it from
    one thread).  The thread starts with the first call and stops at :meth:`close`.

    Args:
        limit_s: Seconds a call may wait for its answer.

    Raises:
        ValueError: ``limit_s`` is not a positive number of seconds.
    """

    def __init__(self, limit_s: float = ANSWER_TIMEOUT_S) -> None:
        if not 0 < limit_s < float("inf"):
            raise ValueError(f"a watchdog's limit is a positive number of seconds, not {limit_s}")
        self.limit_s = limit_s
        self._cond = threading.Condition()
        self._socket: socket.socket | None = None
        self._deadline = 0.0
        self._cut = False
        self._stopping = False
        self._thread: threading.Thread | None = None

    @property
    def cut(self) -> bool:
        """Whether the last call watched was cut (its connection is unusable)."""
        return self._cut

    @contextlib.contextmanager
    def watching(self, conn: Socketed) -> Iterator[None]:
        """Watch the ``with`` block's call on ``conn``: cut the connection if the block is
        still running ``limit_s`` from now.

        Raises:
            Exception: Whatever ``conn.fileno()`` raises (psycopg's error for a closed
                connection), before anything is watched.
        """
        watched = socket.socket(fileno=os.dup(conn.fileno()))
        with self._cond:
            if self._thread is None or not self._thread.is_alive():
                self._stopping = False
                self._thread = threading.Thread(
                    target=self._watch, name="hybrid-db-watchdog", daemon=True
                )
                self._thread.start()
            self._socket, self._cut = watched, False
            self._deadline = time.monotonic() + self.limit_s
            self._cond.notify_all()
        try:
            yield
        finally:
            with self._cond:
                self._socket = None
            watched.close()  # the copy only: the connection keeps its own descriptor

    def error(self, where: str, *, doing: str) -> LedgerUnavailableError:
        """The error of a call that was cut, for ``raise watchdog.error(...) from exc``.

        Args:
            where: The database as messages name it: its URL masked
                (:func:`hybrid.ledger.pg.mask_url`), never with its password.
            doing: What was being done (``reserve budget``, ``read``).
        """
        return LedgerUnavailableError(
            f"the ledger database {where} is unavailable ({doing}): it did not answer "
            f"within {self.limit_s:g} s; check that it runs and is not stopped or overloaded, "
            f"and that no other session holds a lock for long"
        )

    def close(self) -> None:
        """Stop the thread (a later call starts it again)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            thread, self._thread = self._thread, None
        if thread is not None:
            thread.join()

    def _watch(self) -> None:
        with self._cond:
            while not self._stopping:
                if self._socket is None or self._cut:
                    self._cond.wait()
                    continue
                left = self._deadline - time.monotonic()
                if left > 0:
                    self._cond.wait(left)
                    continue
                self._cut = True
                with contextlib.suppress(OSError):  # the peer may have closed it meanwhile
                    self._socket.shutdown(socket.SHUT_RDWR)
