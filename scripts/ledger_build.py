"""The ledgers the ledger benchmark queries: synthetic records generated in SQL, built into a
SQLite file or a PostgreSQL database with their rollups, and checked against the writer's fold.

Every ledger holds the same traffic (see :data:`_GENERATE`): records spread evenly over the last
:data:`DAYS` days, written by three daemons, with the routes, legs, reasons and statuses a real
ledger mixes.  Rollups are built by :func:`hybrid.ledger.rollup.build`, the fold the schema
migration runs, in the same transaction as the records.
"""

from __future__ import annotations

import functools
import math
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hybrid.ledger import rollup, schema
from hybrid.ledger.dialect import Database
from hybrid.ledger.store import LedgerStore

DAYS = 90

# Synthetic traffic: 60 % local, 10 % LAN, 25 % cloud (three models), 5 % refused; 3 % of
# records are discarded cascade legs and 2 % shadow calls; reasons carry measurements; three
# daemons (instances edge-01 to edge-03) share the ledger.
_GENERATE = """
WITH RECURSIVE seq(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM seq WHERE i < :n - 1),
picked AS (
    SELECT i, (i * 7919) % 100 AS r, (i * 104729) % 100 AS l, (i * 31337) % 10000 AS q,
        :start + i * :step AS t
    FROM seq
)
INSERT INTO requests (id, time, api, route, reasons, verdicts, score, model_requested, model,
    provider, prompt_tokens, completion_tokens, tokens_estimated, ttft_s, latency_s, status,
    error, cloud_cost_usd, counterfactual_model, counterfactual_cost_usd, energy_cost_usd,
    cost_avoided_usd, price_known, leg, cache_read_tokens, cache_write_tokens, decided, instance)
SELECT printf('%x', i), t, CASE WHEN i % 3 = 0 THEN 'anthropic' ELSE 'openai' END,
    CASE WHEN r < 60 THEN 'local' WHEN r < 70 THEN 'lan' WHEN r < 95 THEN 'cloud' ELSE 'none' END,
    CASE WHEN r < 95 THEN '["difficulty:0.' || (10 + i % 89) || '<=0.52"]'
        ELSE '["error:rate_limit_exceeded"]' END,
    '[]', (i % 100) / 100.0, 'gpt-4.1-mini',
    CASE WHEN r < 60 THEN 'gemma-3-270m-q4_k_m' WHEN r < 70 THEN 'gpu-box/qwen2.5-32b'
        WHEN r < 95 THEN CASE i % 3 WHEN 0 THEN 'gpt-4.1-mini' WHEN 1 THEN 'claude-haiku-4-5'
        ELSE 'gpt-4.1' END ELSE 'none' END,
    CASE WHEN r < 60 THEN 'local' WHEN r < 70 THEN 'gpu-box'
        WHEN r < 95 THEN CASE i % 3 WHEN 1 THEN 'anthropic' ELSE 'openai' END ELSE 'none' END,
    CASE WHEN r < 95 THEN 20 + i % 2000 ELSE 0 END, CASE WHEN r < 95 THEN 5 + i % 700 ELSE 0 END,
    0, CASE WHEN r < 95 AND q % 10 > 0 THEN q / 5000.0 END, 0.002 + q / 900.0,
    CASE WHEN r >= 95 THEN 'refused' WHEN q % 50 = 0 THEN 'error' ELSE 'ok' END, NULL,
    CASE WHEN r >= 70 AND r < 95 THEN (20 + i % 2000) * 4e-7 + (5 + i % 700) * 1.6e-6
        ELSE 0.0 END,
    NULL, NULL, 0.0, CASE WHEN r < 70 THEN (20 + i % 2000) * 4e-7 ELSE 0.0 END, 1,
    CASE WHEN l < 3 THEN 'cascade_local' WHEN l < 5 THEN 'shadow' END,
    CASE WHEN r < 60 THEN i % 500 ELSE 0 END, 0,
    CASE WHEN r >= 95 THEN NULL WHEN l < 80 THEN 'router' WHEN l < 95 THEN 'client' ELSE 'mode' END,
    'edge-0' || (1 + (i / 7) % 3)
FROM picked
"""


@dataclass(frozen=True)
class Ledger:
    """A ledger to query: a SQLite file, or a PostgreSQL database (then ``path`` is only where
    its journal is kept)."""

    path: Path
    url: str | None = None

    @property
    def source(self) -> Path | str:
        """What ``hybrid stats`` reads."""
        return self.url if self.url is not None else self.path


def build_postgres(url: str, records: int) -> float:
    """Create a PostgreSQL ledger of ``records`` records (the same traffic as :func:`build`)."""
    started = time.perf_counter()
    store = LedgerStore.open_url(url)
    db: Database = store._conn
    generate = (
        _GENERATE.replace(
            "WITH RECURSIVE seq(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM seq WHERE i < :n - 1)",
            "WITH seq(i) AS (SELECT generate_series(0::bigint, :n - 1))",
        )
        .replace("printf('%x', i)", "to_hex(i)")
        .replace(":n", str(records))
        .replace(":start", repr(time.time() - DAYS * 86_400))
        .replace(":step", repr(DAYS * 86_400 / records))
    )
    try:
        # A daemon's statements are short; one that inserts ten million rows is not.
        db.conn.execute("SET statement_timeout = 0")
        with db.transaction():
            db.conn.execute(generate)  # no parameters: no placeholders to translate
            rollup.build(db)
        db.conn.execute("ANALYZE")
    finally:
        store.close()
    return time.perf_counter() - started


def build(path: Path, records: int) -> float:
    """Create a ledger of ``records`` records over the last 90 days; return the seconds taken."""
    started = time.perf_counter()
    LedgerStore.open(path).close()
    conn = schema.connect(path)
    try:
        now = time.time()
        conn.execute("PRAGMA journal_mode=DELETE")  # a bulk load needs no WAL
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            _GENERATE, {"n": records, "start": now - DAYS * 86_400, "step": DAYS * 86_400 / records}
        )
        rollup.build(Database.sqlite(conn, str(path)))
        conn.execute("COMMIT")
        conn.execute("PRAGMA journal_mode=WAL")
    finally:
        conn.close()
    return time.perf_counter() - started


def verify(source: Path | str) -> int:
    """Check the built rollups against the writer's own fold on a sample: every record of one
    whole UTC day in the middle of the ledger, read back as records and folded the way
    :meth:`LedgerStore.append` folds a batch, must give that day's hour rows and its day row.

    Returns:
        How many records the sampled day holds.

    Raises:
        RuntimeError: A rollup row differs from the writer's fold.
    """
    store = LedgerStore.open(source) if isinstance(source, Path) else LedgerStore.open_url(source)
    try:
        db: Database = store._conn
        low, high = db.execute("SELECT MIN(time), MAX(time) FROM requests").fetchone()
        day = math.floor((low + high) / 2 / 86_400) * 86_400
        records = store.records(day, day + 86_400)
        expected = {
            _key(key): values for key, values in rollup.with_days(rollup.fold(records)).items()
        }
        columns = ", ".join((*rollup.KEYS, *rollup.VALUES))
        stored = {
            _key(row[: len(rollup.KEYS)]): list(row[len(rollup.KEYS) :])
            for row in db.execute(
                f"SELECT {columns} FROM rollups WHERE start >= ? AND start < ?",
                (day, day + 86_400),
            )
        }
    finally:
        store.close()
    if expected.keys() != stored.keys():
        raise RuntimeError(
            f"rollup keys differ from the writer's fold on day {day}: "
            f"{len(expected.keys() - stored.keys())} missing, "
            f"{len(stored.keys() - expected.keys())} extra"
        )
    for key, values in expected.items():
        if not all(map(_same, values, stored[key])):
            raise RuntimeError(f"rollup row {key} differs from the writer's fold")
    return len(records)


def _key(key: Sequence[Any]) -> tuple[Any, ...]:
    return (int(key[0]), int(key[1]), *key[2:])


def _same(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-9)


@contextmanager
def databases(folder: Path, postgres: bool) -> Iterator[Callable[[str], str] | None]:
    """None for SQLite; with ``postgres``, a server for the run and a database per size."""
    if not postgres:
        yield None
        return
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "helpers"))
    from postgres import PostgresServer  # type: ignore[import-not-found]

    with PostgresServer(folder / "postgres") as server:

        def url(name: str) -> str:
            return str(server.create_database(f"ledger_{name}").url)

        yield functools.cache(url)
