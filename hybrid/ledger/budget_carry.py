"""The spend a daemon's SQLite ledger carries into the shared budget when ``ledger.url`` is set.

A daemon that ran on its own SQLite ledger (``ledger.path``) and spent money today, then is
restarted with ``ledger.url``, would otherwise start the fleet's lines without that spend: the
records stay in the file (nothing copies them into PostgreSQL) and the shared budget never
reads records anyway, so the day's and the month's caps could be passed by up to a whole cap.
So at start :class:`~hybrid.ledger.fleet_budget.FleetBudget` reads today's and this month's
spend from the file (:func:`read_sqlite_spend`, the same sums a SQLite daemon seeds its budget
with) and counts it on the shared lines (:func:`count_once`).

**Exactly once.**  PostgreSQL keeps, per source (the file: :func:`source_of`) and line, what
was counted already (``hybrid_budget_carried``), and one transaction counts only what the file
holds beyond it, and records it.  Restarts, and several daemons starting together with the same
file, count it once: a second transaction waits on the first's row and then finds nothing left
to count.  Spend the file gains later (the daemon run on SQLite again the same day) counts at
the next start with ``ledger.url``.

**Overcounting over undercounting.**  A file is known by the daemon's ``ledger.instance``, its
real path and its inode: a file replaced by a copy (a restore), moved, or read under another
instance name counts again, which may refuse requests early but never lets a cap pass.  Two
different files count once together only under the same instance name, path and inode: never
two files of one machine, and files of two machines only by that coincidence.  What is left
uncounted, and cannot be excluded here:

- spend a SQLite daemon still running on the same file writes after it was read (counted at
  the next start with ``ledger.url``);
- a file that cannot be read (broken, or from a newer hybrid): a warning says so;
- records a SQLite daemon killed before it committed them (its last quarter second or so): they
  wait in the journal, which the shared ledger's writer syncs into PostgreSQL, unread by the
  budget.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

from hybrid.errors import HybridError
from hybrid.ledger.budget import SpendSeed
from hybrid.ledger.budget_lines import day_period, month_period
from hybrid.ledger.pg import Connection
from hybrid.ledger.store import LedgerStore

log = logging.getLogger("hybrid.ledger")

MIGRATION: tuple[str, ...] = (
    """
    CREATE TABLE hybrid_budget_carried (
        source TEXT NOT NULL,
        scope TEXT NOT NULL,
        period TEXT NOT NULL,
        spent_usd NUMERIC NOT NULL DEFAULT 0,
        carried_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        PRIMARY KEY (source, scope, period)
    )
    """,
)
"""The budget part's migration 2: what each source has counted on each line."""

LineKey = tuple[str, str]
"""A budget line's ``(scope, period)``."""

# Sums of floats read twice may differ in their last bits: compare them at a billionth of a USD.
_QUANTUM = Decimal("1e-9")


@dataclass(frozen=True)
class CarriedSpend:
    """Spend a SQLite ledger holds in the current day and month, by budget line.

    Attributes:
        source: The file's identity (:func:`source_of`).
        path: The file, for the log.
        day: The day period it was read for (``day:YYYY-MM-DD``).
        month: The month period (``month:YYYY-MM``).
        amounts: ``(scope, period)`` to USD, for the lines with spend: ``total`` and each
            provider's, in the day and in the month.
    """

    source: str
    path: Path
    day: str
    month: str
    amounts: Mapping[LineKey, float]


def source_of(path: Path, instance: str) -> str:
    """The identity a SQLite ledger's spend is counted under: ``sqlite:<instance>:<real
    path>:<inode>``.

    Raises:
        OSError: The file cannot be examined.
    """
    real = path.resolve()
    return f"sqlite:{instance}:{real}:{os.stat(real).st_ino}"


def read_sqlite_spend(path: Path, instance: str, at: float) -> CarriedSpend | None:
    """Read the day's and the month's cloud spend of ``at`` from a SQLite ledger.

    The file is neither created nor written, except that one an older hybrid wrote is
    migrated as a SQLite daemon would migrate it.

    Args:
        path: ``ledger.path`` (resolved).
        instance: ``ledger.instance``.
        at: Now (Unix time): picks the UTC day and month.

    Returns:
        The spend, or None when there is no file, it has no spend in the day or the month, or
        it cannot be read (a warning says why).
    """
    if not path.is_file():
        return None
    try:
        source = source_of(path, instance)
        store = LedgerStore.open(path)
        try:
            seed = SpendSeed.from_store(store, at)
        finally:
            store.close()
    except (OSError, HybridError) as exc:
        log.warning(
            "the SQLite ledger %s cannot be read (%s): the shared budget does not count its "
            "spend of today and this month; move it away to silence this",
            path,
            exc,
        )
        return None
    now = datetime.fromtimestamp(at, UTC)
    day, month = day_period(now), month_period(now)
    amounts: dict[LineKey, float] = {}
    for period, spend in ((day, seed.daily), (month, seed.monthly)):
        for provider, usd in spend.items():
            for scope in ("total", f"provider:{provider}"):
                amounts[scope, period] = amounts.get((scope, period), 0.0) + usd
    amounts = {key: usd for key, usd in amounts.items() if usd > 0}
    if not amounts:
        return None
    return CarriedSpend(source, path, day, month, amounts)


def count_once(conn: Connection, carried: CarriedSpend) -> dict[LineKey, float]:
    """Count on the shared lines what ``carried`` holds beyond what its source counted before.

    Runs in one transaction; the rows are locked source row then line, in (scope, period)
    order, the budget's lock order, so it cannot deadlock with reservations or another count.

    Returns:
        ``(scope, period)`` to the USD counted now (only lines that got something).
    """
    counted: dict[LineKey, float] = {}
    with conn.transaction():
        for (scope, period), usd in sorted(carried.amounts.items()):
            key = {"source": carried.source, "scope": scope, "period": period}
            # The row first, so that a count running at once waits for this one's commit.
            conn.execute(
                "INSERT INTO hybrid_budget_carried (source, scope, period) "
                "VALUES (%(source)s, %(scope)s, %(period)s) ON CONFLICT DO NOTHING",
                key,
            )
            row = conn.execute(
                "SELECT spent_usd FROM hybrid_budget_carried "
                "WHERE source = %(source)s AND scope = %(scope)s AND period = %(period)s "
                "FOR UPDATE",
                key,
            ).fetchone()
            before = Decimal(0) if row is None else Decimal(row[0])
            now = Decimal(repr(usd)).quantize(_QUANTUM, ROUND_HALF_EVEN)
            if now <= before:
                continue
            conn.execute(
                "UPDATE hybrid_budget_carried SET spent_usd = %(spent)s, carried_at = now() "
                "WHERE source = %(source)s AND scope = %(scope)s AND period = %(period)s",
                {**key, "spent": now},
            )
            conn.execute(
                "INSERT INTO hybrid_budget_lines AS l (scope, period, spent_usd) "
                "VALUES (%(scope)s, %(period)s, %(spent)s) ON CONFLICT (scope, period) DO UPDATE "
                "SET spent_usd = l.spent_usd + EXCLUDED.spent_usd, updated_at = now()",
                {**key, "spent": now - before},
            )
            counted[scope, period] = float(now - before)
    return counted


def log_counted(carried: CarriedSpend, counted: Mapping[LineKey, float]) -> None:
    """Say what was counted from the file (or that it was counted before)."""
    today = counted.get(("total", carried.day), 0.0)
    month = counted.get(("total", carried.month), 0.0)
    if counted:
        log.warning(
            "the shared budget now counts $%.6f spent today and $%.6f this month recorded in "
            "the SQLite ledger %s (kept before ledger.url was set), once across restarts and "
            "daemons",
            today,
            month,
            carried.path,
        )
    else:
        log.info(
            "the spend of today and this month in the SQLite ledger %s is counted in the "
            "shared budget already",
            carried.path,
        )
