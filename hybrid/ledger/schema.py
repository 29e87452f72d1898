"""The ledger's schema on SQLite and PostgreSQL, its versions, and the migrations between them.

The version lives in ``PRAGMA user_version``.  Migration ``n`` takes a file at version
``n - 1`` to ``n``; each runs in its own transaction, so a crash leaves the file at a version,
never between two.  A file written by a newer hybrid is refused rather than guessed at.

- v1: the ``requests`` table, indexed by time.
- v2: ``leg`` (the two legs of a cascade), indexes by provider and time (budget seeding) and by
  request id.
- v3: ``cache_read_tokens`` and ``cache_write_tokens`` (prompt-cache tokens, 0 in older rows);
  ``decided`` (who chose the route), filled in for older rows from their deciding reason
  (``explicit:`` -> ``client``, ``mode:`` -> ``mode``, any other answer -> ``router``); and
  requests refused before any model ran, which older versions recorded as failed local (or,
  at a spend cap, cloud) requests, become ``route='none'``, ``status='refused'``.
- v4: ``signals`` and ``labels``, what learning from traffic keeps (:mod:`hybrid.ledger.learning`).
- v5: ``rollups``, the records folded per hour and per model, route, provider, status, decider,
  leg and reason, with latency and TTFT histograms (:mod:`hybrid.ledger.rollup`).
- v6: ``instance``, the daemon that wrote a record (``ledger.instance``; ``''`` in older rows),
  also a key of the rollups, which are folded again from the records.

A migration step is an SQL statement or a function of the connection (a data step).

A PostgreSQL ledger (``ledger.url``) is created at the current version in one step
(:data:`POSTGRESQL_MIGRATIONS`; no PostgreSQL ledger predates version 6, so the steps before
it are empty) by :func:`hybrid.ledger.pg.migrate`, which keeps the version in
``hybrid_schema`` (part ``ledger``) and refuses a database a newer hybrid migrated.  There a
record's id and leg are unique, so a record synced twice is refused rather than stored twice.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

from hybrid.errors import ConfigError, LedgerError
from hybrid.ledger import learning_tables, rollup
from hybrid.ledger.dialect import POSTGRESQL, SQLITE, Database, Dialect
from hybrid.ledger.totals import day_label, reason_label

Step = str | Callable[[Database], None]
"""One step of a migration: an SQL statement, or a function run on the connection."""


def rollups_table(dialect: Dialect, *, instance: bool = True) -> str:
    """The ``CREATE TABLE rollups`` statement (:mod:`hybrid.ledger.rollup`).

    Args:
        dialect: The database's.
        instance: With the ``instance`` key (version 6); False: version 5's table.
    """
    keys = rollup.KEYS if instance else rollup.KEYS[:-1]
    buckets = (*rollup.LATENCY_COLUMNS, *rollup.TTFT_COLUMNS)
    counts = [f"{column} {dialect.bigint} NOT NULL DEFAULT 0" for column in buckets]
    return f"""
    CREATE TABLE rollups (
        span INTEGER NOT NULL,
        start {dialect.bigint} NOT NULL,
        model TEXT NOT NULL,
        route TEXT NOT NULL,
        provider TEXT NOT NULL,
        status TEXT NOT NULL,
        decided TEXT NOT NULL,
        leg TEXT NOT NULL,
        reason TEXT NOT NULL,
        {"instance TEXT NOT NULL DEFAULT '', " if instance else ""}
        records {dialect.bigint} NOT NULL,
        prompt_tokens {dialect.bigint} NOT NULL,
        completion_tokens {dialect.bigint} NOT NULL,
        cache_read_tokens {dialect.bigint} NOT NULL,
        cache_write_tokens {dialect.bigint} NOT NULL,
        cloud_cost_usd {dialect.float} NOT NULL,
        cost_avoided_usd {dialect.float} NOT NULL,
        latency_max {dialect.float},
        ttft_max {dialect.float},
        {", ".join(counts)},
        PRIMARY KEY ({", ".join(keys)})
    )
    """


MIGRATIONS: tuple[tuple[Step, ...], ...] = (
    (
        """
        CREATE TABLE requests (
            seq INTEGER PRIMARY KEY,
            id TEXT NOT NULL,
            time REAL NOT NULL,
            api TEXT NOT NULL,
            route TEXT NOT NULL,
            reasons TEXT NOT NULL,
            verdicts TEXT NOT NULL,
            score REAL,
            model_requested TEXT,
            model TEXT NOT NULL,
            provider TEXT NOT NULL,
            prompt_tokens INTEGER NOT NULL,
            completion_tokens INTEGER NOT NULL,
            tokens_estimated INTEGER NOT NULL,
            ttft_s REAL,
            latency_s REAL NOT NULL,
            status TEXT NOT NULL,
            error TEXT,
            cloud_cost_usd REAL,
            counterfactual_model TEXT,
            counterfactual_cost_usd REAL,
            energy_cost_usd REAL,
            cost_avoided_usd REAL,
            price_known INTEGER NOT NULL
        )
        """,
        "CREATE INDEX requests_time ON requests (time)",
    ),
    (
        "ALTER TABLE requests ADD COLUMN leg TEXT",
        "CREATE INDEX requests_provider_time ON requests (provider, time)",
        "CREATE INDEX requests_id ON requests (id)",
    ),
    (
        "ALTER TABLE requests ADD COLUMN cache_read_tokens INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE requests ADD COLUMN cache_write_tokens INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE requests ADD COLUMN decided TEXT",
        # Only a request that failed before any answer has provider 'none'; these codes are
        # the refusals (hybrid.api.errors), the rest failed in the cloud or in llama.cpp.
        """
        UPDATE requests
        SET route = 'none', status = 'refused', prompt_tokens = 0, tokens_estimated = 0
        WHERE provider = 'none' AND json_extract(reasons, '$[0]') IN (
            'error:invalid_request_error', 'error:context_length_exceeded',
            'error:model_not_found', 'error:rate_limit_exceeded', 'error:model_not_ready',
            'error:private_data_kept_local', 'error:insufficient_quota'
        )
        """,
        """
        UPDATE requests SET decided = CASE
            WHEN json_extract(reasons, '$[0]') LIKE 'explicit:%' THEN 'client'
            WHEN json_extract(reasons, '$[0]') LIKE 'mode:%' THEN 'mode'
            ELSE 'router'
        END
        WHERE provider != 'none'
        """,
    ),
    learning_tables.MIGRATION,
    (rollups_table(SQLITE, instance=False),),
    (
        "ALTER TABLE requests ADD COLUMN instance TEXT NOT NULL DEFAULT ''",
        "DROP TABLE rollups",
        rollups_table(SQLITE),
        rollup.build,
    ),
)
"""``MIGRATIONS[n - 1]`` holds the statements that take version ``n - 1`` to ``n``."""

SCHEMA_VERSION = len(MIGRATIONS)


def requests_table(dialect: Dialect) -> str:
    """The ``requests`` table as it is at :data:`SCHEMA_VERSION` (PostgreSQL's first step)."""
    return f"""
        CREATE TABLE requests (
            {dialect.row_id},
            id TEXT NOT NULL,
            time {dialect.float} NOT NULL,
            api TEXT NOT NULL,
            route TEXT NOT NULL,
            reasons TEXT NOT NULL,
            verdicts TEXT NOT NULL,
            score {dialect.float},
            model_requested TEXT,
            model TEXT NOT NULL,
            provider TEXT NOT NULL,
            prompt_tokens INTEGER NOT NULL,
            completion_tokens INTEGER NOT NULL,
            tokens_estimated INTEGER NOT NULL,
            ttft_s {dialect.float},
            latency_s {dialect.float} NOT NULL,
            status TEXT NOT NULL,
            error TEXT,
            cloud_cost_usd {dialect.float},
            counterfactual_model TEXT,
            counterfactual_cost_usd {dialect.float},
            energy_cost_usd {dialect.float},
            cost_avoided_usd {dialect.float},
            price_known INTEGER NOT NULL,
            leg TEXT,
            cache_read_tokens INTEGER NOT NULL DEFAULT 0,
            cache_write_tokens INTEGER NOT NULL DEFAULT 0,
            decided TEXT,
            instance TEXT NOT NULL DEFAULT ''
        )
    """


POSTGRESQL_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    *((),) * 5,  # versions 1 to 5: no PostgreSQL ledger is that old
    # Version 6: everything.  A later version adds its step here as well as to MIGRATIONS.
    (
        requests_table(POSTGRESQL),
        "CREATE INDEX requests_time ON requests (time)",
        "CREATE INDEX requests_provider_time ON requests (provider, time)",
        # A cascade's two legs share an id; a record synced twice is refused.
        "CREATE UNIQUE INDEX requests_id_leg ON requests (id, COALESCE(leg, ''))",
        *learning_tables.tables(POSTGRESQL),
        rollups_table(POSTGRESQL),
    ),
)
"""The PostgreSQL ledger's migrations, as :data:`MIGRATIONS` (see the module's docstring)."""


def refuse_folder(path: Path) -> None:
    """Refuse a ledger path that names a folder (say, the folder a ledger lives in).

    Raises:
        ConfigError: ``path`` is a folder.
    """
    if path.is_dir():
        raise ConfigError(
            f"ledger.path {path} is a folder; name the file, e.g. {path / 'ledger.sqlite3'}"
        )


def connect(path: Path) -> sqlite3.Connection:
    """Open (creating it and its folder) a ledger file in WAL mode, migrated to the current
    version.

    The connection is in autocommit mode (callers open their own transactions) and may be used
    from any thread, one thread at a time.  ``synchronous=NORMAL`` in WAL mode makes a commit
    durable against a killed process (the WAL is written before the commit returns) without an
    fsync per commit; only a power loss can take the last commits back.

    Args:
        path: The ledger file.

    Returns:
        The connection, with the ``reason_label`` and ``day_label`` SQL functions registered.

    Raises:
        ConfigError: ``path`` is a folder.
        LedgerError: The file cannot be created or opened, is not a SQLite database, or was
            written by a newer hybrid.
    """
    refuse_folder(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
    except (OSError, sqlite3.Error) as exc:
        raise LedgerError(
            f"cannot open the ledger {path}: {exc}; check that its folder is writable, "
            f"or set ledger.path (HYBRID_LEDGER__PATH) to another file"
        ) from exc
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.create_function("reason_label", 1, reason_label, deterministic=True)
        conn.create_function("day_label", 1, day_label, deterministic=True)
        migrate(conn, path)
    except sqlite3.Error as exc:
        conn.close()
        raise LedgerError(
            f"the ledger {path} cannot be used: {exc}; move the file away (hybrid starts a "
            f"new ledger) or set ledger.path (HYBRID_LEDGER__PATH) to another file"
        ) from exc
    except BaseException:
        conn.close()
        raise
    return conn


def version(conn: sqlite3.Connection) -> int:
    """Return the schema version of an open ledger (0 for an empty file)."""
    row = conn.execute("PRAGMA user_version").fetchone()
    return int(row[0])


def migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Bring a ledger to :data:`SCHEMA_VERSION`, one transaction per version.

    Args:
        conn: An autocommit connection to the ledger.
        path: The file, named in errors.

    Raises:
        LedgerError: The file is at a version newer than this hybrid knows.
        sqlite3.Error: A migration failed (its transaction is rolled back).
    """
    while (current := version(conn)) < SCHEMA_VERSION:
        # IMMEDIATE takes the write lock first, so two processes opening an old file at once
        # migrate it once: the second sees the new version below and does nothing.
        conn.execute("BEGIN IMMEDIATE")
        try:
            if version(conn) == current:
                for step in MIGRATIONS[current]:
                    if isinstance(step, str):
                        conn.execute(step)
                    else:
                        step(Database.sqlite(conn, str(path)))
                conn.execute(f"PRAGMA user_version = {current + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    if current > SCHEMA_VERSION:
        raise LedgerError(
            f"the ledger {path} has schema version {current}, newer than this hybrid's "
            f"{SCHEMA_VERSION}; upgrade hybrid, or set ledger.path to another file"
        )
