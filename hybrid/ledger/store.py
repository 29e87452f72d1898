"""The ledger: appending records (and learning's signals and labels) and the queries
``hybrid stats``, the server and ``hybrid calibrate --from-ledger`` ask.

The same queries run on a SQLite file (the default) and on a shared PostgreSQL database
(``ledger.url``), through :class:`~hybrid.ledger.dialect.Database`.  Synchronous, one
connection, used by one thread at a time: the writer thread of
:class:`~hybrid.ledger.writer.LedgerWriter`, a read connection of the server, or
``hybrid stats``.  Totals follow the definitions of :mod:`hybrid.ledger.totals`, read from the
hourly rollups (:mod:`hybrid.ledger.rollup`) that :meth:`LedgerStore.append` maintains in the
transaction that inserts the records.

On PostgreSQL, every read and every write transaction is one watched call
(:meth:`~hybrid.ledger.dialect.Database.watched`): a database that does not answer it within
the answer timeout (stopped, frozen) has the connection cut, and the call raises
:class:`~hybrid.errors.LedgerUnavailableError`; the store is then closed and opened again.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from hybrid.ledger import learning_tables, rollup, rollup_query, schema
from hybrid.ledger.dialect import Database
from hybrid.ledger.learning import Label, LabelCount, LabelledSignal, Learned, Signal
from hybrid.ledger.pg_watchdog import LEDGER_ANSWER_TIMEOUT_S
from hybrid.ledger.record import NOT_REQUESTS, LedgerRecord
from hybrid.ledger.totals import GroupBy, Latency, Totals

T = TypeVar("T")

COLUMNS: tuple[str, ...] = (
    "id",
    "time",
    "api",
    "route",
    "reasons",
    "verdicts",
    "score",
    "model_requested",
    "model",
    "provider",
    "prompt_tokens",
    "completion_tokens",
    "tokens_estimated",
    "ttft_s",
    "latency_s",
    "status",
    "error",
    "cloud_cost_usd",
    "counterfactual_model",
    "counterfactual_cost_usd",
    "energy_cost_usd",
    "cost_avoided_usd",
    "price_known",
    "leg",
    "cache_read_tokens",
    "cache_write_tokens",
    "decided",
    "instance",
)

_INSERT = f"INSERT INTO requests ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
_SELECT = f"SELECT {', '.join(COLUMNS)} FROM requests"

# A discarded cascade leg or a shadow leg is not a request (see hybrid.ledger.totals).
_IS_REQUEST = f"(leg IS NULL OR leg NOT IN ({', '.join(repr(leg) for leg in NOT_REQUESTS)}))"


class LedgerStore:
    """A ledger, open.

    Every query raises :class:`~hybrid.errors.LedgerError` (naming the file, or the database
    with its password masked) when the database fails; on PostgreSQL, its subclasses
    :class:`~hybrid.errors.LedgerUnavailableError` (down, connection lost, no answer within
    the answer timeout: try again later) and :class:`~hybrid.errors.LedgerAccessError`
    (refused: fix ``ledger.url``); on both, :class:`~hybrid.errors.LedgerRefusedError` when
    the database refuses the data written.
    """

    def __init__(self, conn: Database, path: Path | None = None) -> None:
        """Wrap an open, migrated database; use :meth:`open` or :meth:`open_url`.

        Args:
            conn: The database.
            path: The SQLite file, None for PostgreSQL.
        """
        self._conn = conn
        self.path = path

    @property
    def name(self) -> str:
        """The file, or the database's URL with its password masked."""
        return self._conn.name

    @property
    def shared(self) -> bool:
        """Whether this is a PostgreSQL ledger (several daemons may write it)."""
        return self._conn.dialect.name == "postgresql"

    @classmethod
    def open(cls, path: Path) -> LedgerStore:
        """Open a ledger, creating the file and its folder, in WAL mode, migrated.

        Raises:
            LedgerError: The file cannot be opened or created, is not a ledger, or is newer
                than this hybrid.
        """
        return cls(Database.sqlite(schema.connect(path), str(path)), path)

    @classmethod
    def open_source(cls, source: Path | str) -> LedgerStore:
        """Open the ledger file (a path), or connect to a shared ledger's database (a URL:
        ``ledger.url``), as :meth:`open` and :meth:`open_url` do."""
        return cls.open(source) if isinstance(source, Path) else cls.open_url(source)

    @classmethod
    def open_url(
        cls, url: str, *, timeout_s: float = 5.0, answer_timeout_s: float = LEDGER_ANSWER_TIMEOUT_S
    ) -> LedgerStore:
        """Connect to a PostgreSQL ledger (``ledger.url``), creating or migrating its tables.

        Args:
            url: The database's URL.
            timeout_s: Seconds to wait for the server.
            answer_timeout_s: Seconds each call waits for the database's answer.

        Raises:
            ConfigError: ``url`` is not a PostgreSQL URL libpq understands.
            LedgerUnavailableError: The server cannot be reached now, or did not answer.
            LedgerAccessError: It refuses the user, the password or the database.
            LedgerSchemaError: A newer hybrid migrated it.
        """
        from hybrid.ledger import pg

        return cls(pg.open_ledger(url, timeout_s=timeout_s, answer_timeout_s=answer_timeout_s))

    def append(
        self,
        records: Sequence[LedgerRecord],
        learned: Sequence[Learned] = (),
        *,
        keep_signals: int | None = None,
        only_new: bool = False,
    ) -> int:
        """Write records, signals and labels in one transaction: all of them are stored, or none.

        Args:
            records: Request records.
            learned: Signals and labels (:mod:`hybrid.ledger.learning`), in written order.
            keep_signals: Keep only this many most recent signals; None keeps them all.
            only_new: Skip the records the ledger holds already (same id and leg), looked up
                in the same transaction: for records that may have been stored before (a
                journal replayed, a commit whose answer was lost with the connection).

        Returns:
            How many records were stored.

        Raises:
            LedgerError: The database failed (disk full, file locked too long, connection
                lost); nothing was stored.
        """
        if not records and not learned:
            return 0
        try:
            with self._conn.watched(), self._conn.transaction():
                if only_new:
                    records = self._missing(records)
                self._conn.executemany(_INSERT, [_row(record) for record in records])
                rollup.upsert(self._conn, rollup.with_days(rollup.fold(records)))
                learning_tables.insert(self._conn, learned, keep_signals)
        except self._conn.errors as exc:
            raise self._conn.failure(
                exc,
                f"record {len(records)} request(s) and {len(learned)} signal(s) or label(s)",
            ) from exc
        return len(records)

    def totals(self, since: float | None = None, until: float | None = None) -> Totals:
        """Return the totals of records with ``since <= time < until`` (None: unbounded).

        Read from the hourly rollups, plus the records of the window's partial hours.
        """
        return rollup_query.totals(r for _, r in self.cells("", since, until, histograms=False))

    def latency(self, since: float | None = None, until: float | None = None) -> Latency:
        """Return the latency percentiles of requests answered ``ok`` in the window, read from
        the rollups' histograms (see :mod:`hybrid.ledger.histogram`)."""
        return rollup_query.latency(r for _, r in self.cells("", since, until))

    def grouped(
        self, by: GroupBy, since: float | None = None, until: float | None = None
    ) -> list[tuple[str, Totals, Latency]]:
        """Return ``(key, totals, latency)`` per group of records in the window.

        Args:
            by: See :func:`hybrid.ledger.totals.group_key`.
            since: Start of the window (inclusive), None for the beginning.
            until: End of the window (exclusive), None for now.

        Returns:
            Groups ordered as :func:`hybrid.ledger.totals.order_groups` does.
        """
        return rollup_query.summary(self.cells(by, since, until), by)

    def cells(
        self,
        by: GroupBy | str,
        since: float | None = None,
        until: float | None = None,
        *,
        histograms: bool = True,
    ) -> list[rollup.Cell]:
        """Return the rollups of a window with their groups (see
        :func:`hybrid.ledger.rollup_query.cells`); the cost grows with the hours in the window, not
        with the records in it.

        Args:
            by: A :data:`~hybrid.ledger.totals.GroupBy`, ``provider``, or ``''`` for no groups.
            since: Start of the window (inclusive), None for the beginning.
            until: End of the window (exclusive), None for no end.
            histograms: Read the latency histograms too (False: totals only, cheaper).
        """
        return self._query(
            lambda: rollup_query.cells(self._conn, by, since, until, histograms=histograms)
        )

    def missing(self, records: Sequence[LedgerRecord]) -> list[LedgerRecord]:
        """Of ``records``, those the ledger does not hold yet (same id and leg).

        Raises:
            LedgerError: The database failed.
        """
        return self._query(lambda: self._missing(records))

    def _missing(self, records: Sequence[LedgerRecord]) -> list[LedgerRecord]:
        held: set[tuple[str, str | None]] = set()
        ids = sorted({record.id for record in records})
        for start in range(0, len(ids), 500):  # SQLite caps the parameters of one statement
            chunk = ids[start : start + 500]
            marks = ", ".join("?" * len(chunk))
            rows = self._conn.execute(f"SELECT id, leg FROM requests WHERE id IN ({marks})", chunk)
            held.update((str(row[0]), row[1]) for row in rows)
        return [record for record in records if (record.id, record.leg) not in held]

    def newest_by_instance(self) -> dict[str, float]:
        """The time of each instance's newest record (``''``: records older than instances).

        Reads each instance's newest day row, that day's newest hour row, then the instance's
        records of that hour: the cost grows with the days kept, not with the records.
        """
        newest: dict[str, float] = {}
        day_s = 24 * rollup.HOUR_S
        days = self._rows(
            "SELECT instance, MAX(start) FROM rollups WHERE span = ? GROUP BY instance", [day_s]
        )
        for instance, day in days:
            ((hour,),) = self._rows(
                "SELECT MAX(start) FROM rollups WHERE span = ? AND start >= ? AND start < ? "
                "AND instance = ?",
                [rollup.HOUR_S, day, day + day_s, instance],
            )
            ((last,),) = self._rows(
                "SELECT MAX(time) FROM requests WHERE time >= ? AND time < ? AND instance = ?",
                [hour, hour + rollup.HOUR_S, instance],
            )
            if last is not None:
                newest[instance] = float(last)
        return newest

    def recent(self, limit: int) -> list[LedgerRecord]:
        """Return the last ``limit`` records written, newest first."""
        rows = self._rows(f"{_SELECT} ORDER BY time DESC, seq DESC LIMIT ?", [limit])
        return [_record(row) for row in rows]

    def records(self, since: float | None = None, until: float | None = None) -> list[LedgerRecord]:
        """Return every record in the window, oldest first."""
        where, params = _window(since, until)
        rows = self._rows(f"{_SELECT} {where} ORDER BY time, seq", params)
        return [_record(row) for row in rows]

    def spend(self, since: float, provider: str | None = None) -> float:
        """Return the cloud spend since a time, over every provider or one.

        Args:
            since: Unix time (inclusive).
            provider: A provider name, or None for all of them.
        """
        return sum(
            cell.cloud_cost_usd
            for name, cell in self.cells("provider", since, histograms=False)
            if provider is None or name == provider
        )

    def spend_by_provider(self, since: float) -> dict[str, float]:
        """Return the cloud spend since a time of each provider that spent anything."""
        spend: dict[str, float] = {}
        for name, cell in self.cells("provider", since, histograms=False):
            if name != "local":
                spend[name] = spend.get(name, 0.0) + cell.cloud_cost_usd
        return {name: usd for name, usd in spend.items() if usd}

    def prune(self, older_than: float) -> int:
        """Delete records from before a time, with their rollups (the hour the time falls in
        is folded again from the records it keeps), in one transaction.

        Returns:
            How many were deleted.
        """
        try:
            with self._conn.watched(), self._conn.transaction():
                cursor = self._conn.execute("DELETE FROM requests WHERE time < ?", (older_than,))
                deleted = cursor.rowcount
                rollup.prune(self._conn, older_than)
                learning_tables.prune(self._conn, older_than)
        except self._conn.errors as exc:
            raise self._conn.failure(exc, "prune old records") from exc
        return deleted

    def answer(self, request_id: str) -> LedgerRecord | None:
        """The record of a request's answer (not a discarded or shadow leg), or None.

        A request with no answer leg (only possible for a malformed ledger) falls back to its
        newest record, so that a request the ledger knows is never reported unknown.
        """
        rows = self._rows(
            f"{_SELECT} WHERE id = ? ORDER BY {_IS_REQUEST} DESC, seq DESC LIMIT 1", [request_id]
        )
        return _record(rows[0]) if rows else None

    def signal_kept(self, request_id: str) -> bool:
        """Whether the ledger keeps a request's signal: without one, no refit can learn from
        the request's labels (see :func:`hybrid.ledger.learning_tables.labelled`)."""
        return self._query(lambda: learning_tables.signal_kept(self._conn, request_id))

    def labelled(self, model_sha256: str) -> list[LabelledSignal]:
        """The kept signals of a local model that carry a label (see
        :func:`hybrid.ledger.learning_tables.labelled`)."""
        return self._query(lambda: learning_tables.labelled(self._conn, model_sha256))

    def usable_since(
        self, model_sha256: str, after: float | None = None
    ) -> tuple[int, float | None]:
        """A local model's labelled requests a refit can use, labelled after ``after``, and
        the newest one's label time (see :func:`hybrid.ledger.learning_tables.usable_since`)."""
        return self._query(lambda: learning_tables.usable_since(self._conn, model_sha256, after))

    def signals(self, model_sha256: str | None = None) -> list[Signal]:
        """The kept signals, of one local model or all, oldest first."""
        return self._query(lambda: learning_tables.signals(self._conn, model_sha256))

    def labels(self, request_id: str | None = None) -> list[Label]:
        """The labels, of one request or all, oldest first."""
        return self._query(lambda: learning_tables.labels(self._conn, request_id))

    def label_counts(self) -> list[LabelCount]:
        """Labels per local model and source (see :func:`hybrid.ledger.learning_tables.counts`)."""
        return self._query(lambda: learning_tables.counts(self._conn))

    def _query(self, query: Callable[[], T]) -> T:
        """Run a read; the database's errors become a :class:`~hybrid.errors.LedgerError`."""
        try:
            with self._conn.watched():
                return query()
        except self._conn.errors as exc:
            raise self._conn.failure(exc, "read") from exc

    def _rows(self, sql: str, params: Sequence[Any]) -> list[Any]:
        """Run a query and fetch its rows, as :meth:`_query`."""
        return self._query(lambda: self._conn.execute(sql, params).fetchall())

    def close(self) -> None:
        """Close the connection (SQLite: a checkpoint folds the WAL back into the file)."""
        self._conn.close()


def _window(
    since: float | None, until: float | None, condition: str | None = None
) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if since is not None:
        clauses.append("time >= ?")
        params.append(since)
    if until is not None:
        clauses.append("time < ?")
        params.append(until)
    if condition is not None:
        clauses.append(f"({condition})")
    return ("WHERE " + " AND ".join(clauses) if clauses else ""), params


def _row(record: LedgerRecord) -> tuple[Any, ...]:
    data = record.to_dict()
    data["reasons"] = json.dumps(data["reasons"])
    data["verdicts"] = json.dumps(data["verdicts"])
    # Stored as 0/1 (PostgreSQL takes no bool for an INTEGER column).
    data["tokens_estimated"] = int(data["tokens_estimated"])
    data["price_known"] = int(data["price_known"])
    return tuple(data[column] for column in COLUMNS)


def _record(row: Sequence[Any]) -> LedgerRecord:
    data = dict(zip(COLUMNS, row, strict=True))
    data["reasons"] = json.loads(data["reasons"])
    data["verdicts"] = json.loads(data["verdicts"])
    return LedgerRecord.from_dict(data)


def describe_source(source: Path | str) -> str:
    """A ledger file's path, or a shared ledger's URL with its password masked, for messages."""
    if isinstance(source, Path):
        return str(source)
    from hybrid.ledger.pg import mask_url  # psycopg, only for a shared ledger

    return mask_url(source)
