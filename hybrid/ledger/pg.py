"""Connecting to a PostgreSQL ledger (``ledger.url``) and telling its failures apart.

A daemon that shares its ledger and budget with others reaches them through psycopg 3.  This
module is what every part that talks to that database stands on:

- :func:`mask_url` hides the password wherever a URL is shown (logs, ``/health``, errors).
- :func:`connect` opens a connection (autocommit off, a connect timeout, TCP keepalives and a
  statement timeout, so a database that vanishes is noticed rather than waited on forever).
- :func:`translate` turns a psycopg failure into one of hybrid's errors, by what can be done
  about it: :class:`~hybrid.errors.LedgerUnavailableError` (down, refused, timed out,
  connection lost: keep journaling and retry), :class:`~hybrid.errors.LedgerAccessError`
  (wrong password, user or database: fix ``ledger.url``),
  :class:`~hybrid.errors.LedgerRefusedError` (the database refused the data written, a value
  out of range, a broken constraint, as :func:`refused` tells: writing the same data again
  fails again, however long one waits), or a plain :class:`~hybrid.errors.LedgerError`.
- :func:`migrate` and :func:`check_schema` keep each part's schema version (the records, the
  budget) in one ``hybrid_schema`` table, migrate under an advisory lock so that daemons
  starting together migrate once, and refuse a database a newer hybrid has migrated.
- :func:`open_ledger` opens the shared ledger's connection, every call on it watched by a
  :class:`~hybrid.ledger.pg_watchdog.Watchdog` (a frozen database is reported unavailable).

libpq reports a refused login as text, without a SQLSTATE, so :func:`translate` reads the
server's English messages for those (and only for those); a message it does not know counts
as the database being unavailable, which is retried, never as a reason to stop.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql

from hybrid.errors import (
    ConfigError,
    LedgerAccessError,
    LedgerError,
    LedgerRefusedError,
    LedgerSchemaError,
    LedgerUnavailableError,
)
from hybrid.ledger.dialect import POSTGRESQL, Database
from hybrid.ledger.pg_watchdog import LEDGER_ANSWER_TIMEOUT_S, Watchdog

Connection = psycopg.Connection[tuple[Any, ...]]
"""A psycopg connection returning rows as tuples."""

CONNECT_TIMEOUT_S = 5.0
"""How long :func:`connect` waits for the server by default."""

STATEMENT_TIMEOUT_S = 30.0
"""The longest a statement may run (waiting on locks included) before the server cancels it."""

SCHEMA_TABLE = "hybrid_schema"
"""The table holding each part's schema version: ``(part TEXT PRIMARY KEY, version INT)``."""

MASK = "***"
"""What a password is replaced with."""

# The first key of every advisory lock hybrid takes ("HYBR"); the second names the part.
_LOCK_SPACE = 0x48594252

# SQLSTATE classes and codes that mean the server cannot serve now, not that hybrid is wrong:
# connection exceptions, insufficient resources, operator intervention (shutdown, crash
# recovery, "cannot connect now"), system errors.
_UNAVAILABLE_CLASSES = ("08", "53", "57", "58")
_ACCESS_CODES = frozenset({"28000", "28P01", "3D000", "42501", "3F000"})
# SQLSTATE classes of a statement refused for its data: data exceptions (a value out of range,
# invalid text) and integrity constraint violations (NOT NULL, CHECK, UNIQUE).
_REFUSED_CLASSES = ("22", "23")
# What the server or libpq says when a login is refused for good, or the URL holds a value
# libpq rejects (these messages have no SQLSTATE).
_REFUSED_LOGIN = re.compile(
    r"password authentication failed|authentication failed|no password supplied|"
    r"no pg_hba\.conf entry|database \S+ does not exist|role \S+ does not exist|"
    r"permission denied|password is required|invalid (?:integer|port|\w+ value)|"
    r"invalid connection option",
    re.IGNORECASE,
)
_QUERY_PASSWORD = re.compile(r"(?i)([?&]password=)[^&#]*")
_KEYWORD_PASSWORD = re.compile(r"(?i)(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)")


def mask_url(url: str) -> str:
    """Return a ledger URL with its password replaced by ``***``.

    Handles the password in the user part (``postgresql://user:pw@host/db``, even with ``@``,
    ``/`` or ``:`` inside it), in the query (``?password=pw``) and in a keyword connection
    string (``host=db password=pw``).

    Args:
        url: A ``postgresql://`` URL or a libpq keyword string.

    Returns:
        The same text with every password masked; the user, host, port and database stay.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return _KEYWORD_PASSWORD.sub(rf"\g<1>{MASK}", url)
    before_query, question, query = rest.partition("?")
    userinfo, at, hosts = before_query.rpartition("@")
    if at:
        user, colon, _ = userinfo.partition(":")
        before_query = f"{user}{':' + MASK if colon else ''}@{hosts}"
    masked = f"{scheme}://{before_query}{question}{query}"
    return _QUERY_PASSWORD.sub(rf"\g<1>{MASK}", masked)


def connect(
    url: str,
    *,
    timeout_s: float = CONNECT_TIMEOUT_S,
    statement_timeout_s: float = STATEMENT_TIMEOUT_S,
    application_name: str = "hybrid",
    autocommit: bool = False,
) -> Connection:
    """Open a connection to the ledger database.

    Settings in the URL win over the defaults here, except ``connect_timeout``, which is
    ``timeout_s`` unless the URL sets it.

    Args:
        url: ``ledger.url``.
        timeout_s: Seconds to wait for the server to accept the connection.
        statement_timeout_s: Seconds any statement may run, waiting on locks included.
        application_name: How the connection shows in ``pg_stat_activity``.
        autocommit: False (the default): statements run in a transaction that the caller
            commits; True for administration.

    Returns:
        An open connection, idle (its session settings committed).

    Raises:
        ConfigError: ``url`` is not a connection string libpq understands.
        LedgerUnavailableError: The server cannot be reached or is not accepting connections.
        LedgerAccessError: The server refuses the user, the password or the database.
    """
    try:
        params: dict[str, Any] = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.Error as exc:
        reason = scrub(str(exc).strip().splitlines()[0] if str(exc).strip() else "", url)
        raise ConfigError(
            f"ledger.url is not a valid PostgreSQL URL ({reason}): write it as "
            f"postgresql://user:password@host:5432/database"
        ) from exc
    params.setdefault("connect_timeout", max(1, round(timeout_s)))
    params.setdefault("application_name", application_name)
    # Notice a peer that vanished without closing the connection (a dead network).
    params.setdefault("keepalives", 1)
    params.setdefault("keepalives_idle", 10)
    params.setdefault("keepalives_interval", 5)
    params.setdefault("keepalives_count", 3)
    try:
        conn = psycopg.connect(autocommit=autocommit, **params)
    except psycopg.Error as exc:
        raise translate(exc, url, doing="connect") from exc
    try:
        conn.execute(
            "SELECT set_config('statement_timeout', %s, false)",
            (f"{round(statement_timeout_s * 1000)}ms",),
        )
        if not autocommit:
            conn.commit()
    except psycopg.Error as exc:
        conn.close()
        raise translate(exc, url, doing="connect") from exc
    return conn


def translate(exc: psycopg.Error, url: str, *, doing: str) -> LedgerError:
    """Turn a psycopg failure into hybrid's error, for ``raise translate(...) from exc``.

    Args:
        exc: What psycopg raised.
        url: ``ledger.url``, named (masked) in the message and scrubbed from it.
        doing: What was being done, for the message (``connect``, ``write records``).

    Returns:
        :class:`LedgerUnavailableError` when the database cannot serve now (down, refused,
        timed out, the connection lost, shutting down, too many connections);
        :class:`LedgerAccessError` when it refuses the login, the database or a right;
        :class:`LedgerRefusedError` when it refused the data written (:func:`refused`);
        otherwise :class:`LedgerError`.  The message is one line and holds no password.
    """
    where = mask_url(url)
    reason = scrub(_reason(exc), url)
    state = exc.sqlstate
    if state in _ACCESS_CODES or (state is None and _REFUSED_LOGIN.search(reason)):
        return LedgerAccessError(
            f"ledger.url ({where}): {reason}; fix the user, password or database in "
            f"ledger.url (HYBRID_LEDGER__URL)"
        )
    unavailable = (state is None and isinstance(exc, psycopg.OperationalError)) or (
        state is not None and state.startswith(_UNAVAILABLE_CLASSES)
    )
    if unavailable or _is_broken(exc):
        return LedgerUnavailableError(
            f"the ledger database {where} is unavailable ({doing}): {reason}; check that "
            f"it runs and that ledger.url names its host and port"
        )
    if refused(exc):
        return LedgerRefusedError(f"the ledger database {where} refused to {doing}: {reason}")
    return LedgerError(f"the ledger database {where} failed to {doing}: {reason}")


def refused(exc: BaseException) -> bool:
    """Whether psycopg's failure means the data written was refused, for good.

    True for a data exception or an integrity constraint violation reported by the server
    (SQLSTATE classes 22 and 23), and for a ``DataError``, ``IntegrityError`` or
    ``ProgrammingError`` psycopg raised before sending anything (a value it cannot send: a
    type it cannot adapt, a NUL in text).  False for anything else, an outage above all: the
    same statement may succeed later then.

    Args:
        exc: Any exception; one that is not psycopg's is not a refusal.
    """
    if not isinstance(exc, psycopg.Error):
        return False
    if exc.sqlstate is not None:
        return exc.sqlstate.startswith(_REFUSED_CLASSES)
    return isinstance(exc, psycopg.DataError | psycopg.IntegrityError | psycopg.ProgrammingError)


def scrub(text: str, url: str) -> str:
    """Remove the password of ``url`` from ``text``, however it was quoted.

    Args:
        text: A message that may repeat the URL or its password.
        url: The ledger URL.

    Returns:
        ``text`` with the password, raw and percent-decoded, replaced by ``***``.
    """
    password = _password(url)
    if password:
        from urllib.parse import unquote

        for form in {password, unquote(password)}:
            if form:
                text = text.replace(form, MASK)
    return text


def migrate(conn: Connection, part: str, migrations: Sequence[Sequence[str]], *, url: str) -> int:
    """Bring one part's tables to ``len(migrations)``, in one transaction, once per fleet.

    Migration ``n`` (``migrations[n - 1]``, a list of statements) takes the part from version
    ``n - 1`` to ``n``.  An advisory lock per part makes daemons that start together take
    turns: the second finds the work done.  PostgreSQL's DDL is transactional, so a failure
    leaves the part at its old version.

    Args:
        conn: A connection made by :func:`connect`, idle (autocommit on or off: the work
            runs in a transaction of its own).
        part: The part's name in ``hybrid_schema`` (``ledger``, ``budget``).
        migrations: Every migration of the part, oldest first.
        url: ``ledger.url``, for messages.

    Returns:
        The version the part is at now (``len(migrations)``).

    Raises:
        LedgerSchemaError: The part is at a version newer than ``len(migrations)``.
        LedgerUnavailableError: The connection was lost.
        LedgerAccessError: The role may not create tables.
        LedgerError: A migration failed.
    """
    target = len(migrations)
    try:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (_LOCK_SPACE, _lock_key(part)))
            conn.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} (part TEXT PRIMARY KEY, "
                    "version INTEGER NOT NULL, migrated_at TIMESTAMPTZ NOT NULL DEFAULT now())"
                ).format(sql.Identifier(SCHEMA_TABLE))
            )
            current = schema_version(conn, part)
            _refuse_newer(part, current, target, url)
            for statements in migrations[current:]:
                for statement in statements:
                    conn.execute(statement)
            if current < target:
                conn.execute(
                    sql.SQL(
                        "INSERT INTO {} (part, version) VALUES (%s, %s) ON CONFLICT (part) "
                        "DO UPDATE SET version = EXCLUDED.version, migrated_at = now()"
                    ).format(sql.Identifier(SCHEMA_TABLE)),
                    (part, target),
                )
    except psycopg.Error as exc:
        raise translate(exc, url, doing=f"migrate the {part} tables") from exc
    return target


def schema_version(conn: Connection, part: str) -> int:
    """Return a part's schema version: 0 when it has none yet (or no ``hybrid_schema``).

    Args:
        conn: An open connection; in a transaction when the caller holds one.
        part: The part's name.

    Raises:
        psycopg.Error: The query failed (callers translate it).
    """
    exists = conn.execute("SELECT to_regclass(%s)", (SCHEMA_TABLE,)).fetchone()
    if exists is None or exists[0] is None:
        return 0
    row = conn.execute(
        sql.SQL("SELECT version FROM {} WHERE part = %s").format(sql.Identifier(SCHEMA_TABLE)),
        (part,),
    ).fetchone()
    return int(row[0]) if row is not None else 0


def check_schema(conn: Connection, part: str, supported: int, *, url: str) -> int:
    """Refuse a database whose part was migrated past what this hybrid knows.

    Args:
        conn: An open connection.
        part: The part's name (``ledger``, ``budget``).
        supported: The newest version this hybrid knows.
        url: ``ledger.url``, for the message.

    Returns:
        The part's version (0 when it has none yet).

    Raises:
        LedgerSchemaError: The version is newer than ``supported``.
        LedgerUnavailableError: The connection was lost.
    """
    try:
        current = schema_version(conn, part)
        if not conn.autocommit:
            conn.rollback()
    except psycopg.Error as exc:
        raise translate(exc, url, doing="read the schema version") from exc
    _refuse_newer(part, current, supported, url)
    return current


def _refuse_newer(part: str, current: int, supported: int, url: str) -> None:
    if current > supported:
        raise LedgerSchemaError(
            f"the ledger database {mask_url(url)} has {part} schema version {current}, newer "
            f"than this hybrid's {supported}: a newer hybrid shares it; upgrade hybrid here, "
            f"or point ledger.url at another database"
        )


def _lock_key(part: str) -> int:
    # A stable signed 32-bit key per part (crc32, not hash(): the same in every process).
    key = zlib.crc32(part.encode())
    return key - (1 << 32) if key >= 1 << 31 else key


def _reason(exc: psycopg.Error) -> str:
    """The server's or libpq's own words, on one line, without psycopg's prefixes."""
    diag = exc.diag.message_primary if exc.sqlstate is not None else None
    text = diag or str(exc) or type(exc).__name__
    # libpq: 'connection failed: connection to server at "h", port 5432 failed: FATAL:  ...'
    text = text.rsplit(" failed: ", 1)[-1]
    text = re.sub(r"^(?:FATAL|ERROR):\s*", "", text.strip())
    first = text.splitlines()[0] if text else type(exc).__name__
    return " ".join(first.split())


def _is_broken(exc: psycopg.Error) -> bool:
    """Whether the connection the error came from can no longer be used."""
    pgconn = exc.pgconn
    return pgconn is not None and pgconn.status == psycopg.pq.ConnStatus.BAD


def _password(url: str) -> str | None:
    _, sep, rest = url.partition("://")
    if sep:
        before_query, _, query = rest.partition("?")
        userinfo, at, _ = before_query.rpartition("@")
        if at and ":" in userinfo:
            return userinfo.partition(":")[2]
        found = re.search(r"(?i)[?&]password=([^&#]*)", f"?{query}")
        return found.group(1) if found else None
    found = _KEYWORD_PASSWORD.search(url)
    return found.group(2).strip("'") if found else None


def open_ledger(
    url: str,
    *,
    timeout_s: float = CONNECT_TIMEOUT_S,
    answer_timeout_s: float = LEDGER_ANSWER_TIMEOUT_S,
) -> Database:
    """Connect to the ledger database and bring its ``ledger`` tables to the current version.

    Every call on the connection (the migration here, then each read and each write
    transaction of :class:`~hybrid.ledger.store.LedgerStore`) is watched: one the database
    has not answered within ``answer_timeout_s`` (a server that is stopped or frozen) has its
    connection cut and raises :class:`LedgerUnavailableError`, as a database that is down does.

    Args:
        url: ``ledger.url``.
        timeout_s: Seconds to wait for the server.
        answer_timeout_s: Seconds a call waits for the database's answer.

    Returns:
        The database, in autocommit mode (writes open their own transactions).

    Raises:
        ConfigError: ``url`` is not a connection string libpq understands.
        LedgerUnavailableError: The server cannot be reached now, or did not answer in time.
        LedgerAccessError: The server refuses the login, or the role may not create tables.
        LedgerSchemaError: A newer hybrid migrated the ledger.
        ValueError: ``answer_timeout_s`` is not a positive number of seconds.
    """
    from hybrid.ledger.schema import POSTGRESQL_MIGRATIONS

    watchdog = Watchdog(answer_timeout_s)
    where = mask_url(url)
    conn = connect(url, timeout_s=timeout_s, application_name="hybrid ledger", autocommit=True)
    try:
        with watchdog.watching(conn):
            migrate(conn, "ledger", POSTGRESQL_MIGRATIONS, url=url)
    except BaseException as exc:
        conn.close()
        watchdog.close()
        if isinstance(exc, LedgerError) and watchdog.cut:
            raise watchdog.error(where, doing="migrate the ledger tables") from exc
        raise

    def failure(exc: Exception, doing: str) -> LedgerError:
        assert isinstance(exc, psycopg.Error)
        if watchdog.cut:  # the call was cut: its error only says the connection is gone
            return watchdog.error(where, doing=doing)
        return translate(exc, url, doing=doing)

    return Database(
        conn, POSTGRESQL, where, errors=(psycopg.Error,), failure=failure, watchdog=watchdog
    )
