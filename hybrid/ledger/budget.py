"""Cloud spend caps: today's and this month's spend (UTC), against the ``[budget]`` settings.

The spend is kept in memory, seeded from the ledger at start and updated with every record, so
that routing can ask "is this provider capped?" without a query.  A cap is reached when the
spend is at or above it (a cap of 0 keeps requests off the cloud); past ``warn_percent`` of a
cap the state is ``warning``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from hybrid.settings.ledger import BudgetSettings

BudgetState = Literal["ok", "warning", "capped"]
_DAY_S = 86_400.0
_SEVERITY: dict[BudgetState, int] = {"ok": 0, "warning": 1, "capped": 2}


class SpendSource(Protocol):
    """Where past spend is read from (a :class:`~hybrid.ledger.store.LedgerStore`)."""

    def spend_by_provider(self, since: float) -> dict[str, float]:
        """Return the cloud spend of each provider since a Unix time."""
        ...


@dataclass(frozen=True)
class SpendSeed:
    """Spend already recorded at some moment.

    Attributes:
        at: The moment (Unix time); its UTC day and month are the ones the spend belongs to.
        daily: Provider to USD spent on that day.
        monthly: Provider to USD spent in that month.
    """

    at: float
    daily: Mapping[str, float] = field(default_factory=dict)
    monthly: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def from_store(cls, source: SpendSource, at: float) -> SpendSeed:
        """Read the day's and the month's spend from the ledger.

        Args:
            source: The ledger.
            at: Now, as Unix time.
        """
        return cls(
            at=at,
            daily=source.spend_by_provider(day_start(at)),
            monthly=source.spend_by_provider(month_start(at)),
        )


def day_start(at: float) -> float:
    """Return the Unix time of the start of ``at``'s UTC day."""
    moment = datetime.fromtimestamp(at, tz=UTC)
    return moment.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()


def month_start(at: float) -> float:
    """Return the Unix time of the start of ``at``'s UTC month."""
    moment = datetime.fromtimestamp(at, tz=UTC)
    return moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0).timestamp()


class Budget:
    """Today's and this month's cloud spend, and the state of each cap."""

    def __init__(
        self,
        settings: BudgetSettings,
        spend_seed: SpendSeed,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Start from the spend already recorded.

        Args:
            settings: The caps.
            spend_seed: Spend so far (:meth:`SpendSeed.from_store`).
            clock: Unix time; a new UTC day (month) starts its spend at 0.
        """
        self._settings = settings
        self._clock = clock
        self._day = day_start(spend_seed.at)
        self._month = month_start(spend_seed.at)
        self._daily = dict(spend_seed.daily)
        self._monthly = dict(spend_seed.monthly)

    def add(self, provider: str, usd: float, at: float) -> None:
        """Count a cloud cost.

        Args:
            provider: Who charged it.
            usd: How much (a record's ``cloud_cost_usd``; nothing is counted for 0).
            at: When (the record's time); spend from before the current day (month) only
                counts toward the periods it belongs to.
        """
        if usd <= 0:
            return
        self._roll(at)
        if day_start(at) == self._day:
            self._daily[provider] = self._daily.get(provider, 0.0) + usd
        if month_start(at) == self._month:
            self._monthly[provider] = self._monthly.get(provider, 0.0) + usd

    def spend(self, provider: str | None = None) -> tuple[float, float]:
        """Return ``(today, this month)`` in USD, of one provider or all of them."""
        self._roll(self._clock())
        if provider is None:
            return sum(self._daily.values()), sum(self._monthly.values())
        return self._daily.get(provider, 0.0), self._monthly.get(provider, 0.0)

    def state(self, provider: str | None = None) -> BudgetState:
        """Return the budget's state.

        Args:
            provider: None for the overall caps; a provider for the worse of the overall caps
                and that provider's own.
        """
        states = [state for state, _ in self._checks(provider)]
        return max(states, key=_SEVERITY.__getitem__, default="ok")

    def capped(self, provider: str) -> str | None:
        """Return why a provider may not be sent requests, or None when it may.

        Returns:
            ``budget:daily_cap`` or ``budget:monthly_cap`` (an overall cap),
            ``budget:<provider>:daily_cap`` or ``budget:<provider>:monthly_cap`` (its own), or
            None.
        """
        settings = self._settings
        if settings.daily_usd is None and settings.monthly_usd is None:
            if provider not in settings.per_provider:
                return None  # no cap applies: asked on every cloud request, so answer fast
        for state, reason in self._checks(provider):
            if state == "capped":
                return reason
        return None

    def to_dict(self) -> dict[str, Any]:
        """Return the ``Budget`` JSON object of ``docs/events.md`` (the overall caps)."""
        daily, monthly = self.spend()
        return {
            "daily_spend_usd": daily,
            "daily_cap_usd": self._settings.daily_usd,
            "monthly_spend_usd": monthly,
            "monthly_cap_usd": self._settings.monthly_usd,
            "state": self.state(),
        }

    def _checks(self, provider: str | None) -> list[tuple[BudgetState, str]]:
        """Each cap that applies, with its state and reason code, daily before monthly."""
        daily, monthly = self.spend()
        checks = [
            (self._state(daily, self._settings.daily_usd), "budget:daily_cap"),
            (self._state(monthly, self._settings.monthly_usd), "budget:monthly_cap"),
        ]
        caps = self._settings.per_provider.get(provider, {}) if provider is not None else {}
        if caps:
            own_daily, own_monthly = self.spend(provider)
            checks += [
                (self._state(own_daily, caps.get("daily_usd")), f"budget:{provider}:daily_cap"),
                (
                    self._state(own_monthly, caps.get("monthly_usd")),
                    f"budget:{provider}:monthly_cap",
                ),
            ]
        return checks

    def _state(self, spent: float, cap: float | None) -> BudgetState:
        if cap is None:
            return "ok"
        if spent >= cap:
            return "capped"
        if spent >= cap * self._settings.warn_percent / 100:
            return "warning"
        return "ok"

    def _roll(self, now: float) -> None:
        """Start a new day's (month's) spend at 0 once ``now`` is past the current one."""
        if now < self._day + _DAY_S:
            return  # the same UTC day, hence the same month
        day, month = day_start(now), month_start(now)
        if day > self._day:
            self._day = day
            self._daily.clear()
        if month > self._month:
            self._month = month
            self._monthly.clear()
