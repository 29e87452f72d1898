"""Cloud spend caps: today's and this month's spend (UTC), against the ``[budget]`` settings.

The spend is kept in memory, seeded from the ledger at start and updated with every record.  A
cap is reached when the spend is at or above it (a cap of 0 keeps requests off the cloud); past
``warn_percent`` of a cap the state is ``warning``.

Money is reserved *before* a cloud request is sent (:class:`BudgetGate`): the request's
estimated cost is set aside when it fits under every cap that applies, counting what is spent
and what the requests in flight have reserved, and the request is refused with the cap's reason
code otherwise.  When the request's record is written its reservation is settled: the estimate
is freed and the real cost spent.  A request that fails before an answer releases it.  So
requests sent at once near a cap cannot together spend past it, as long as none costs more than
its estimate.  :class:`Budget` is the gate of one daemon, in memory; a database shared by several
daemons can implement the same protocol for a fleet.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from hybrid.settings.ledger import BudgetSettings

BudgetState = Literal["ok", "warning", "capped"]
_DAY_S = 86_400.0
_SEVERITY: dict[BudgetState, int] = {"ok": 0, "warning": 1, "capped": 2}


@dataclass(frozen=True)
class Reservation:
    """Money set aside for one cloud call before it is sent.

    Attributes:
        id: Unique among the gate's reservations.
        provider: Who will charge it.
        model: The model called (``provider/model``).
        estimate_usd: How much is set aside (the call's estimated cost).
        at: When it was made (Unix time); its UTC day and month are the ones it counts in, and
            the ones its real cost is spent in.
    """

    id: str
    provider: str
    model: str
    estimate_usd: float
    at: float


class BudgetGate(Protocol):
    """Reserves cloud spend before a request is sent, and settles it once the cost is known.

    :class:`Budget` implements it in memory for one daemon; a database shared by several daemons
    can implement it with one atomic statement per reservation.  Only :meth:`reserve` may wait:
    :meth:`settle`, :meth:`release` and :meth:`add` are called where nothing can be awaited (a
    cancelled task), so an implementation that writes elsewhere queues the write.
    """

    async def reserve(self, provider: str, model: str, estimate_usd: float) -> Reservation | str:
        """Set an estimated cost aside, if it fits under every cap that applies.

        Args:
            provider: Who will charge it.
            model: The model called (``provider/model``).
            estimate_usd: The call's estimated cost (0 for a model without a price).

        Returns:
            The reservation; or, when spent + reserved + the estimate would pass a cap (or
            spent + reserved has reached one), that cap's reason code (``budget:daily_cap``,
            ``budget:openai:monthly_cap``, as :meth:`capped` names them); or
            ``budget:unavailable`` when a shared budget's database cannot be reached (the
            request is then handled as at a cap: it is never sent unreserved).
        """
        ...

    def settle(self, reservation: Reservation, actual_usd: float | None) -> None:
        """Free a reservation and spend the real cost; called once per reservation.

        Args:
            reservation: What :meth:`reserve` returned.
            actual_usd: What the call cost, the record's ``cloud_cost_usd`` (None or 0 for a
                call without a price or without an answer).  Spent also when the reservation
                was released already: the money went out.
        """
        ...

    def release(self, reservation: Reservation) -> None:
        """Free a reservation without spending (the call failed before an answer).

        Any number of calls, also after :meth:`settle`, free only what is still reserved.
        """
        ...

    def add(self, provider: str, usd: float, at: float) -> None:
        """Count a cloud cost that nothing reserved (see :meth:`Budget.add`)."""
        ...

    def capped(self, provider: str) -> str | None:
        """Why a provider may not be sent requests now, without reserving anything."""
        ...

    def state(self, provider: str | None = None) -> BudgetState:
        """The budget's state (see :meth:`Budget.state`)."""
        ...

    @property
    def reservations(self) -> int:
        """Reservations neither settled nor released."""
        ...

    def to_dict(self) -> dict[str, Any]:
        """The ``Budget`` JSON object of ``docs/events.md``."""
        ...


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


CapLimit = tuple[float, float | None, str]
"""One cap that applies: ``(spent + reserved, the cap or None, its reason code)``."""


def cap_limits(
    settings: BudgetSettings,
    provider: str | None,
    held: Callable[[str | None], tuple[float, float]],
) -> list[CapLimit]:
    """Each cap that applies to a provider's requests, overall before its own, daily before
    monthly.

    Args:
        settings: The caps.
        provider: The provider; None for the overall caps only.
        held: ``(today, this month)`` spent plus reserved, of one provider (None: all).

    Returns:
        ``(held, cap, reason)`` for each cap (``cap`` None where it is not set).
    """
    daily, monthly = held(None)
    limits: list[CapLimit] = [
        (daily, settings.daily_usd, "budget:daily_cap"),
        (monthly, settings.monthly_usd, "budget:monthly_cap"),
    ]
    caps = settings.per_provider.get(provider, {}) if provider is not None else {}
    if caps:
        own_daily, own_monthly = held(provider)
        limits += [
            (own_daily, caps.get("daily_usd"), f"budget:{provider}:daily_cap"),
            (own_monthly, caps.get("monthly_usd"), f"budget:{provider}:monthly_cap"),
        ]
    return limits


def first_refusal(limits: list[CapLimit], estimate_usd: float) -> str | None:
    """The reason code of the first cap that is reached or that ``estimate_usd`` would pass;
    None when it fits under every one."""
    for held, cap, reason in limits:
        if cap is not None and (held >= cap or held + estimate_usd > cap):
            return reason
    return None


def worst_state(limits: list[CapLimit], settings: BudgetSettings) -> BudgetState:
    """The worst state over the caps: ``capped`` at a cap, ``warning`` past ``warn_percent``
    of one, else ``ok``."""
    worst: BudgetState = "ok"
    for held, cap, _ in limits:
        if cap is None:
            continue
        state: BudgetState = "ok"
        if held >= cap:
            state = "capped"
        elif held >= cap * settings.warn_percent / 100:
            state = "warning"
        worst = max(worst, state, key=_SEVERITY.__getitem__)
    return worst


class Budget:
    """Today's and this month's cloud spend and reservations, and the state of each cap: the
    :class:`BudgetGate` of one daemon."""

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
        # Open reservations by id, each with the start of its UTC day and month.
        self._open: dict[str, tuple[Reservation, float, float]] = {}
        self._ids = itertools.count(1)

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

    def reserved(self, provider: str | None = None) -> tuple[float, float]:
        """Return ``(today, this month)`` reserved and not yet settled, in USD, of one provider
        or all of them."""
        self._roll(self._clock())
        daily = monthly = 0.0
        for reservation, day, month in self._open.values():
            if provider is not None and reservation.provider != provider:
                continue
            if day == self._day:
                daily += reservation.estimate_usd
            if month == self._month:
                monthly += reservation.estimate_usd
        return daily, monthly

    @property
    def reservations(self) -> int:
        """Reservations neither settled nor released."""
        return len(self._open)

    async def reserve(self, provider: str, model: str, estimate_usd: float) -> Reservation | str:
        """Set an estimated cost aside, if it fits under every cap that applies.

        The check and the reservation happen without yielding to the event loop, so requests
        reserving at once each see the others' reservations.

        Args:
            provider: Who will charge it.
            model: The model called (``provider/model``).
            estimate_usd: The call's estimated cost (0 for a model without a price).

        Returns:
            The reservation, or the reason code of the first cap it does not fit under (as
            :meth:`capped` names them).

        Raises:
            ValueError: ``estimate_usd`` is negative or not a finite number.
        """
        if not 0.0 <= estimate_usd < float("inf"):
            raise ValueError(f"an estimated cost is a finite USD amount >= 0, not {estimate_usd!r}")
        refused = self._refusal(provider, estimate_usd)
        if refused is not None:
            return refused
        now = self._clock()
        reservation = Reservation(str(next(self._ids)), provider, model, estimate_usd, now)
        self._open[reservation.id] = (reservation, day_start(now), month_start(now))
        return reservation

    def settle(self, reservation: Reservation, actual_usd: float | None) -> None:
        """Free a reservation and spend the real cost, in the reservation's day and month.

        Args:
            reservation: What :meth:`reserve` returned (settled once).
            actual_usd: What the call cost; None or 0 spends nothing.
        """
        self._open.pop(reservation.id, None)
        if actual_usd:
            self.add(reservation.provider, actual_usd, reservation.at)

    def release(self, reservation: Reservation) -> None:
        """Free a reservation without spending; nothing happens when it is free already."""
        self._open.pop(reservation.id, None)

    def state(self, provider: str | None = None) -> BudgetState:
        """Return the budget's state, from what is spent plus what is reserved.

        Args:
            provider: None for the overall caps; a provider for the worse of the overall caps
                and that provider's own.
        """
        return worst_state(cap_limits(self._settings, provider, self._held), self._settings)

    def capped(self, provider: str) -> str | None:
        """Return why a provider may not be sent requests, or None when it may.

        A cap stops every request once what is spent plus what is reserved reaches it: then no
        reservation, however small, fits.

        Returns:
            ``budget:daily_cap`` or ``budget:monthly_cap`` (an overall cap),
            ``budget:<provider>:daily_cap`` or ``budget:<provider>:monthly_cap`` (its own), or
            None.
        """
        return self._refusal(provider, 0.0)

    def to_dict(self) -> dict[str, Any]:
        """Return the ``Budget`` JSON object of ``docs/events.md`` (the overall caps)."""
        daily, monthly = self.spend()
        daily_reserved, monthly_reserved = self.reserved()
        return {
            "daily_spend_usd": daily,
            "daily_reserved_usd": daily_reserved,
            "daily_cap_usd": self._settings.daily_usd,
            "monthly_spend_usd": monthly,
            "monthly_reserved_usd": monthly_reserved,
            "monthly_cap_usd": self._settings.monthly_usd,
            "reservations": self.reservations,
            "state": self.state(),
        }

    def _refusal(self, provider: str, estimate_usd: float) -> str | None:
        """The first cap (overall before the provider's own, daily before monthly) that spent
        plus reserved has reached or that the estimate would pass; None when it fits."""
        settings = self._settings
        if settings.daily_usd is None and settings.monthly_usd is None:
            if provider not in settings.per_provider:
                return None  # no cap applies: asked on every cloud request, so answer fast
        return first_refusal(cap_limits(settings, provider, self._held), estimate_usd)

    def _held(self, provider: str | None) -> tuple[float, float]:
        """``(today, this month)`` spent plus reserved, of one provider or all of them."""
        spent, reserved = self.spend(provider), self.reserved(provider)
        return spent[0] + reserved[0], spent[1] + reserved[1]

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
