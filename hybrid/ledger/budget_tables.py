"""The shared budget's tables in PostgreSQL: their schema, and every statement that reads or
changes them.

:class:`~hybrid.ledger.pg_budget.SharedBudget` runs these statements in its transactions; the
lock order, the retries and the connection are its.

Tables (part ``budget`` in ``hybrid_schema``)::

    hybrid_budget_lines   (scope, period) -> spent_usd, reserved_usd
    hybrid_budget_holds   (reservation_id, scope, period) -> amount_usd, instance, expires_at
    hybrid_budget_carried (source, scope, period) -> spent_usd   (see budget_carry)

``scope`` is ``total`` or ``provider:<name>``; ``period`` is ``day:YYYY-MM-DD`` or
``month:YYYY-MM`` (UTC).  Every line is kept, capped or not, so a cap set later starts from
the period's real spend.  Amounts are ``NUMERIC``, written from floats by :func:`to_decimal`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from decimal import Decimal

from hybrid.ledger import budget_carry
from hybrid.ledger.budget_lines import Line, Refusal
from hybrid.ledger.pg import Connection

SCHEMA_PART = "budget"
"""The budget tables' part name in ``hybrid_schema``."""

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """
        CREATE TABLE hybrid_budget_lines (
            scope TEXT NOT NULL,
            period TEXT NOT NULL,
            spent_usd NUMERIC NOT NULL DEFAULT 0,
            reserved_usd NUMERIC NOT NULL DEFAULT 0,
            updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            PRIMARY KEY (scope, period)
        )
        """,
        """
        CREATE TABLE hybrid_budget_holds (
            reservation_id TEXT NOT NULL,
            scope TEXT NOT NULL,
            period TEXT NOT NULL,
            amount_usd NUMERIC NOT NULL,
            instance TEXT NOT NULL,
            created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            expires_at TIMESTAMPTZ NOT NULL,
            PRIMARY KEY (reservation_id, scope, period)
        )
        """,
        "CREATE INDEX hybrid_budget_holds_expires ON hybrid_budget_holds (expires_at)",
        "CREATE INDEX hybrid_budget_holds_instance ON hybrid_budget_holds (instance)",
    ),
    budget_carry.MIGRATION,
)

RESERVE = """
    INSERT INTO hybrid_budget_lines AS l (scope, period, reserved_usd)
    SELECT %(scope)s, %(period)s, %(amount)s
    WHERE %(cap)s::numeric IS NULL OR %(amount)s <= %(cap)s::numeric
    ON CONFLICT (scope, period) DO UPDATE
    SET reserved_usd = l.reserved_usd + EXCLUDED.reserved_usd, updated_at = now()
    WHERE %(cap)s::numeric IS NULL
        OR l.spent_usd + l.reserved_usd + EXCLUDED.reserved_usd <= %(cap)s::numeric
    RETURNING l.spent_usd, l.reserved_usd
"""
"""Hold an amount on one line if its cap leaves room; no row returned when it does not."""

HOLD = """
    INSERT INTO hybrid_budget_holds
        (reservation_id, scope, period, amount_usd, instance, expires_at)
    VALUES (%s, %s, %s, %s, %s, now() + make_interval(secs => %s))
"""
"""Record one line's hold: reservation id, scope, period, amount, instance, seconds it lasts."""

APPLY = """
    INSERT INTO hybrid_budget_lines AS l (scope, period, spent_usd, reserved_usd)
    VALUES (%(scope)s, %(period)s, %(spent)s, 0)
    ON CONFLICT (scope, period) DO UPDATE
    SET spent_usd = l.spent_usd + EXCLUDED.spent_usd,
        reserved_usd = greatest(l.reserved_usd - %(freed)s, 0), updated_at = now()
"""
"""Count ``spent`` on one line and free ``freed`` of what it holds."""

TAKE_HOLD = (
    "DELETE FROM hybrid_budget_holds WHERE reservation_id = %s RETURNING scope, period, amount_usd"
)
"""Delete one reservation's holds, returning what each line held."""

EXPIRED = (
    "DELETE FROM hybrid_budget_holds WHERE expires_at <= now() "
    "RETURNING reservation_id, scope, period, amount_usd"
)
"""Delete the expired holds, returning them."""

OF_INSTANCE = (
    "DELETE FROM hybrid_budget_holds WHERE instance = %s "
    "RETURNING reservation_id, scope, period, amount_usd"
)
"""Delete an instance's holds, returning them."""

RENEW = (
    "UPDATE hybrid_budget_holds "
    "SET expires_at = now() + make_interval(secs => %s) "
    "WHERE reservation_id = ANY(%s) RETURNING reservation_id"
)
"""Push back the expiry of the holds of the reservations given, to that many seconds from now."""

COUNT_RESERVATIONS = "SELECT count(DISTINCT reservation_id) FROM hybrid_budget_holds"
"""How many reservations hold money, over every daemon."""

READ_LINES = (
    "SELECT scope, period, spent_usd, reserved_usd FROM hybrid_budget_lines "
    "WHERE (scope, period) IN (SELECT * FROM unnest(%s::text[], %s::text[]))"
)
"""The lines among the (scopes, periods) given that exist."""


def refusal(conn: Connection, line: Line, amount_usd: float) -> Refusal:
    """The refusal of ``amount_usd`` on a line that had no room: the line's spend and holds."""
    row = conn.execute(
        "SELECT spent_usd, reserved_usd FROM hybrid_budget_lines WHERE scope = %s AND period = %s",
        (line.scope, line.period),
    ).fetchone()
    spent, reserved = (float(row[0]), float(row[1])) if row is not None else (0.0, 0.0)
    return Refusal(line=line, spent_usd=spent, reserved_usd=reserved, amount_usd=amount_usd)


def free(
    conn: Connection, held: Iterable[tuple[str, str, Decimal]], *, as_spent: bool = False
) -> None:
    """Take held amounts off their lines, in (scope, period) order (the lock order), counting
    them as spent with ``as_spent``."""
    totals: dict[tuple[str, str], Decimal] = {}
    for scope, period, amount in held:
        totals[scope, period] = totals.get((scope, period), Decimal(0)) + amount
    for (scope, period), amount in sorted(totals.items()):
        spent = amount if as_spent else Decimal(0)
        conn.execute(APPLY, {"scope": scope, "period": period, "spent": spent, "freed": amount})


def amount(value: float, name: str) -> Decimal:
    """An amount of USD as ``NUMERIC``.

    Raises:
        ValueError: ``value`` is negative or not finite (``name`` says which argument).
    """
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite amount of 0 or more, not {value}")
    return to_decimal(value)


def to_decimal(value: float) -> Decimal:
    """A float as the ``Decimal`` it reads as: repr() is the shortest text that reads back as
    the same float, so 0.1 stays 0.1."""
    return Decimal(repr(float(value)))
