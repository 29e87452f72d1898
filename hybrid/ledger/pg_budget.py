"""A spend budget shared by several daemons, reserved atomically in PostgreSQL.

Before a cloud request is sent, its estimated cost is *reserved* against every budget line it
counts towards (this UTC day and month, in total and for its provider: see
:mod:`hybrid.ledger.budget_lines`); after the answer the reservation is *settled* with the real
cost, or *released* when nothing was spent.  A
reservation succeeds only if, on every line with a cap, ``spent + reserved + estimate <= cap``
holds, checked and applied by one statement per line while the row is locked, all lines in one
transaction.  So daemons sharing a budget can overspend it by at most what the real costs
exceed the estimates by: never by more than one request's estimate when an estimate bounds its
request's cost.  The tables and every statement on them are in
:mod:`hybrid.ledger.budget_tables`; this module runs them in transactions.

A daemon killed mid-request leaves its holds behind.  Each hold expires ``hold_s`` after it
was made or last renewed (:meth:`SharedBudget.renew`: a live daemon renews the holds of the
requests it still runs): :meth:`SharedBudget.reclaim_expired` takes expired holds off their
lines, and :meth:`SharedBudget.release_instance` drops the holds an earlier run of this instance
left.  Either can count what it takes off as spent (``as_spent``): a request whose daemon died
may have been answered and billed, and its real cost never reached the budget, so counting its
estimate keeps the cap.  The lines are always locked in (scope, period) order, so concurrent
reservations, settlements and reclaims cannot deadlock one another.

The API is synchronous and thread-safe (one connection, one lock); async callers run it in a
thread.  Each transaction waits at most ``answer_timeout_s`` (5 s by default) for the
database: when a database that is stopped or frozen, or a row locked elsewhere, keeps it
waiting longer, a :class:`~hybrid.ledger.pg_watchdog.Watchdog` cuts its connection and the
call raises :class:`~hybrid.errors.LedgerUnavailableError`, as for a database that is down
(the next call connects again).  As with a connection lost, a transaction cut as it committed
may have taken effect unseen: an unseen hold expires and is reclaimed as spent, a settlement
written again counts its cost twice; either way the cap holds.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Collection, Iterable, Sequence
from decimal import Decimal
from typing import LiteralString, TypeVar

import psycopg

from hybrid.errors import LedgerError
from hybrid.ledger import budget_carry
from hybrid.ledger import budget_tables as tables
from hybrid.ledger.budget_carry import CarriedSpend, LineKey
from hybrid.ledger.budget_lines import Hold, Line, LineSpend, Refusal
from hybrid.ledger.pg import CONNECT_TIMEOUT_S, Connection, connect, mask_url, migrate
from hybrid.ledger.pg import translate as _translate
from hybrid.ledger.pg_watchdog import ANSWER_TIMEOUT_S, Watchdog

HOLD_S = 120.0
"""How long a reservation holds its amount, from when it was made or last renewed, before any
daemon may reclaim it: a live daemon renews its holds well within it (see
:mod:`hybrid.ledger.fleet_budget`), so it bounds how long a dead daemon's holds stay."""

# Serialization failures and deadlocks: the transaction did nothing and may simply run again.
_RETRY_STATES = frozenset({"40001", "40P01"})
_ATTEMPTS = 5

T = TypeVar("T")


class SharedBudget:
    """Reservations against budget lines in a PostgreSQL database several daemons share."""

    def __init__(
        self,
        url: str,
        *,
        instance: str,
        hold_s: float = HOLD_S,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
        answer_timeout_s: float = ANSWER_TIMEOUT_S,
    ) -> None:
        """Prepare the budget; nothing connects until :meth:`open` or the first call.

        Args:
            url: ``ledger.url``.
            instance: This daemon's name (``ledger.instance``), kept on its holds.
            hold_s: Seconds a reservation holds before another daemon may reclaim it; longer
                than the longest request.
            connect_timeout_s: Seconds to wait for the database on each (re)connection.
            answer_timeout_s: Seconds a transaction (or a migration) waits for the database's
                answer before its connection is cut and the database counts as unavailable.

        Raises:
            ValueError: ``hold_s`` is negative, or ``answer_timeout_s`` is not positive.
        """
        if not hold_s >= 0:
            raise ValueError(f"hold_s must be 0 or more seconds, not {hold_s}")
        self._url = url
        self._instance = instance
        self._hold_s = hold_s
        self._timeout_s = connect_timeout_s
        self._conn: Connection | None = None
        self._lock = threading.Lock()
        self._watchdog = Watchdog(answer_timeout_s)

    def open(self) -> None:
        """Connect, and create or migrate the budget tables.

        Raises:
            LedgerUnavailableError: The database cannot be reached.
            LedgerAccessError: It refuses ``ledger.url``'s login or the role's rights.
            LedgerSchemaError: A newer hybrid migrated the budget tables.
        """
        self._run("open the budget", lambda conn: None)

    @property
    def instance(self) -> str:
        """This daemon's name (``ledger.instance``)."""
        return self._instance

    @property
    def hold_s(self) -> float:
        """Seconds a hold lasts from when it was made or last renewed."""
        return self._hold_s

    def close(self) -> None:
        """Close the connection (a later call opens a new one)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            self._watchdog.close()

    def reserve(self, lines: Sequence[Line], amount_usd: float) -> Hold | Refusal:
        """Hold ``amount_usd`` on every line, or on none if any cap would be passed.

        Args:
            lines: The lines the request counts towards (see :func:`lines_for`).
            amount_usd: The request's estimated cost (0 or more).

        Returns:
            The reservation, or the refusal naming the first line (in (scope, period) order)
            that had no room.

        Raises:
            ValueError: ``amount_usd`` is negative or not finite, or ``lines`` is empty.
            LedgerUnavailableError: The database cannot be reached (nothing was held).
        """
        amount = tables.amount(amount_usd, "amount_usd")
        if not lines:
            raise ValueError("a reservation needs at least one budget line")
        # One line per (scope, period), in lock order.
        ordered = sorted({(line.scope, line.period): line for line in lines}.values())
        reservation_id = uuid.uuid4().hex

        def transaction(conn: Connection) -> Hold | Refusal:
            with conn.transaction():
                for line in ordered:
                    cap = None if line.cap_usd is None else tables.to_decimal(line.cap_usd)
                    row = conn.execute(
                        tables.RESERVE,
                        {"scope": line.scope, "period": line.period, "amount": amount, "cap": cap},
                    ).fetchone()
                    if row is None:  # raising rolls back the lines already held
                        raise _Refused(tables.refusal(conn, line, amount_usd))
                holds = [(reservation_id, line.scope, line.period, amount) for line in ordered]
                with conn.cursor() as cursor:
                    cursor.executemany(
                        tables.HOLD, [(*hold, self._instance, self._hold_s) for hold in holds]
                    )
            return Hold(id=reservation_id, amount_usd=amount_usd, lines=tuple(ordered))

        try:
            return self._run("reserve budget", transaction)
        except _Refused as refused:
            return refused.refusal

    def settle(self, hold: Hold, cost_usd: float) -> bool:
        """Count a request's real cost on its lines and free what its hold still holds.

        Call it once per hold.  The cost counts also when the hold was released or reclaimed
        already: the money went out.

        Args:
            hold: What :meth:`reserve` returned.
            cost_usd: What the request cost (0 or more).

        Returns:
            Whether the hold still held its amount (False: released or reclaimed before).

        Raises:
            ValueError: ``cost_usd`` is negative or not finite.
            LedgerUnavailableError: The database cannot be reached (nothing changed).
        """
        return self._finish(hold, tables.amount(cost_usd, "cost_usd"), "settle budget")

    def release(self, hold: Hold) -> bool:
        """Free what a hold still holds without counting spend (the request never went).

        Any number of calls, also after :meth:`settle`, free only what is still held.

        Returns:
            Whether the hold still held its amount.

        Raises:
            LedgerUnavailableError: The database cannot be reached (nothing changed).
        """
        return self._finish(hold, Decimal(0), "release budget")

    def add(self, lines: Iterable[Line], cost_usd: float) -> None:
        """Count a cost that nothing reserved on each line.

        Raises:
            ValueError: ``cost_usd`` is negative or not finite.
            LedgerUnavailableError: The database cannot be reached (nothing changed).
        """
        cost = tables.amount(cost_usd, "cost_usd")
        keys = sorted({(line.scope, line.period) for line in lines})

        def transaction(conn: Connection) -> None:
            with conn.transaction():
                for scope, period in keys:
                    conn.execute(
                        tables.APPLY, {"scope": scope, "period": period, "spent": cost, "freed": 0}
                    )

        self._run("count spend", transaction)

    def carry(self, carried: CarriedSpend) -> dict[LineKey, float]:
        """Count a SQLite ledger's spend on the lines, once per source (see
        :mod:`hybrid.ledger.budget_carry`).

        Returns:
            ``(scope, period)`` to the USD counted now; empty when it was counted before.

        Raises:
            LedgerUnavailableError: The database cannot be reached (nothing was counted).
        """
        return self._run(
            "count the SQLite ledger's spend", lambda conn: budget_carry.count_once(conn, carried)
        )

    def reclaim_expired(self, *, as_spent: bool = False) -> int:
        """Take expired holds (their daemon died, or lost the database for ``hold_s``) off
        their lines.

        Args:
            as_spent: Count each reclaimed amount as spent (the request may have been
                answered); False returns it to the line.  A later settle of a reclaimed hold
                still counts its real cost.

        Returns:
            How many reservations were reclaimed.

        Raises:
            LedgerUnavailableError: The database cannot be reached.
        """
        return self._take_holds("reclaim budget holds", tables.EXPIRED, (), as_spent=as_spent)

    def release_instance(self, *, as_spent: bool = False) -> int:
        """Take every hold this instance has off its lines: at start, what an earlier run of
        it left (killed before it could settle or release them).

        Args:
            as_spent: Count each amount as spent (see :meth:`reclaim_expired`).

        Returns:
            How many reservations were released.

        Raises:
            LedgerUnavailableError: The database cannot be reached.
        """
        return self._take_holds(
            "release budget holds", tables.OF_INSTANCE, (self._instance,), as_spent=as_spent
        )

    def renew(self, reservation_ids: Collection[str]) -> int:
        """Push back the expiry of holds this daemon still needs (requests still running), to
        ``hold_s`` from now.

        Args:
            reservation_ids: The reservations to keep.

        Returns:
            How many reservations were found and renewed.

        Raises:
            LedgerUnavailableError: The database cannot be reached.
        """
        if not reservation_ids:
            return 0
        ids = sorted(reservation_ids)

        def transaction(conn: Connection) -> int:
            with conn.transaction():
                rows = conn.execute(tables.RENEW, (self._hold_s, ids)).fetchall()
            return len({row[0] for row in rows})

        return self._run("renew budget holds", transaction)

    def reservations(self) -> int:
        """How many reservations hold money now, over every daemon sharing the budget.

        Raises:
            LedgerUnavailableError: The database cannot be reached.
        """

        def transaction(conn: Connection) -> int:
            with conn.transaction():
                row = conn.execute(tables.COUNT_RESERVATIONS).fetchone()
            return int(row[0]) if row is not None else 0

        return self._run("count budget holds", transaction)

    def spend(self, lines: Iterable[Line]) -> list[LineSpend]:
        """Read lines' spend and holds (a line never reserved on reads as 0 and 0).

        Args:
            lines: The lines to read.

        Returns:
            One entry per distinct line, in (scope, period) order.

        Raises:
            LedgerUnavailableError: The database cannot be reached.
        """
        keys = sorted({(line.scope, line.period) for line in lines})

        def transaction(conn: Connection) -> list[LineSpend]:
            with conn.transaction():
                found = {
                    (scope, period): (spent, reserved)
                    for scope, period, spent, reserved in conn.execute(
                        tables.READ_LINES, ([key[0] for key in keys], [key[1] for key in keys])
                    )
                }
            spends = []
            for scope, period in keys:
                spent, reserved = found.get((scope, period), (0, 0))
                spends.append(LineSpend(scope, period, float(spent), float(reserved)))
            return spends

        return self._run("read the budget", transaction)

    def _take_holds(
        self, doing: str, delete: LiteralString, params: tuple[object, ...], *, as_spent: bool
    ) -> int:
        """Delete the holds ``delete`` returns and take their amounts off their lines (counted
        as spent with ``as_spent``); return how many reservations they were."""

        def transaction(conn: Connection) -> int:
            with conn.transaction():
                rows = conn.execute(delete, params).fetchall()
                held = ((scope, period, amount) for _, scope, period, amount in rows)
                tables.free(conn, held, as_spent=as_spent)
            return len({row[0] for row in rows})

        return self._run(doing, transaction)

    def _finish(self, hold: Hold, cost: Decimal, doing: str) -> bool:
        def transaction(conn: Connection) -> bool:
            with conn.transaction():
                held = {
                    (scope, period): amount
                    for scope, period, amount in conn.execute(tables.TAKE_HOLD, (hold.id,))
                }
                for line in hold.lines:  # in lock order, as reserve() sorted them
                    freed = held.get((line.scope, line.period), Decimal(0))
                    if cost or freed:
                        conn.execute(
                            tables.APPLY,
                            {
                                "scope": line.scope,
                                "period": line.period,
                                "spent": cost,
                                "freed": freed,
                            },
                        )
            return bool(held)

        return self._run(doing, transaction)

    def _run(self, doing: str, transaction: Callable[[Connection], T]) -> T:
        """Run ``transaction`` on the connection (opened, migrated when needed), again after a
        serialization failure or deadlock, translating failures into hybrid's errors."""
        with self._lock:
            for attempt in range(_ATTEMPTS):
                conn = self._connection()
                try:
                    with self._watchdog.watching(conn):
                        return transaction(conn)
                except psycopg.Error as exc:
                    if self._watchdog.cut:
                        raise self._watchdog.error(mask_url(self._url), doing=doing) from exc
                    if exc.sqlstate in _RETRY_STATES and attempt + 1 < _ATTEMPTS:
                        continue
                    raise _translate(exc, self._url, doing=doing) from exc
                finally:
                    # Cut (even as its answer came), lost or closed: the next call reconnects.
                    if conn.broken or conn.closed or self._watchdog.cut:
                        conn.close()
                        self._conn = None
            raise AssertionError("unreachable: the last attempt returns or raises")

    def _connection(self) -> Connection:
        if self._conn is None:
            conn = connect(self._url, timeout_s=self._timeout_s)
            try:
                with self._watchdog.watching(conn):
                    migrate(conn, tables.SCHEMA_PART, tables.MIGRATIONS, url=self._url)
            except BaseException as exc:
                conn.close()
                if isinstance(exc, LedgerError) and self._watchdog.cut:
                    raise self._watchdog.error(
                        mask_url(self._url), doing="open the budget"
                    ) from exc
                raise
            self._conn = conn
        return self._conn


class _Refused(Exception):
    """Raised inside a reservation's transaction to roll it back; carries the refusal."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal)
        self.refusal = refusal
