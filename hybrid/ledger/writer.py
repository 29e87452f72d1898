"""Writing ledger records from the event loop without blocking it.

The server calls :meth:`LedgerWriter.write` before it sends a response's last bytes.  The call
appends the record to the journal (:mod:`hybrid.ledger.journal`: one JSON line, one ``write``
system call), which makes it survive a SIGKILL, and queues it for the writer thread; it waits
for neither the thread nor SQLite.  The thread commits whatever has queued up in one
transaction (group commit; ``synchronous=NORMAL`` in WAL mode, so a commit is a write to the
WAL, not an fsync) and empties the journal whenever everything in it is committed.  The same
transaction adds the batch to the hourly and daily rollups (:mod:`hybrid.ledger.rollup`), also
when records are replayed from the journal, so stats never read the records themselves.  At start,
records a killed server left in the journal are committed before anything else.

Signals and labels for learning (:mod:`hybrid.ledger.learning`) take the same path
(:meth:`LedgerWriter.learn_nowait`); each commit that adds signals prunes them to the newest
``keep_signals``.

The thread also deletes records older than the retention period, at start and hourly, and
their rollups with them (the hour the cut falls in is folded again from the records it keeps).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from hybrid.errors import HybridError, LedgerError
from hybrid.ledger.journal import Journal, journal_path, read_entries
from hybrid.ledger.learning import Label, Learned, Signal
from hybrid.ledger.record import LedgerRecord
from hybrid.ledger.store import LedgerStore
from hybrid.ledger.totals import Totals

T = TypeVar("T")

_SECONDS_PER_DAY = 86_400.0
_PRUNE_EVERY_S = 3_600.0


_STOP = object()


@dataclass(frozen=True)
class _Barrier:
    """Settled by the writer thread once everything queued before it is committed."""

    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[None]


class LedgerWriter:
    """Owns a ledger file: one writer thread, plus a read connection for the server."""

    def __init__(
        self,
        path: Path,
        retention_days: int,
        clock: Callable[[], float] = time.time,
        *,
        open_store: Callable[[Path], LedgerStore] = LedgerStore.open,
        commit_interval_s: float = 0.25,
        keep_signals: int | None = None,
    ) -> None:
        """Prepare a writer; nothing is opened until :meth:`start`.

        Args:
            path: The ledger file.
            retention_days: Records older than this are deleted; 0 keeps them forever.
            clock: Unix time, for retention.
            open_store: Opens the file (tests pass a wrapper).
            commit_interval_s: How long records may gather before a commit (they are
                already safe in the journal meanwhile).
            keep_signals: Keep only this many most recent learning signals
                (``routing.learn.keep_signals``); None keeps them all.
        """
        self._keep_signals = keep_signals
        self.path = path
        self._retention_s = retention_days * _SECONDS_PER_DAY
        self._clock = clock
        self._open_store = open_store
        self._commit_interval_s = commit_interval_s
        self._wake = threading.Event()
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        # Held while checking "running" and queueing, so nothing lands behind the stop marker.
        self._lock = threading.Lock()
        self._running = False
        self._thread: threading.Thread | None = None
        self._store: LedgerStore | None = None
        self._reader: LedgerStore | None = None
        self._read_lock = threading.Lock()
        self._last_prune: float | None = None
        self._transactions = 0
        self._journal: Journal | None = None
        # A commit failed: its records are only in the journal now, which must not be emptied
        # before the next start commits them.
        self._keep_journal = False

    @property
    def transactions(self) -> int:
        """How many transactions have committed records (fewer than records, under load)."""
        return self._transactions

    def start(self) -> None:
        """Open (create, migrate) the ledger, commit what a killed server left in its journal,
        and start the writer thread.

        Blocks briefly: call it at start-up, before requests arrive.

        Raises:
            LedgerError: The ledger or its journal cannot be opened (see
                :meth:`LedgerStore.open`).
        """
        if self._running:
            return
        self._store = self._open_store(self.path)
        try:
            self._reader = self._open_store(self.path)
            self._recover()
            self._journal = Journal(journal_path(self.path))
        except BaseException:
            for store in (self._store, self._reader):
                if store is not None:
                    store.close()
            self._store = self._reader = None
            raise
        self._thread = threading.Thread(target=self._run, name="hybrid-ledger", daemon=True)
        self._running = True
        self._thread.start()

    async def write(self, record: LedgerRecord, data: Mapping[str, Any] | None = None) -> None:
        """Make a record durable and queue it for SQLite; see :meth:`write_nowait`.

        Raises:
            LedgerError: The writer is not running, or the journal could not be written.
        """
        self.write_nowait(record, data)

    def write_nowait(self, record: LedgerRecord, data: Mapping[str, Any] | None = None) -> None:
        """Append a record to the journal (it survives a crash of this process from the moment
        this returns) and queue it for the writer thread.  Never waits on SQLite.

        Args:
            record: The record.
            data: ``record.to_dict()``, when the caller has it already (it is journaled).

        Raises:
            LedgerError: The writer is not running, or the journal could not be written.
        """
        with self._lock:
            if not self._running or self._journal is None:
                raise LedgerError(
                    f"the ledger writer for {self.path} is not running; start() it first"
                )
            self._journal.append(record, data)
            self._queue.put(record)

    def learn_nowait(self, entry: Learned) -> None:
        """Journal a signal or a label and queue it for SQLite, as :meth:`write_nowait` does a
        record.  A newer entry for the same request (and, for a label, the same source)
        replaces an older one.

        Raises:
            LedgerError: The writer is not running, or the journal could not be written.
        """
        with self._lock:
            if not self._running or self._journal is None:
                raise LedgerError(
                    f"the ledger writer for {self.path} is not running; start() it first"
                )
            self._journal.append_learned(entry)
            self._queue.put(entry)

    def close(self) -> None:
        """Commit everything queued, stop the thread and close the ledger.  Idempotent."""
        with self._lock:
            if not self._running:
                return
            self._running = False
            self._queue.put(_STOP)
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
        if self._journal is not None:
            self._journal.close()
            self._journal = None
        for store in (self._store, self._reader):
            if store is not None:
                store.close()
        self._store = self._reader = None

    async def read(self, query: Callable[[LedgerStore], T]) -> T:
        """Run a query on the read connection, in a worker thread.

        Args:
            query: Called with the store, e.g. ``lambda store: store.recent(50)``.

        Reads see every record written before the call: they wait for those to be committed
        first (a reader of stats right after a response sees that response).

        Raises:
            LedgerError: The writer is not running, or the query failed.
        """
        await self._committed()
        return await asyncio.to_thread(self._read, query)

    async def _committed(self) -> None:
        """Wait until every record queued so far is committed (or its commit failed)."""
        loop = asyncio.get_running_loop()
        barrier = _Barrier(loop, loop.create_future())
        with self._lock:
            if not self._running:
                return
            self._queue.put(barrier)
        self._wake.set()
        await barrier.future

    async def totals(self, since: float | None = None, until: float | None = None) -> Totals:
        """Return the totals of a time window (see :meth:`LedgerStore.totals`)."""
        return await self.read(lambda store: store.totals(since, until))

    async def recent(self, limit: int) -> list[LedgerRecord]:
        """Return the last ``limit`` records, newest first."""
        return await self.read(lambda store: store.recent(limit))

    def _read(self, query: Callable[[LedgerStore], T]) -> T:
        with self._read_lock:
            if self._reader is None:
                raise LedgerError(f"the ledger {self.path} is not open")
            return query(self._reader)

    def _recover(self) -> None:
        """Commit the records a previous server journaled but never committed."""
        assert self._store is not None
        path = journal_path(self.path)
        pending = read_entries(path)
        if pending:
            records = [entry for entry in pending if isinstance(entry, LedgerRecord)]
            missing = self._store.missing(records)
            # Signals and labels replace their older selves: replayed in order, they end as
            # they were last written.
            learned = [entry for entry in pending if isinstance(entry, Signal | Label)]
            self._store.append(missing, learned, keep_signals=self._keep_signals)
            logging.getLogger(__name__).info(
                "recovered %d ledger record(s) and %d signal(s) or label(s) from %s",
                len(missing),
                len(learned),
                path,
            )
        path.unlink(missing_ok=True)

    def _run(self) -> None:
        self._prune_if_due()
        while True:
            batch = self._next_batch()
            records = [item for item in batch if isinstance(item, LedgerRecord)]
            learned = [item for item in batch if isinstance(item, Signal | Label)]
            if records or learned:
                self._commit(records, learned)
            for item in batch:
                if isinstance(item, _Barrier):
                    _release(item)
            if any(item is _STOP for item in batch):
                return
            self._prune_if_due()

    def _next_batch(self) -> list[object]:
        """Everything queued, once the commit interval has passed or someone is waiting.

        Records are already durable in the journal, so SQLite can take them in batches: one
        transaction per interval instead of one per request.  Queueing a record does not wake
        this thread (that would cost the event loop a thread switch per request); a reader's
        barrier or close does.
        """
        while True:
            self._wake.wait(self._commit_interval_s)
            self._wake.clear()
            batch: list[object] = []
            while True:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if batch:
                return batch

    def _commit(self, records: list[LedgerRecord], learned: list[Learned]) -> None:
        assert self._store is not None
        try:
            self._store.append(records, learned, keep_signals=self._keep_signals)
            self._transactions += 1
        except HybridError as exc:
            self._keep_journal = True
            logging.getLogger(__name__).error("%s (kept in the journal for the next start)", exc)
        except Exception:
            # Anything else would kill the thread; the records wait in the journal.
            self._keep_journal = True
            logging.getLogger(__name__).exception("ledger writer")
        with self._lock:
            # Nothing queued means nothing journaled is uncommitted: the journal can go.
            if not self._keep_journal and self._queue.empty() and self._journal is not None:
                self._journal.clear()

    def _prune_if_due(self) -> None:
        if self._retention_s <= 0 or self._store is None:
            return
        now = self._clock()
        if self._last_prune is not None and now - self._last_prune < _PRUNE_EVERY_S:
            return
        self._last_prune = now
        try:
            self._store.prune(now - self._retention_s)
        except HybridError as exc:
            logging.getLogger(__name__).warning("%s", exc)


def _release(barrier: _Barrier) -> None:
    def settle() -> None:
        if not barrier.future.done():
            barrier.future.set_result(None)

    try:
        barrier.loop.call_soon_threadsafe(settle)
    except RuntimeError:
        pass  # the loop closed: nobody is waiting
