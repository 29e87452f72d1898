"""Budget lines, and the holds and refusals of reservations against them.

A cloud request counts towards four lines: this UTC day and this month, in total and for its
provider (:func:`lines_for`).  Each line is a ``scope`` (``total`` or ``provider:<name>``) and
a ``period`` (``day:YYYY-MM-DD`` or ``month:YYYY-MM``), with the cap the settings give it.
These are plain values, without a database: :mod:`hybrid.ledger.pg_budget` reserves against
them in PostgreSQL.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hybrid.settings.ledger import BudgetSettings


@dataclass(frozen=True, order=True)
class Line:
    """One budget line a request counts towards, and its cap.

    Attributes:
        scope: ``total`` or ``provider:<name>``.
        period: ``day:YYYY-MM-DD`` or ``month:YYYY-MM`` (UTC).
        cap_usd: The most this line may spend; None: no cap (the spend is still counted).
    """

    scope: str
    period: str
    cap_usd: float | None = None


@dataclass(frozen=True)
class Hold:
    """An amount reserved on every line of a request, until settled or released.

    Attributes:
        id: The reservation's id.
        amount_usd: The amount held on each line.
        lines: The lines it holds on.
    """

    id: str
    amount_usd: float
    lines: tuple[Line, ...]


@dataclass(frozen=True)
class Refusal:
    """A reservation that did not fit: the first line whose cap it would pass.

    Attributes:
        line: That line (its cap is set).
        spent_usd: The line's spend when it was checked.
        reserved_usd: What other requests held on it then.
        amount_usd: The amount asked for.
    """

    line: Line
    spent_usd: float
    reserved_usd: float
    amount_usd: float


@dataclass(frozen=True)
class LineSpend:
    """A budget line's state.

    Attributes:
        scope: ``total`` or ``provider:<name>``.
        period: ``day:YYYY-MM-DD`` or ``month:YYYY-MM``.
        spent_usd: Settled spend.
        reserved_usd: Held by requests not yet settled.
    """

    scope: str
    period: str
    spent_usd: float
    reserved_usd: float


def day_period(now: datetime) -> str:
    """The day period of a moment, ``day:YYYY-MM-DD`` in UTC (``now`` must be aware)."""
    return f"day:{now.astimezone(UTC):%Y-%m-%d}"


def month_period(now: datetime) -> str:
    """The month period of a moment, ``month:YYYY-MM`` in UTC (``now`` must be aware)."""
    return f"month:{now.astimezone(UTC):%Y-%m}"


def lines_for(budget: BudgetSettings, provider: str, now: datetime) -> tuple[Line, ...]:
    """The four lines a request to ``provider`` counts towards, with their caps.

    Args:
        budget: The ``[budget]`` settings.
        provider: The provider's name (``openai``).
        now: When the request starts (aware).

    Returns:
        This day and month in total (``budget.daily_usd``, ``budget.monthly_usd``) and for the
        provider (``budget.per_provider``); a line without a cap has ``cap_usd=None``.
    """
    own = budget.per_provider.get(provider, {})
    day, month = day_period(now), month_period(now)
    return (
        Line("total", day, budget.daily_usd),
        Line("total", month, budget.monthly_usd),
        Line(f"provider:{provider}", day, own.get("daily_usd")),
        Line(f"provider:{provider}", month, own.get("monthly_usd")),
    )
