"""The budget of a fleet: the :class:`~hybrid.ledger.budget.BudgetGate` of a daemon whose
ledger is shared (``ledger.url``), over the budget lines every daemon of the fleet reserves
against in PostgreSQL (:class:`~hybrid.ledger.pg_budget.SharedBudget`).

- **Reserving** a cloud call's estimate is one transaction in the database, checked against
  what the whole fleet has spent and reserved; it runs on a thread of its own, so the event loop
  never waits for the database.  Several daemons sharing a budget therefore overspend it by no
  more than what real costs exceed their estimates by.
- **Settling, releasing and counting** unreserved spend happen where nothing can be awaited, so
  they are queued to a worker thread (:mod:`hybrid.ledger.fleet_writer`) that writes them in
  order.  While the database is down the worker keeps them and tries again every
  :data:`~hybrid.ledger.fleet_writer.RETRY_S`; nothing queued is dropped while the process
  lives, and :meth:`FleetBudget.close` waits (up to :data:`DRAIN_S`) until the queue is
  written.
- **Answers without the database**: :meth:`~FleetBudget.capped`, :meth:`~FleetBudget.state` and
  :meth:`~FleetBudget.to_dict` read a view of the lines (the fleet's spend and reservations,
  today and this month, in total and for each provider with a cap of its own), refreshed after
  every change and every :data:`~hybrid.ledger.fleet_writer.REFRESH_S`.
- **Holds of dead daemons**: a hold lasts :data:`~hybrid.ledger.pg_budget.HOLD_S` (2 minutes)
  and the worker renews those of the requests this daemon still runs every
  :data:`~hybrid.ledger.fleet_writer.RENEW_S`.  At start the daemon takes off what an earlier
  run of its instance left (killed before it could settle), and every
  :data:`~hybrid.ledger.fleet_writer.RECLAIM_S` any daemon takes off expired holds.  Both count
  what they take off as spent at its estimate: the request may have been answered and billed,
  and its real cost never reached the budget, so the cap holds even then.
- **A SQLite ledger kept before** ``ledger.url`` was set: at start, what it records as spent
  today and this month is counted on the fleet's lines, once across restarts and daemons
  (:mod:`hybrid.ledger.budget_carry`), before any reservation.
- **Database down**: a request is never sent to the cloud unreserved.  :meth:`reserve` returns
  :data:`UNAVAILABLE` (``budget:unavailable``), which the router handles as a cap (the local
  model answers, or the client gets a 429); after one failure no reservation is tried until the
  worker reaches the database again, so requests do not each wait for a connection timeout.
- **Database frozen** (connected but silent: its server stopped, or a budget row locked
  elsewhere): no transaction waits more than
  :data:`~hybrid.ledger.pg_watchdog.ANSWER_TIMEOUT_S` (5 s) for its answer; then
  :class:`~hybrid.ledger.pg_budget.SharedBudget` cuts the connection and raises
  :class:`~hybrid.errors.LedgerUnavailableError`, and everything above follows as for a
  database that is down: the reservation and those queued behind it return
  :data:`UNAVAILABLE`, the same warning is logged, and the worker connects again.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from hybrid.errors import LedgerError, LedgerUnavailableError
from hybrid.ledger.budget import (
    BudgetState,
    Reservation,
    cap_limits,
    first_refusal,
    worst_state,
)
from hybrid.ledger.budget_carry import CarriedSpend, read_sqlite_spend
from hybrid.ledger.budget_lines import (
    Hold,
    Line,
    Refusal,
    day_period,
    lines_for,
    month_period,
)
from hybrid.ledger.fleet_writer import (
    RECLAIM_S,
    REFRESH_S,
    RENEW_S,
    RETRY_S,
    Change,
    FleetBudgetWriter,
)
from hybrid.ledger.pg_budget import SharedBudget
from hybrid.settings.ledger import BudgetSettings

UNAVAILABLE = "budget:unavailable"
"""The reason code of a cloud request refused because the shared budget cannot be reached."""

DRAIN_S = 10.0
"""Seconds :meth:`FleetBudget.close` waits for the queued changes to reach the database."""


class FleetBudget:
    """The budget gate of one daemon of a fleet (see the module's description).

    Args:
        shared: The budget in the database, for this daemon's instance.
        settings: The caps (``[budget]``), the same on every daemon of the fleet.
        clock: Unix time; picks the UTC day and month a request counts in.
        refresh_s: See :data:`~hybrid.ledger.fleet_writer.REFRESH_S`.
        renew_s: See :data:`~hybrid.ledger.fleet_writer.RENEW_S`.
        reclaim_s: See :data:`~hybrid.ledger.fleet_writer.RECLAIM_S`.
        retry_s: See :data:`~hybrid.ledger.fleet_writer.RETRY_S`.
        sqlite_ledger: The SQLite ledger this daemon kept before ``ledger.url`` was set
            (``ledger.path``): its spend of the day and the month at start counts on the
            fleet's lines, once.  None, or a file that does not exist: nothing to count.
    """

    def __init__(
        self,
        shared: SharedBudget,
        settings: BudgetSettings,
        *,
        clock: Callable[[], float] = time.time,
        refresh_s: float = REFRESH_S,
        renew_s: float = RENEW_S,
        reclaim_s: float = RECLAIM_S,
        retry_s: float = RETRY_S,
        sqlite_ledger: Path | None = None,
    ) -> None:
        self._shared = shared
        self._sqlite_ledger = sqlite_ledger
        self._settings = settings
        self._clock = clock
        self._lock = threading.Lock()
        self._open: set[str] = set()
        self._on_change: Callable[[], None] = lambda: None
        self._writer = FleetBudgetWriter(
            shared,
            settings,
            clock=clock,
            running=self._running,
            on_change=lambda: self._on_change(),
            refresh_s=refresh_s,
            renew_s=renew_s,
            reclaim_s=reclaim_s,
            retry_s=retry_s,
        )
        # One thread for reservations: they take the budget's one connection in turn anyway,
        # and waiting ones must not fill the event loop's default executor.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hybrid-reserve")

    async def start(self, on_change: Callable[[], None] | None = None) -> None:
        """Take off what an earlier run of this instance held, count the spend of the SQLite
        ledger kept before ``ledger.url`` was set (see :mod:`hybrid.ledger.budget_carry`),
        read the lines, and start the worker.

        A database that cannot be reached is not an error: the daemon serves, refusing cloud
        requests with :data:`UNAVAILABLE` until the worker reaches it (and does both first).

        Args:
            on_change: Called (on any thread) when the view or the database's availability
                changed: a ``budget`` event and the metrics follow.

        Raises:
            LedgerAccessError: The database refuses ``ledger.url``'s login or rights.
            LedgerSchemaError: A newer hybrid migrated the budget tables.
        """
        self._on_change = on_change or (lambda: None)
        loop = asyncio.get_running_loop()
        carried: CarriedSpend | None = None
        if self._sqlite_ledger is not None:
            read = partial(
                read_sqlite_spend, self._sqlite_ledger, self._shared.instance, self._clock()
            )
            carried = await loop.run_in_executor(self._executor, read)
        writer = self._writer
        try:
            await loop.run_in_executor(self._executor, writer.start_shared, carried)
        except LedgerUnavailableError as exc:
            writer.went_down(exc)
            writer.put(Change("start"))
        else:
            await loop.run_in_executor(self._executor, writer.refresh)
        writer.start()

    def close(self, timeout_s: float = DRAIN_S) -> None:
        """Write what is queued (waiting up to ``timeout_s`` for a database that is down),
        stop the worker and close the connection.  Safe without :meth:`start`."""
        self._writer.close(timeout_s)
        self._executor.shutdown(wait=True)
        self._shared.close()

    async def reserve(self, provider: str, model: str, estimate_usd: float) -> Reservation | str:
        """Reserve a cloud call's estimate in the fleet's budget, in one transaction.

        Args:
            provider: Who will charge it.
            model: The model called (``provider/model``).
            estimate_usd: The call's estimated cost (0 for a model without a price).

        Returns:
            The reservation; the reason code of the first cap it does not fit under; or
            :data:`UNAVAILABLE` while the database cannot be reached.

        Raises:
            ValueError: ``estimate_usd`` is negative or not a finite number.
        """
        if not 0.0 <= estimate_usd < math.inf:
            raise ValueError(f"an estimated cost is a finite USD amount >= 0, not {estimate_usd!r}")
        if not self._writer.available:
            return UNAVAILABLE
        now = self._clock()
        lines = self._lines(provider, now)
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, self._reserve_now, lines, estimate_usd)
        try:
            outcome = await asyncio.shield(future)
        except asyncio.CancelledError:
            # The request is gone, but the reservation may still be made: free it then.
            future.add_done_callback(self._release_orphan)
            raise
        if outcome is None:
            return UNAVAILABLE
        self._writer.wake(stale=True)
        if isinstance(outcome, Refusal):
            return _reason(outcome.line)
        with self._lock:
            self._open.add(outcome.id)
        return Reservation(outcome.id, provider, model, estimate_usd, now)

    def settle(self, reservation: Reservation, actual_usd: float | None) -> None:
        """Queue: free the reservation and spend the real cost (also when it was released
        already: the money went out)."""
        with self._lock:
            self._open.discard(reservation.id)
        self._writer.put(Change("settle", self._hold(reservation), usd=actual_usd or 0.0))

    def release(self, reservation: Reservation) -> None:
        """Queue: free the reservation without spending; nothing when it is free already."""
        with self._lock:
            if reservation.id not in self._open:
                return
            self._open.discard(reservation.id)
        self._writer.put(Change("release", self._hold(reservation)))

    def add(self, provider: str, usd: float, at: float) -> None:
        """Queue: count a cloud cost nothing reserved, in the day and month of ``at``."""
        if usd > 0:
            self._writer.put(Change("add", lines=self._lines(provider, at), usd=usd))

    def capped(self, provider: str) -> str | None:
        """Why a provider may not be sent requests now, from the view: :data:`UNAVAILABLE`,
        or the first cap the fleet's spend plus reservations has reached; None when it may."""
        if not self._writer.available:
            return UNAVAILABLE
        return first_refusal(cap_limits(self._settings, provider, self._held), 0.0)

    def state(self, provider: str | None = None) -> BudgetState:
        """The fleet's budget state, from its spend plus its reservations (the view)."""
        return worst_state(cap_limits(self._settings, provider, self._held), self._settings)

    @property
    def reservations(self) -> int:
        """Reservations the whole fleet holds (the view)."""
        return self._writer.reservations

    @property
    def local_reservations(self) -> int:
        """Reservations of this daemon neither settled nor released."""
        with self._lock:
            return len(self._open)

    @property
    def available(self) -> bool:
        """Whether the database was reachable at the last try."""
        return self._writer.available

    def to_dict(self) -> dict[str, Any]:
        """The ``Budget`` JSON object of ``docs/events.md``: the fleet's, plus ``shared`` and
        ``available``."""
        spent = self._line_sums(None, reserved=False)
        reserved = self._line_sums(None, reserved=True)
        return {
            "daily_spend_usd": spent[0],
            "daily_reserved_usd": reserved[0],
            "daily_cap_usd": self._settings.daily_usd,
            "monthly_spend_usd": spent[1],
            "monthly_reserved_usd": reserved[1],
            "monthly_cap_usd": self._settings.monthly_usd,
            "reservations": self.reservations,
            "state": self.state(),
            "shared": True,
            "available": self._writer.available,
        }

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until the queued changes are written and the view is read again.

        Returns:
            Whether that happened within ``timeout_s``.
        """
        return self._writer.flush(timeout_s)

    def _lines(self, provider: str, at: float) -> tuple[Line, ...]:
        return lines_for(self._settings, provider, datetime.fromtimestamp(at, UTC))

    def _hold(self, reservation: Reservation) -> Hold:
        # The lines are those the reservation was made on: its provider, its day and month.
        lines = self._lines(reservation.provider, reservation.at)
        return Hold(reservation.id, reservation.estimate_usd, lines)

    def _held(self, provider: str | None) -> tuple[float, float]:
        spent = self._line_sums(provider, reserved=False)
        reserved = self._line_sums(provider, reserved=True)
        return spent[0] + reserved[0], spent[1] + reserved[1]

    def _line_sums(self, provider: str | None, *, reserved: bool) -> tuple[float, float]:
        scope = "total" if provider is None else f"provider:{provider}"
        now = datetime.fromtimestamp(self._clock(), UTC)
        sums = []
        for period in (day_period(now), month_period(now)):
            line = self._writer.line(scope, period)
            value = 0.0 if line is None else line.reserved_usd if reserved else line.spent_usd
            sums.append(value)
        return sums[0], sums[1]

    def _reserve_now(self, lines: tuple[Line, ...], estimate_usd: float) -> Hold | Refusal | None:
        """Reserve on the reservations' thread; None while the database cannot be reached.

        Reservations queued behind one that found the database gone return at once instead
        of each waiting for a connection timeout.
        """
        if not self._writer.available:
            return None
        try:
            return self._shared.reserve(lines, estimate_usd)
        except LedgerError as exc:
            self._writer.went_down(exc)
            return None

    def _release_orphan(self, future: asyncio.Future[Hold | Refusal | None]) -> None:
        if future.cancelled() or future.exception() is not None:
            return
        outcome = future.result()
        if isinstance(outcome, Hold):
            self._writer.put(Change("release", outcome))

    def _running(self) -> set[str]:
        """The reservations of the requests this daemon still runs (the writer renews them)."""
        with self._lock:
            return set(self._open)


def _reason(line: Line) -> str:
    """The reason code of a refusal on ``line``: ``budget:daily_cap``,
    ``budget:openai:monthly_cap``..."""
    period = "daily" if line.period.startswith("day:") else "monthly"
    if line.scope == "total":
        return f"budget:{period}_cap"
    return f"budget:{line.scope.removeprefix('provider:')}:{period}_cap"
