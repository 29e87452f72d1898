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

A shared ledger (``ledger.url``, PostgreSQL) keeps the same local journal.  When the database
is unavailable, at start or mid-run (:class:`~hybrid.errors.LedgerUnavailableError`), the
writer keeps going: records stay in the journal, the thread tries to reconnect with a growing
pause (:data:`RETRY_S`), and once the database is back it commits everything the journal holds,
skipping what the database already has (a record is stored once, however often it is synced),
and empties the journal.  Reads meanwhile raise LedgerUnavailableError, saying how many records
wait in the journal.  A database that is connected but does not answer (a server stopped or
frozen) counts as unavailable once a call has waited ``answer_timeout_s`` (35 s by default: see
:mod:`hybrid.ledger.pg_watchdog`), for the writer thread and for reads alike.  A refused login
or a newer schema at start (:class:`~hybrid.errors.LedgerAccessError`,
:class:`~hybrid.errors.LedgerSchemaError`) is raised by :meth:`LedgerWriter.start`: those need
a person.

An outage is not a refusal: entries the database refuses for their data are written one at a
time and those refused alone set aside in ``<ledger>.rejected`` (:mod:`hybrid.ledger.refusals`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from hybrid.errors import HybridError, LedgerError, LedgerUnavailableError
from hybrid.ledger.journal import Journal, JournalSpend, journal_path, read_entries, read_journal
from hybrid.ledger.learning import Label, Learned, Signal
from hybrid.ledger.pg_watchdog import LEDGER_ANSWER_TIMEOUT_S
from hybrid.ledger.record import LedgerRecord
from hybrid.ledger.refusals import append_or_set_aside
from hybrid.ledger.store import LedgerStore
from hybrid.ledger.totals import Totals

T = TypeVar("T")

_SECONDS_PER_DAY = 86_400.0
_PRUNE_EVERY_S = 3_600.0
RETRY_S: tuple[float, ...] = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
"""Pauses between attempts to reach an unavailable ledger database (the last repeats)."""
_SYNC_BATCH = 5_000
log = logging.getLogger(__name__)


_STOP = object()


@dataclass(frozen=True)
class _Barrier:
    """Settled by the writer thread once everything queued before it is committed."""

    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[None]


class LedgerWriter:
    """Owns a ledger (the file, or a shared PostgreSQL database with a local journal): one
    writer thread, plus a read connection for the server."""

    def __init__(
        self,
        path: Path,
        retention_days: int,
        clock: Callable[[], float] = time.time,
        *,
        open_store: Callable[[Path], LedgerStore] | None = None,
        commit_interval_s: float = 0.25,
        keep_signals: int | None = None,
        url: str | None = None,
        instance: str = "",
        retry_s: tuple[float, ...] = RETRY_S,
        answer_timeout_s: float = LEDGER_ANSWER_TIMEOUT_S,
    ) -> None:
        """Prepare a writer; nothing is opened until :meth:`start`.

        Args:
            path: The ledger file; with ``url``, where its journal is kept
                (``<path>.pending``).
            retention_days: Records older than this are deleted; 0 keeps them forever.
            clock: Unix time, for retention.
            open_store: Opens the ledger (tests pass a wrapper); unset: the file, or the
                database at ``url``.
            commit_interval_s: How long records may gather before a commit (they are
                already safe in the journal meanwhile).
            keep_signals: Keep only this many most recent learning signals
                (``routing.learn.keep_signals``); None keeps them all.
            url: ``ledger.url``: keep the ledger in this PostgreSQL database instead (unless
                ``open_store`` is given too).
            instance: ``ledger.instance``, stamped on every record that names none.
            retry_s: Pauses between attempts to reach an unavailable database.
            answer_timeout_s: With ``url``: seconds a read or a write waits for the database's
                answer before it counts as unavailable.
        """
        self._keep_signals = keep_signals
        self.path = path
        self.instance = instance
        self._shared = url is not None
        if open_store is None:
            open_store = (
                LedgerStore.open
                if url is None
                else functools.partial(_open_url, url, answer_timeout_s=answer_timeout_s)
            )
        self._retry_s = retry_s or RETRY_S
        self._failures = 0
        self._retry_at = 0.0
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
    def connected(self) -> bool:
        """Whether the writer holds a connection to the ledger (False while a shared ledger's
        database is unavailable)."""
        return self._store is not None

    @property
    def transactions(self) -> int:
        """How many transactions have committed records (fewer than records, under load)."""
        return self._transactions

    def start(self) -> None:
        """Open (create, migrate) the ledger, commit what a killed server left in its journal,
        and start the writer thread.

        Blocks briefly: call it at start-up, before requests arrive.

        With a shared ledger whose database is unavailable, starts anyway (see the module's
        docstring).

        Raises:
            LedgerError: The ledger or its journal cannot be opened (see
                :meth:`LedgerStore.open`); for a shared ledger, LedgerAccessError (a refused
                login) or LedgerSchemaError (a newer hybrid migrated it).
            ConfigError: ``url`` is not a PostgreSQL URL.
        """
        if self._running:
            return
        try:
            try:
                self._store = self._open_store(self.path)
                self._reader = self._open_store(self.path)
                self._recover()
            except LedgerUnavailableError as exc:
                if not self._shared:
                    raise
                # Serve anyway: records wait in the journal until the database returns.
                log.warning("%s; keeping records in %s until it returns", exc, self._journal_path)
                self._close_stores()
                self._offline()
            self._journal = Journal(self._journal_path)
        except BaseException:
            self._close_stores()
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
        if self.instance and not record.instance:
            record = dataclasses.replace(record, instance=self.instance)
            data = None if data is None else {**data, "instance": self.instance}
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
        self._close_stores()

    def _close_stores(self) -> None:
        """Close both connections; the reader once no read runs on it (closing a connection
        while another thread queries it crashes the SQLite library)."""
        if self._store is not None:
            self._store.close()
            self._store = None
        with self._read_lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None

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
            if self._reader is None and self._shared and self._running:
                try:
                    self._reader = self._open_store(self.path)
                except LedgerUnavailableError as exc:
                    raise self._unavailable(exc) from exc
            if self._reader is None:
                raise LedgerError(f"the ledger {self.path} is not open")
            try:
                return query(self._reader)
            except LedgerUnavailableError as exc:
                self._reader.close()
                self._reader = None  # reconnect on the next read
                raise self._unavailable(exc) from exc

    def _unavailable(self, exc: LedgerUnavailableError) -> LedgerUnavailableError:
        waiting = len(read_journal(self._journal_path))
        return LedgerUnavailableError(
            f"{exc} ({waiting} record(s) wait in the journal {self._journal_path}; they are "
            f"committed when the database returns)"
        )

    @property
    def _journal_path(self) -> Path:
        return journal_path(self.path)

    @property
    def journaled(self) -> JournalSpend:
        """The spend of the records in the journal (not yet committed)."""
        return JournalSpend(self._journal_path)

    def _recover(self) -> None:
        """Commit the records the journal holds (a previous server's, or those kept while the
        database was unavailable), skipping those the ledger has; then empty the journal."""
        assert self._store is not None
        path = self._journal_path
        pending = read_entries(path)
        records = [entry for entry in pending if isinstance(entry, LedgerRecord)]
        # Signals and labels replace their older selves: replayed in order, they end as
        # they were last written.
        learned = [entry for entry in pending if isinstance(entry, Signal | Label)]
        stored = 0
        for start in range(0, max(len(records), len(learned)), _SYNC_BATCH):
            stored += self._append(
                records[start : start + _SYNC_BATCH],
                learned[start : start + _SYNC_BATCH],
                only_new=True,
            )
        if pending:
            log.info(
                "recovered %d ledger record(s) and %d signal(s) or label(s) from %s",
                stored,
                len(learned),
                path,
            )
        if self._journal is None:
            path.unlink(missing_ok=True)

    def _run(self) -> None:
        self._prune_if_due()
        while True:
            batch = self._next_batch()
            records = [item for item in batch if isinstance(item, LedgerRecord)]
            learned = [item for item in batch if isinstance(item, Signal | Label)]
            if self._store is None:
                if time.monotonic() >= self._retry_at:
                    self._reconnect()  # on success, the journal (this batch too) is committed
            elif records or learned:
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
            wait = self._commit_interval_s
            if self._store is None:  # the database is away: wake to try it again
                wait = max(0.01, min(wait, self._retry_at - time.monotonic()))
            self._wake.wait(wait)
            self._wake.clear()
            if self._store is None and time.monotonic() >= self._retry_at:
                return self._drain()
            batch = self._drain()
            if batch:
                return batch

    def _drain(self) -> list[object]:
        batch: list[object] = []
        while True:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                return batch

    def _commit(self, records: list[LedgerRecord], learned: list[Learned]) -> None:
        assert self._store is not None
        try:
            self._append(records, learned, only_new=self._shared)
            self._transactions += 1
        except HybridError as exc:
            if self._shared:
                # Whatever failed, the batch is in the journal: commit it from there later.
                log.warning("%s; keeping records in %s until it returns", exc, self._journal_path)
                self._offline()
                return
            self._keep_journal = True
            log.error("%s (kept in the journal for the next start)", exc)
        except Exception:
            # Anything else would kill the thread; the records wait in the journal.
            self._keep_journal = True
            log.exception("ledger writer")
        with self._lock:
            # Nothing queued means nothing journaled is uncommitted: the journal can go.
            if not self._keep_journal and self._queue.empty() and self._journal is not None:
                self._journal.clear()

    def _append(
        self, records: list[LedgerRecord], learned: list[Learned], *, only_new: bool
    ) -> int:
        """Store a batch, setting aside what the database refuses for its data (see
        :func:`~hybrid.ledger.refusals.append_or_set_aside`); returns the records stored."""
        assert self._store is not None
        return append_or_set_aside(
            self._store,
            records,
            learned,
            ledger=self.path,
            keep_signals=self._keep_signals,
            only_new=only_new,
        )

    def _offline(self) -> None:
        """Drop the connection to an unavailable database; try again after a pause."""
        if self._store is not None:
            self._store.close()
            self._store = None
        pause = self._retry_s[min(self._failures, len(self._retry_s) - 1)]
        self._retry_at = time.monotonic() + pause
        self._failures += 1

    def _reconnect(self) -> None:
        """Reach the database again and commit everything the journal holds (records queued
        meanwhile are in it too); stay offline, with a longer pause, when that fails."""
        try:
            self._store = self._open_store(self.path)
            self._recover()
        except HybridError as exc:
            if self._failures <= 1 or self._failures % 10 == 0:
                log.warning("%s; still keeping records in %s", exc, self._journal_path)
            self._offline()
            return
        log.info("the ledger database is back; the journal is committed")
        self._failures = 0
        self._transactions += 1
        with self._lock:
            if self._queue.empty() and self._journal is not None:
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
            log.warning("%s", exc)


def _release(barrier: _Barrier) -> None:
    def settle() -> None:
        if not barrier.future.done():
            barrier.future.set_result(None)

    try:
        barrier.loop.call_soon_threadsafe(settle)
    except RuntimeError:
        pass  # the loop closed: nobody is waiting


def _open_url(url: str, path: Path, *, answer_timeout_s: float) -> LedgerStore:
    return LedgerStore.open_url(url, answer_timeout_s=answer_timeout_s)
