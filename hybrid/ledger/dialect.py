"""One ledger, two databases: what differs between SQLite (the file) and PostgreSQL
(``ledger.url``), and the connection both are used through.

The store, the rollups and learning write their SQL once, with ``?`` placeholders and
standard SQL (``INSERT ... ON CONFLICT``, ``FILTER``, ``CASE``).  :class:`Database` runs it on
either: on PostgreSQL it turns ``?`` into psycopg's ``%s`` (and a literal ``%`` into ``%%``).
What cannot be written once lives in :class:`Dialect`:

- column types: SQLite's ``REAL`` is 8 bytes, PostgreSQL's 4, so floats are ``DOUBLE
  PRECISION`` there; ``BLOB`` is ``BYTEA``; a row counter is ``INTEGER PRIMARY KEY`` in SQLite
  and an identity column in PostgreSQL;
- the hour a time falls in (``CAST`` truncates in SQLite, rounds in PostgreSQL);
- the first element of the JSON list of reasons (SQLite's JSON1, PostgreSQL's ``->>``).

Text is stored the same on both: PostgreSQL's ``text`` cannot hold U+0000 (psycopg refuses
the whole statement), and SQLite stores it but its SQL functions stop at it, so
:class:`Database` replaces every NUL in a text parameter with U+FFFD (:data:`NUL_STAND_IN`)
before either driver sees it.  A client's text (a requested model, a feedback note) holding a
NUL is then stored like any other, rather than failing the batch it is in for good.

Errors are told apart by the connection too: :meth:`Database.failure` turns SQLite's or
psycopg's exception into a :class:`~hybrid.errors.LedgerError` naming the file or the masked
URL (for PostgreSQL, :func:`hybrid.ledger.pg.translate`: unavailable, access, refused, other).
A statement refused for the data it writes, which fails again however often it is tried
(:func:`sqlite_refused`; for PostgreSQL, :func:`hybrid.ledger.pg.refused`), becomes a
:class:`~hybrid.errors.LedgerRefusedError`, told apart from a database that cannot serve now.

A PostgreSQL connection is also watched (:meth:`Database.watched`, a
:class:`~hybrid.ledger.pg_watchdog.Watchdog`): a call the database does not answer in time is
cut, and :meth:`Database.failure` reports it unavailable.
"""

from __future__ import annotations

import contextlib
import functools
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from hybrid.errors import LedgerError, LedgerRefusedError

_HOUR_S = 3_600

NUL_STAND_IN = "\ufffd"
"""What a NUL (U+0000) in a text parameter is stored as: PostgreSQL's text cannot hold it."""


@dataclass(frozen=True)
class Dialect:
    """What one database spells differently.

    Attributes:
        name: ``sqlite`` or ``postgresql``.
        float: The type of an 8-byte float column.
        bigint: The type of an integer column that may pass 2**31.
        blob: The type of a bytes column.
        row_id: The definition of an auto-numbered ``seq`` primary key.
        hour_of_time: An integer expression: the start of the UTC hour of the ``time`` column.
        first_reason: A text expression: the first reason of the ``reasons`` JSON list (NULL
            for an empty list).
    """

    name: Literal["sqlite", "postgresql"]
    float: str
    bigint: str
    blob: str
    row_id: str
    hour_of_time: str
    first_reason: str


SQLITE = Dialect(
    name="sqlite",
    float="REAL",
    bigint="INTEGER",
    blob="BLOB",
    row_id="seq INTEGER PRIMARY KEY",
    # CAST truncates, which is the floor for the positive times a ledger holds.
    hour_of_time=f"CAST(time / {_HOUR_S} AS INTEGER) * {_HOUR_S}",
    first_reason="json_extract(reasons, '$[0]')",
)
POSTGRESQL = Dialect(
    name="postgresql",
    float="DOUBLE PRECISION",
    bigint="BIGINT",
    blob="BYTEA",
    row_id="seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
    hour_of_time=f"(FLOOR(time / {_HOUR_S}) * {_HOUR_S})::bigint",
    first_reason="(reasons::json ->> 0)",
)


class Rows(Protocol):
    """What a query returns on either database: a cursor over tuples."""

    @property
    def rowcount(self) -> int:
        """Rows the statement changed."""
        ...

    def fetchone(self) -> Any:
        """The next row, or None."""
        ...

    def fetchall(self) -> list[Any]:
        """The remaining rows."""
        ...

    def __iter__(self) -> Iterator[Any]:
        """The remaining rows, one at a time."""
        ...


class Watcher(Protocol):
    """What bounds the wait for a database's answer (a
    :class:`~hybrid.ledger.pg_watchdog.Watchdog`)."""

    def watching(self, conn: Any) -> contextlib.AbstractContextManager[None]:
        """Watch the ``with`` block's call on ``conn``."""
        ...

    def close(self) -> None:
        """Stop watching for good."""
        ...


class Database:
    """An open ledger database (SQLite or PostgreSQL), in autocommit mode between
    :meth:`transaction` blocks, used by one thread at a time.

    Attributes:
        dialect: How this database spells what differs.
        name: The file, or the masked URL: what messages name.
    """

    def __init__(
        self,
        conn: Any,
        dialect: Dialect,
        name: str,
        *,
        errors: tuple[type[Exception], ...],
        failure: Callable[[Exception, str], LedgerError],
        watchdog: Watcher | None = None,
    ) -> None:
        """Wrap an autocommit connection.

        Args:
            conn: A ``sqlite3.Connection`` (``isolation_level=None``) or an autocommit psycopg
                connection.
            dialect: :data:`SQLITE` or :data:`POSTGRESQL`.
            name: What messages call the database (never a password).
            errors: The exception types the driver raises.
            failure: Turns one of those, and what was being done, into a LedgerError.
            watchdog: Bounds each call :meth:`watched` wraps (PostgreSQL); None: none.
        """
        self.conn = conn
        self.dialect = dialect
        self.name = name
        self.errors = errors
        self._failure = failure
        self._watchdog = watchdog

    @classmethod
    def sqlite(cls, conn: sqlite3.Connection, name: str) -> Database:
        """Wrap a SQLite connection (see :func:`hybrid.ledger.schema.connect`).

        Its errors are the ``sqlite3`` module's, and the ``OverflowError`` it raises for an
        integer it cannot bind.
        """

        def failure(exc: Exception, doing: str) -> LedgerError:
            if sqlite_refused(exc):
                return LedgerRefusedError(f"the ledger {name} refused to {doing}: {exc}")
            return LedgerError(f"the ledger {name} failed to {doing}: {exc}")

        return cls(conn, SQLITE, name, errors=(sqlite3.Error, OverflowError), failure=failure)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Rows:
        """Run one statement with ``?`` placeholders.

        A NUL in a text parameter is passed as :data:`NUL_STAND_IN`, on both databases, so
        that what is stored, and what a query compares with, is the same on either.

        Raises:
            Exception: The driver's error (one of :attr:`errors`); callers use :meth:`failure`.
        """
        result: Rows = self.conn.execute(self._sql(sql), _storable(params))
        return result

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run one statement once per row of parameters.

        Raises:
            Exception: The driver's error (one of :attr:`errors`); callers use :meth:`failure`.
        """
        if not rows:
            return
        storable = [_storable(row) for row in rows]
        if self.dialect is SQLITE:
            self.conn.executemany(sql, storable)
        else:
            with self.conn.cursor() as cursor:
                cursor.executemany(self._sql(sql), storable)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Run the block in one transaction (SQLite: ``BEGIN IMMEDIATE``, the write lock
        first): committed when it ends, rolled back when it raises."""
        if self.dialect is SQLITE:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")
        else:
            with self.conn.transaction():
                yield

    def watched(self) -> contextlib.AbstractContextManager[None]:
        """Watch one call (a read, a write transaction): on PostgreSQL, one the database has
        not answered within the watchdog's limit has its connection cut, and
        :meth:`failure` then says the database did not answer.  Nothing on SQLite."""
        if self._watchdog is None:
            return contextlib.nullcontext()
        return self._watchdog.watching(self.conn)

    def failure(self, exc: Exception, doing: str) -> LedgerError:
        """The LedgerError for a driver's error, for ``raise db.failure(exc, ...) from exc``.

        Args:
            exc: One of :attr:`errors`.
            doing: What failed, e.g. ``read``, ``record 3 request(s) in``.
        """
        return self._failure(exc, doing)

    def close(self) -> None:
        """Close the connection, and stop its watchdog (idempotent)."""
        self.conn.close()
        if self._watchdog is not None:
            self._watchdog.close()

    def _sql(self, sql: str) -> str:
        return sql if self.dialect is SQLITE else _pyformat(sql)


def _storable(params: Sequence[Any]) -> tuple[Any, ...]:
    """``params`` with every NUL in a text value replaced by :data:`NUL_STAND_IN`."""
    return tuple(
        value.replace("\x00", NUL_STAND_IN) if isinstance(value, str) and "\x00" in value else value
        for value in params
    )


def sqlite_refused(exc: BaseException) -> bool:
    """Whether SQLite (through the ``sqlite3`` module) refused the data written, for good.

    True for a broken constraint (``IntegrityError``: NOT NULL, which a NaN also breaks, as
    SQLite stores it as NULL), a value SQLite cannot hold (``DataError``), and a value the
    module cannot bind (``ProgrammingError`` or ``InterfaceError`` for a type it does not
    support, ``OverflowError`` for an integer past 64 bits).  False for anything else, such as
    a locked database, a full disk or an I/O error (``OperationalError``): a later try may
    succeed.

    Args:
        exc: Any exception.
    """
    return isinstance(
        exc,
        sqlite3.IntegrityError
        | sqlite3.DataError
        | sqlite3.ProgrammingError
        | sqlite3.InterfaceError
        | OverflowError,
    )


@functools.lru_cache(maxsize=256)
def _pyformat(sql: str) -> str:
    """``?`` placeholders as psycopg's ``%s``, a literal ``%`` as ``%%`` (not inside quotes:
    a ``?`` in a string literal stays one)."""
    out: list[str] = []
    quoted = False
    for char in sql:
        if char == "'":
            quoted = not quoted
        if char == "%":
            out.append("%%")
        elif char == "?" and not quoted:
            out.append("%s")
        else:
            out.append(char)
    return "".join(out)
