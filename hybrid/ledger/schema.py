"""The ledger's SQLite schema, its versions, and the migrations between them.

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
  leg and reason, with latency and TTFT histograms (:mod:`hybrid.ledger.rollup`); filled from
  the records already there.

A migration step is an SQL statement or a function of the connection (a data step).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

from hybrid.errors import LedgerError
from hybrid.ledger import learning, rollup
from hybrid.ledger.totals import day_label, reason_label

Step = str | Callable[[sqlite3.Connection], None]
"""One step of a migration: an SQL statement, or a function run on the connection."""

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
    learning.MIGRATION,
    rollup.MIGRATION,
)
"""``MIGRATIONS[n - 1]`` holds the statements that take version ``n - 1`` to ``n``."""

SCHEMA_VERSION = len(MIGRATIONS)


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
        LedgerError: The file cannot be created or opened, is not a SQLite database, or was
            written by a newer hybrid.
    """
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
                        step(conn)
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
