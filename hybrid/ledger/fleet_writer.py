"""The writer thread of a fleet's budget: what a daemon changes in the shared budget, written in
order, and what it reads back.

:class:`~hybrid.ledger.fleet_budget.FleetBudget` reserves on a thread of its own, since a
request waits for that; what nothing can wait for goes to :class:`FleetBudgetWriter`'s queue
(:class:`Change`: a hold settled or released, spend counted unreserved, the start's work).  Its
thread writes the queue in order, one change at a time, and keeps a change until the database
took it: while the database is down it tries again every :data:`RETRY_S`, and
:meth:`FleetBudgetWriter.close` waits a while for the rest.  Between changes it reads the
fleet's lines and reservations into the view the budget answers from (after every change and
every :data:`REFRESH_S`), renews the holds of the requests this daemon still runs (every
:data:`RENEW_S`) and takes off the expired holds of daemons that died (every
:data:`RECLAIM_S`).  It also keeps whether the database was reachable at the last try, which
the budget's reservations set too.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from hybrid.errors import LedgerError
from hybrid.ledger.budget_carry import CarriedSpend, log_counted
from hybrid.ledger.budget_lines import Hold, Line, LineSpend, lines_for
from hybrid.ledger.pg_budget import SharedBudget
from hybrid.settings.ledger import BudgetSettings

log = logging.getLogger("hybrid.ledger")

REFRESH_S = 2.0
"""Seconds between two reads of the fleet's budget lines when nothing changed here."""
RENEW_S = 30.0
"""Seconds between two renewals of the holds of the requests this daemon runs."""
RECLAIM_S = 30.0
"""Seconds between two reclaims of expired holds (of daemons that died)."""
RETRY_S = 1.0
"""Seconds between two tries while the database is down."""


@dataclass(frozen=True)
class Change:
    """A change queued for the database: a hold settled (``usd`` spent) or released, spend
    counted on ``lines``, or the start's (this instance's earlier holds taken off, the SQLite
    ledger's spend counted)."""

    kind: Literal["settle", "release", "add", "start"]
    hold: Hold | None = None
    lines: tuple[Line, ...] = ()
    usd: float = 0.0


class FleetBudgetWriter:
    """Writes a daemon's budget changes to the shared budget in order, and reads the fleet's
    lines back (see the module's description).

    Args:
        shared: The budget in the database, for this daemon's instance.
        settings: The caps (``[budget]``): which providers' lines the view reads.
        clock: Unix time; picks the UTC day and month the view reads.
        running: The reservations of the requests this daemon still runs (their holds are
            renewed); called on the writer's thread.
        on_change: Called (on any thread) when the view or the database's availability
            changed.
        refresh_s: See :data:`REFRESH_S`.
        renew_s: See :data:`RENEW_S`.
        reclaim_s: See :data:`RECLAIM_S`.
        retry_s: See :data:`RETRY_S`.
    """

    def __init__(
        self,
        shared: SharedBudget,
        settings: BudgetSettings,
        *,
        clock: Callable[[], float],
        running: Callable[[], Collection[str]],
        on_change: Callable[[], None],
        refresh_s: float = REFRESH_S,
        renew_s: float = RENEW_S,
        reclaim_s: float = RECLAIM_S,
        retry_s: float = RETRY_S,
    ) -> None:
        self._shared = shared
        self._settings = settings
        self._clock = clock
        self._running = running
        self._on_change = on_change
        self._periods = {"refresh": refresh_s, "renew": renew_s, "reclaim": reclaim_s}
        self._retry_s = retry_s
        self._carried: CarriedSpend | None = None
        self._cond = threading.Condition()
        self._queue: deque[Change] = deque()
        self._view: dict[tuple[str, str], LineSpend] = {}
        self._fleet_reservations = 0
        self._available = True
        self._stale = False
        self._stopping = False
        self._deadline = math.inf
        self._thread: threading.Thread | None = None

    @property
    def available(self) -> bool:
        """Whether the database was reachable at the last try."""
        return self._available

    @property
    def reservations(self) -> int:
        """Reservations the whole fleet holds (the view)."""
        return self._fleet_reservations

    def line(self, scope: str, period: str) -> LineSpend | None:
        """A line's spend and reservations in the view; None when the view lacks it."""
        return self._view.get((scope, period))

    def start_shared(self, carried: CarriedSpend | None) -> None:
        """What starts the budget in the database: take off the holds an earlier run of this
        instance left, then count the SQLite ledger's spend (both again harmlessly, when the
        database went away in between: a queued ``start`` change does it again).

        Args:
            carried: The SQLite ledger's spend to count, kept for a ``start`` change.

        Raises:
            LedgerError: The database failed (:class:`~hybrid.errors.LedgerUnavailableError`
                when it cannot be reached).
        """
        self._carried = carried
        _log_released(self._shared.release_instance(as_spent=True))
        if carried is not None:
            log_counted(carried, self._shared.carry(carried))

    def start(self) -> None:
        """Start the writer's thread."""
        self._thread = threading.Thread(target=self._work, name="hybrid-budget", daemon=True)
        self._thread.start()

    def close(self, timeout_s: float) -> None:
        """Write what is queued (waiting up to ``timeout_s`` for a database that is down) and
        stop the thread; log what could not be written.  Safe without :meth:`start`."""
        with self._cond:
            self._stopping = True
            self._deadline = time.monotonic() + timeout_s
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout_s + 5)
        with self._cond:
            left = len(self._queue)
        if left:
            log.error(
                "%d budget changes could not be written to the shared budget before shutdown "
                "(the database is unavailable); holds they would have freed expire within "
                "%g s and are then counted as spent",
                left,
                self._shared.hold_s,
            )

    def put(self, change: Change) -> None:
        """Queue a change for the thread to write."""
        with self._cond:
            self._queue.append(change)
            self._cond.notify_all()

    def wake(self, *, stale: bool) -> None:
        """Wake the thread; with ``stale``, to read the view again."""
        with self._cond:
            self._stale = self._stale or stale
            self._cond.notify_all()

    def flush(self, timeout_s: float) -> bool:
        """Wait until the queued changes are written and the view is read again.

        Returns:
            Whether that happened within ``timeout_s``.
        """
        deadline = time.monotonic() + timeout_s
        with self._cond:
            self._stale = True
            self._cond.notify_all()
            while self._queue or self._stale:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
        return True

    def went_down(self, exc: LedgerError) -> None:
        """Count the database as unreachable (once: a warning, and ``on_change``)."""
        if self._available:
            log.warning(
                "the shared budget cannot be reached (%s): cloud requests are refused "
                "(budget:unavailable) and answered locally where possible until it returns",
                exc,
            )
            self._available = False
            self._on_change()

    def refresh(self) -> bool:
        """Read the fleet's lines and reservations into the view; False when the database
        could not be reached."""
        with self._cond:
            self._stale = False
        try:
            spends = self._shared.spend(self._viewed_lines())
            count = self._shared.reservations()
        except LedgerError as exc:
            with self._cond:
                self._stale = True  # still to be read
            self.went_down(exc)
            return False
        view = {(spend.scope, spend.period): spend for spend in spends}
        with self._cond:
            changed = view != self._view or count != self._fleet_reservations
            self._view, self._fleet_reservations = view, count
            self._cond.notify_all()
        self._went_up()
        if changed:
            self._on_change()
        return True

    def _went_up(self) -> None:
        if not self._available:
            log.warning("the shared budget is reachable again: cloud requests are reserved")
            self._available = True
            self._on_change()

    def _viewed_lines(self) -> list[Line]:
        now = datetime.fromtimestamp(self._clock(), UTC)
        lines = list(lines_for(self._settings, "", now)[:2])  # the totals
        for provider in self._settings.per_provider:
            lines += lines_for(self._settings, provider, now)[2:]
        return lines

    def _work(self) -> None:
        """The thread: write queued changes in order; refresh, renew and reclaim on time."""
        due = {name: time.monotonic() + period for name, period in self._periods.items()}
        while True:
            with self._cond:
                while not (self._queue or self._stale or self._stopping):
                    wait = min(due.values()) - time.monotonic()
                    if wait <= 0 or not self._available:
                        break
                    self._cond.wait(wait)
                if self._stopping and (not self._queue or time.monotonic() > self._deadline):
                    return
                change = self._queue[0] if self._queue else None
            if change is not None:
                if self._write(change):
                    with self._cond:
                        self._queue.popleft()
                        self._stale = True
                else:
                    self._pause()
                continue
            now = time.monotonic()
            if not self.refresh():
                self._pause()
                continue
            due["refresh"] = now + self._periods["refresh"]
            for name in ("renew", "reclaim"):
                if now >= due[name]:
                    self._periodic(name)
                    due[name] = now + self._periods[name]

    def _write(self, change: Change) -> bool:
        """Apply one queued change; False when the database could not be reached."""
        shared = self._shared
        try:
            if change.kind == "start":
                self.start_shared(self._carried)
            elif change.kind == "add":
                shared.add(change.lines, change.usd)
            elif change.hold is not None and change.kind == "settle":
                shared.settle(change.hold, change.usd)
            elif change.hold is not None:
                shared.release(change.hold)
        except LedgerError as exc:
            self.went_down(exc)
            return False
        except ValueError as exc:  # a cost that is not a finite amount: nothing to write
            log.error("a budget change was dropped: %s", exc)
        self._went_up()
        return True

    def _periodic(self, name: str) -> None:
        running = self._running()
        try:
            if name == "renew":
                self._shared.renew(running)
            elif (reclaimed := self._shared.reclaim_expired(as_spent=True)) > 0:
                log.warning(
                    "%d expired budget reservations (of daemons that stopped without settling "
                    "them) were counted as spent",
                    reclaimed,
                )
                self.wake(stale=True)
        except LedgerError as exc:
            self.went_down(exc)

    def _pause(self) -> None:
        """Wait :data:`RETRY_S` before trying the database again (less when closing)."""
        with self._cond:
            self._cond.wait(self._retry_s)


def _log_released(released: int) -> None:
    if released:
        log.warning(
            "%d budget reservations left by an earlier run of this instance (stopped before it "
            "settled them) were counted as spent",
            released,
        )
