"""Hourly rollups of the ledger: what every stats query reads instead of the records.

The ``rollups`` table (schema version 5, keyed by instance since 6) holds one row per UTC hour
(``span`` 3600) and one per UTC day (``span`` 86400), each per combination of what the queries
group or filter by: the model that answered, route, provider, status, who decided the route
(``''`` for none), the leg (``''`` for none), the deciding reason without its measurement
(:func:`~hybrid.ledger.totals.reason_label`) and the daemon that wrote the records
(``instance``, ``''`` for records older than version 6).  Each row holds the number of
records, their token sums (prompt, completion, cache read, cache write), cloud spend and cost
avoided (unpriced costs add nothing), and latency and TTFT histograms with fixed buckets
(:mod:`hybrid.ledger.histogram`: one column per bucket, plus the largest value).

The rollups always equal a fold of the records they cover:

- :meth:`~hybrid.ledger.store.LedgerStore.append` adds each batch's fold in the transaction
  that inserts the records, so a batch the writer commits, or one replayed from the journal,
  lands in both or in neither;
- pruning deletes the rollups of the hours and days it empties, re-folds the hour it cuts
  through from the records left in it and the day it cuts through from that day's hours;
- the migration to version 6 folds the records already there, once (version 5's rollups,
  without instances, are not kept).

A query over a window (:mod:`hybrid.ledger.rollup_query`) reads whole days from the day rows,
whole hours at either end from the hour rows, and the part of an hour at either end from the
records (at most an hour of them at each end), so counts and sums stay exact for any window and
a query reads at most 46 hours and one row per day of rollups.  Totals that need no percentiles
leave the histograms unread.

The SQL is standard (``INSERT ... ON CONFLICT``, ``FILTER``, ``CASE``) and runs on SQLite and
PostgreSQL alike; the hour of a time, the first reason and the column types come from the
database's :class:`~hybrid.ledger.dialect.Dialect`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from hybrid.ledger.dialect import Database, Dialect
from hybrid.ledger.histogram import BUCKETS, Histogram, bucket, bucket_sql, histogram_of
from hybrid.ledger.record import NOT_REQUESTS, LedgerRecord
from hybrid.ledger.totals import reason_label

HOUR_S = 3_600
DAY_S = 86_400

KEYS: tuple[str, ...] = (
    "span",
    "start",
    "model",
    "route",
    "provider",
    "status",
    "decided",
    "leg",
    "reason",
    "instance",
)
"""The primary key of a rollup row."""
SUMS: tuple[str, ...] = (
    "records",
    "prompt_tokens",
    "completion_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cloud_cost_usd",
    "cost_avoided_usd",
)
LATENCY_COLUMNS = tuple(f"latency_b{index}" for index in range(BUCKETS))
TTFT_COLUMNS = tuple(f"ttft_b{index}" for index in range(BUCKETS))
MAXIMA: tuple[str, ...] = ("latency_max", "ttft_max")
VALUES: tuple[str, ...] = (*SUMS, *MAXIMA, *LATENCY_COLUMNS, *TTFT_COLUMNS)
"""The value columns of a rollup row, in the order rows hold them."""

_SUM_SQL = {
    "records": "COUNT(*)",
    "prompt_tokens": "COALESCE(SUM(prompt_tokens), 0)",
    "completion_tokens": "COALESCE(SUM(completion_tokens), 0)",
    "cache_read_tokens": "COALESCE(SUM(cache_read_tokens), 0)",
    "cache_write_tokens": "COALESCE(SUM(cache_write_tokens), 0)",
    "cloud_cost_usd": "COALESCE(SUM(cloud_cost_usd), 0.0)",
    "cost_avoided_usd": "COALESCE(SUM(cost_avoided_usd), 0.0)",
}


def _larger_sql(column: str) -> str:
    # Standard SQL for max(a, b) with NULLs (SQLite's max() and PostgreSQL's GREATEST differ).
    return (
        f"{column} = CASE WHEN rollups.{column} IS NULL OR excluded.{column} > rollups.{column} "
        f"THEN excluded.{column} ELSE rollups.{column} END"
    )


_UPSERT = (
    f"INSERT INTO rollups ({', '.join((*KEYS, *VALUES))}) "
    f"VALUES ({', '.join('?' * (len(KEYS) + len(VALUES)))}) "
    f"ON CONFLICT ({', '.join(KEYS)}) DO UPDATE SET "
    + ", ".join(
        _larger_sql(column)
        if column in MAXIMA
        else f"{column} = rollups.{column} + excluded.{column}"
        for column in VALUES
    )
)


@functools.cache
def _fold(dialect: Dialect) -> str:
    """The records of a window grouped in SQL by rollup key and latency and TTFT bucket (one
    CASE each per row; summing a column per bucket in SQL costs five times more), with the
    reason not yet cut to its label; :func:`fold_sql` adds the buckets up into rollup rows."""
    return f"""
    SELECT {HOUR_S} AS span, {dialect.hour_of_time} AS start, model, route, provider, status,
        COALESCE(decided, '') AS decided, COALESCE(leg, '') AS leg,
        {dialect.first_reason} AS reason, instance,
        {bucket_sql("latency_s")} AS lb, {bucket_sql("ttft_s")} AS tb,
        {", ".join(_SUM_SQL[column] for column in SUMS)},
        MAX(latency_s), MAX(ttft_s)
    FROM requests {{where}}
    GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12
"""


Key = tuple[Any, ...]
"""A rollup row's key, in the order of :data:`KEYS`."""


@dataclass(frozen=True)
class Rollup:
    """The fold of records that share a route, a status and a leg.

    Attributes:
        route: Their route.
        status: Their status.
        leg: Their leg, None for none.
        records: How many records.
        prompt_tokens: Input tokens.
        completion_tokens: Output tokens.
        cache_read_tokens: Prompt tokens read from a cache.
        cache_write_tokens: Prompt tokens written to the provider's cache.
        cloud_cost_usd: Cloud spend (priced records).
        cost_avoided_usd: Cost avoided (priced records).
        latency: Their latencies.
        ttft: Their times to first token (those that had one).
    """

    route: str
    status: str
    leg: str | None
    records: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cloud_cost_usd: float = 0.0
    cost_avoided_usd: float = 0.0
    latency: Histogram = field(default_factory=Histogram)
    ttft: Histogram = field(default_factory=Histogram)

    @property
    def is_request(self) -> bool:
        """Whether these records are requests (see :attr:`LedgerRecord.is_request`)."""
        return self.leg not in NOT_REQUESTS

    @classmethod
    def from_values(cls, route: str, status: str, leg: str, values: Sequence[Any]) -> Rollup:
        """Build from a row's values, in the order of :data:`VALUES` (``''`` is no leg)."""
        sums = [value or 0 for value in values[: len(SUMS)]]
        start = len(SUMS) + len(MAXIMA)
        if len(values) == len(SUMS):  # totals only: no histograms read
            values = [*values, None, None, *([0] * (2 * BUCKETS))]
        return cls(
            route=route,
            status=status,
            leg=leg or None,
            records=int(sums[0]),
            prompt_tokens=int(sums[1]),
            completion_tokens=int(sums[2]),
            cache_read_tokens=int(sums[3]),
            cache_write_tokens=int(sums[4]),
            cloud_cost_usd=float(sums[5]),
            cost_avoided_usd=float(sums[6]),
            latency=histogram_of(values[start : start + BUCKETS], values[len(SUMS)]),
            ttft=histogram_of(values[start + BUCKETS :], values[len(SUMS) + 1]),
        )


Cell = tuple[str, Rollup]
"""A rollup and the group it belongs to (``''`` when ungrouped)."""


def key_of(record: LedgerRecord) -> Key:
    """The key of the rollup row a record is folded into."""
    return (
        HOUR_S,
        math.floor(record.time / HOUR_S) * HOUR_S,
        record.model,
        record.route,
        record.provider,
        record.status,
        record.decided or "",
        record.leg or "",
        reason_label(record.reasons[0] if record.reasons else None),
        record.instance,
    )


def fold(records: Iterable[LedgerRecord]) -> dict[Key, list[Any]]:
    """Fold records into rollup rows: key -> values in the order of :data:`VALUES`."""
    rows: dict[Key, list[Any]] = {}
    start = len(SUMS) + len(MAXIMA)
    for record in records:
        key = key_of(record)
        row: list[Any] | None = rows.get(key)
        if row is None:
            row = rows[key] = [0, 0, 0, 0, 0, 0.0, 0.0, None, None, *([0] * (2 * BUCKETS))]
        row[0] += 1
        row[1] += record.prompt_tokens
        row[2] += record.completion_tokens
        row[3] += record.cache_read_tokens
        row[4] += record.cache_write_tokens
        row[5] += record.cloud_cost_usd or 0.0
        row[6] += record.cost_avoided_usd or 0.0
        _merge_max(row, 7, record.latency_s)
        row[start + bucket(record.latency_s)] += 1
        if record.ttft_s is not None:
            _merge_max(row, 8, record.ttft_s)
            row[start + BUCKETS + bucket(record.ttft_s)] += 1
    return rows


def fold_sql(conn: Database, since: float | None, until: float | None) -> dict[Key, list[Any]]:
    """Fold the records of ``since <= time < until`` in SQL, as :func:`fold` does in memory.

    Args:
        conn: The ledger.
        since: Start of the window, None for the beginning.
        until: End of the window, None for no end.
    """
    clauses, params = [], []
    if since is not None:
        clauses.append("time >= ?")
        params.append(since)
    if until is not None:
        clauses.append("time < ?")
        params.append(until)
    where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
    rows: dict[Key, list[Any]] = {}
    labels: dict[str | None, str] = {}
    start = len(SUMS) + len(MAXIMA)
    for row in conn.execute(_fold(conn.dialect).format(where=where), params):
        label = labels.get(row[8])
        if label is None:
            label = labels[row[8]] = reason_label(row[8])
        values: list[Any] = [*row[12:], *([0] * (2 * BUCKETS))]
        values[start + row[10]] = row[12]
        if row[11] is not None:
            values[start + BUCKETS + row[11]] = row[12]
        merge(rows, (*row[:8], label, row[9]), values)
    return rows


def merge(rows: dict[Key, list[Any]], key: Key, values: list[Any]) -> None:
    """Add a row's values to the row of the same key (sums add, maxima take the larger)."""
    held = rows.get(key)
    if held is None:
        rows[key] = values
        return
    for index, value in enumerate(values):
        if index in (7, 8):
            _merge_max(held, index, value)
        else:
            held[index] += value


def with_days(rows: dict[Key, list[Any]]) -> dict[Key, list[Any]]:
    """Hour rows plus the day rows they add up to."""
    days: dict[Key, list[Any]] = {}
    for key, values in rows.items():
        if key[0] == HOUR_S:
            merge(days, (DAY_S, key[1] - key[1] % DAY_S, *key[2:]), list(values))
    return {**rows, **days}


def upsert(conn: Database, rows: dict[Key, list[Any]]) -> None:
    """Add rollup rows to the table (inside the caller's transaction)."""
    conn.executemany(_UPSERT, [(*key, *values) for key, values in rows.items()])


def build(conn: Database) -> None:
    """Fold every record into the (empty) rollups: the data step of migration 6."""
    upsert(conn, with_days(fold_sql(conn, None, None)))


def prune(conn: Database, older_than: float) -> None:
    """Drop the rollups of records pruned before ``older_than`` (records already deleted).

    The hours and days wholly before it go; the hour it falls in is folded again from its
    records, and the day it falls in from its hours.
    """
    if not math.isfinite(older_than):
        if older_than > 0:
            conn.execute("DELETE FROM rollups")
        return
    hour = math.floor(older_than / HOUR_S) * HOUR_S
    day = hour - hour % DAY_S
    conn.execute("DELETE FROM rollups WHERE span = ? AND start < ?", (HOUR_S, hour))
    conn.execute("DELETE FROM rollups WHERE span = ? AND start < ?", (DAY_S, day))
    if hour < older_than:
        conn.execute("DELETE FROM rollups WHERE span = ? AND start = ?", (HOUR_S, hour))
        upsert(conn, fold_sql(conn, hour, hour + HOUR_S))
    if day < older_than:
        conn.execute("DELETE FROM rollups WHERE span = ? AND start = ?", (DAY_S, day))
        conn.execute(_DAY_FROM_HOURS, (DAY_S, day, HOUR_S, day, day + DAY_S))


_DAY_FROM_HOURS = (
    f"INSERT INTO rollups ({', '.join((*KEYS, *VALUES))}) "
    f"SELECT ?, ?, {', '.join(KEYS[2:])}, "
    + ", ".join(f"MAX({c})" if c in MAXIMA else f"SUM({c})" for c in VALUES)
    + f" FROM rollups WHERE span = ? AND start >= ? AND start < ? GROUP BY {', '.join(KEYS[2:])}"
)


def _merge_max(row: list[Any], index: int, value: float | None) -> None:
    if value is not None and (row[index] is None or value > row[index]):
        row[index] = value
