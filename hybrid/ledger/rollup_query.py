"""Reading the rollups of :mod:`hybrid.ledger.rollup`: a window's rows with their groups, and
the totals and latency percentiles every stats query reports from them.

A window is read in pieces (:func:`pieces`): whole days from the day rows, whole hours from the
hour rows, and the part of an hour at either end from the records, folded in SQL as the
rollups were, so counts and sums stay exact for any window.  Totals that need no percentiles
leave the histograms unread.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from hybrid.ledger.dialect import Database
from hybrid.ledger.histogram import Histogram
from hybrid.ledger.record import LedgerRecord
from hybrid.ledger.rollup import (
    DAY_S,
    HOUR_S,
    LATENCY_COLUMNS,
    MAXIMA,
    SUMS,
    TTFT_COLUMNS,
    Cell,
    Key,
    Rollup,
    fold,
    fold_sql,
)
from hybrid.ledger.totals import NO_DECIDER, GroupBy, Latency, Totals, day_label, order_groups

_GROUP_SQL: dict[str, str] = {
    "route": "route",
    "model": "model",
    "reason": "reason",
    "decided": "decided",
    "provider": "provider",
    "instance": "instance",
    "day": f"start - start % {DAY_S}",
    "": "''",
}


def cells(
    conn: Database,
    by: GroupBy | str,
    since: float | None,
    until: float | None,
    *,
    histograms: bool = True,
) -> list[Cell]:
    """The rollups of a window, each with its group: whole days from the day rows, whole hours
    from the hour rows, the parts of an hour at the ends from the records.

    Args:
        conn: The ledger.
        by: A :data:`~hybrid.ledger.totals.GroupBy`, ``provider``, or ``''`` for no groups.
        since: Start of the window (inclusive), None for the beginning.
        until: End of the window (exclusive), None for no end.
        histograms: Read the latency histograms too (False leaves them empty: totals only).
    """
    found: list[Cell] = []
    for kind, low, high in pieces(since, until):
        if kind == 0:
            found += _grouped_rows(fold_sql(conn, low, high), by)
        else:
            found += _table_cells(conn, by, kind, low, high, histograms)
    return found


def pieces(since: float | None, until: float | None) -> list[tuple[int, Any, Any]]:
    """Split a window into ``(span, start, end)`` pieces: span 0 for records, else rollup rows
    of that span starting in ``[start, end)`` (None: unbounded)."""
    hour_in = None if since is None else math.ceil(since / HOUR_S) * HOUR_S
    hour_out = None if until is None else math.floor(until / HOUR_S) * HOUR_S
    if hour_in is not None and hour_out is not None and hour_in >= hour_out:
        return [(0, since, until)]
    day_in = None if hour_in is None else -(-hour_in // DAY_S) * DAY_S
    day_out = None if hour_out is None else hour_out - hour_out % DAY_S
    found: list[tuple[int, Any, Any]] = []
    if since is not None and hour_in is not None and since < hour_in:
        found.append((0, since, hour_in))
    if day_in is not None and day_out is not None and day_in >= day_out:
        found.append((HOUR_S, hour_in, hour_out))
    else:
        if hour_in is not None and day_in is not None and hour_in < day_in:
            found.append((HOUR_S, hour_in, day_in))
        found.append((DAY_S, day_in, day_out))
        if hour_out is not None and day_out is not None and day_out < hour_out:
            found.append((HOUR_S, day_out, hour_out))
    if until is not None and hour_out is not None and hour_out < until:
        found.append((0, hour_out, until))
    return found


def cells_of(records: Iterable[LedgerRecord], by: GroupBy | str) -> list[Cell]:
    """The rollups of records folded in memory, each with its group (as :func:`cells`)."""
    return _grouped_rows(fold(records), by)


def summary(found: Iterable[Cell], by: GroupBy) -> list[tuple[str, Totals, Latency]]:
    """One ``(key, totals, latency)`` per group, ordered as
    :func:`~hybrid.ledger.totals.order_groups` does."""
    groups: dict[str, list[Rollup]] = {}
    for group, rollup in found:
        groups.setdefault(group, []).append(rollup)
    return order_groups([(key, totals(items), latency(items)) for key, items in groups.items()], by)


def totals(rollups: Iterable[Rollup]) -> Totals:
    """Totals of rollups, by the definitions of :mod:`hybrid.ledger.totals`."""
    return Totals.fold((rollup, rollup.records) for rollup in rollups)


def latency(rollups: Iterable[Rollup]) -> Latency:
    """Latency percentiles of the requests that finished ``ok``, from the histograms."""
    answered, ttft = Histogram(), Histogram()
    for rollup in rollups:
        if rollup.is_request and rollup.status == "ok":
            answered, ttft = answered.plus(rollup.latency), ttft.plus(rollup.ttft)
    return Latency.from_histograms(answered, ttft)


def _table_cells(
    conn: Database,
    by: GroupBy | str,
    span: int,
    first: int | None,
    last: int | None,
    histograms: bool,
) -> list[Cell]:
    clauses, params = ["span = ?"], [span]
    if first is not None:
        clauses.append("start >= ?")
        params.append(first)
    if last is not None:
        clauses.append("start < ?")
        params.append(last)
    columns = [f"SUM({column})" for column in SUMS]
    if histograms:
        columns += [f"MAX({column})" for column in MAXIMA]
        columns += [f"SUM({column})" for column in (*LATENCY_COLUMNS, *TTFT_COLUMNS)]
    sql = (
        f"SELECT {_GROUP_SQL[by]} AS k, route, status, leg, {', '.join(columns)} "
        f"FROM rollups WHERE {' AND '.join(clauses)} GROUP BY 1, 2, 3, 4"
    )
    return [
        (_label(by, row[0]), Rollup.from_values(row[1], row[2], row[3], row[4:]))
        for row in conn.execute(sql, params)
    ]


def _grouped_rows(rows: dict[Key, list[Any]], by: GroupBy | str) -> list[Cell]:
    position = {"day": 1, "model": 2, "route": 3, "provider": 4, "decided": 6, "reason": 8}
    position["instance"] = 9
    found: list[Cell] = []
    for key, values in rows.items():
        raw: Any = "" if by == "" else key[position[by]]
        if by == "day":
            raw -= raw % DAY_S
        found.append((_label(by, raw), Rollup.from_values(key[3], key[5], key[7], values)))
    return found


def _label(by: GroupBy | str, raw: Any) -> str:
    if by == "day":
        return day_label(float(raw))
    if by == "decided":
        return str(raw) or NO_DECIDER
    return str(raw)
