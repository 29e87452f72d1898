"""The budget shared in PostgreSQL, against a real server: concurrent reservations from several
connections never hold more than a cap, settling and releasing leave nothing held, the
holds of a daemon that died are reclaimed, and a database that stops answering is cut off after
the answer timeout and reached again on a new connection."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from postgres import PASSWORD, PostgresDatabase, PostgresServer, eventually

from hybrid.errors import LedgerSchemaError, LedgerUnavailableError
from hybrid.ledger.budget_lines import (
    Hold,
    Line,
    LineSpend,
    Refusal,
    day_period,
    lines_for,
    month_period,
)
from hybrid.ledger.pg_budget import SharedBudget
from hybrid.settings.ledger import BudgetSettings

NOW = datetime(2026, 9, 7, 23, 30, tzinfo=UTC)
DAY = day_period(NOW)
MONTH = month_period(NOW)


def spend(budget: SharedBudget, *lines: Line) -> list[tuple[float, float]]:
    return [(s.spent_usd, s.reserved_usd) for s in budget.spend(lines)]


@pytest.fixture
def budget(postgres_db: PostgresDatabase) -> Iterator[SharedBudget]:
    shared = SharedBudget(postgres_db.url, instance="box-1")
    shared.open()
    yield shared
    shared.close()


def test_periods_are_utc_days_and_months() -> None:
    assert DAY == "day:2026-09-07"
    assert MONTH == "month:2026-09"


def test_lines_for_carry_the_caps_of_the_settings() -> None:
    settings = BudgetSettings(
        daily_usd=1.0, per_provider={"openai": {"monthly_usd": 5.0}}, monthly_usd=None
    )
    assert lines_for(settings, "openai", NOW) == (
        Line("total", DAY, 1.0),
        Line("total", MONTH, None),
        Line("provider:openai", DAY, None),
        Line("provider:openai", MONTH, 5.0),
    )


def test_sixty_four_concurrent_reservations_never_pass_the_cap(
    postgres_db: PostgresDatabase,
) -> None:
    # Eight daemons (one connection each) send eight requests each at once; the cap has room
    # for exactly five estimates of 0.01 USD.
    line = Line("total", DAY, 0.05)
    daemons = [SharedBudget(postgres_db.url, instance=f"box-{n}") for n in range(8)]
    for daemon in daemons:
        daemon.open()
    start = threading.Barrier(len(daemons))
    outcomes: list[Hold | Refusal] = []
    guard = threading.Lock()

    def requests(daemon: SharedBudget) -> None:
        start.wait()
        for _ in range(8):
            outcome = daemon.reserve([line], 0.01)
            with guard:
                outcomes.append(outcome)

    threads = [threading.Thread(target=requests, args=(daemon,)) for daemon in daemons]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    granted = [o for o in outcomes if isinstance(o, Hold)]
    refused = [o for o in outcomes if isinstance(o, Refusal)]
    assert len(outcomes) == 64
    assert len(granted) == 5 and len(refused) == 59
    assert all(r.line == line and r.amount_usd == 0.01 for r in refused)
    (state,) = daemons[0].spend([line])
    assert state == LineSpend("total", DAY, spent_usd=0.0, reserved_usd=0.05)

    # Three answers cost less than estimated, two requests never went out.
    for reservation, daemon in zip(granted[:3], daemons, strict=False):
        assert daemon.settle(reservation, 0.004)
    for reservation in granted[3:]:
        assert daemons[-1].release(reservation)
    ((spent, reserved),) = spend(daemons[0], line)
    assert spent == pytest.approx(0.012) and reserved == 0.0
    for daemon in daemons:
        daemon.close()


def test_a_reservation_holds_on_every_line_or_on_none(budget: SharedBudget) -> None:
    total = Line("total", DAY, 1.0)
    provider = Line("provider:openai", DAY, 0.02)
    first = budget.reserve([total, provider], 0.015)
    assert isinstance(first, Hold)

    second = budget.reserve([total, provider], 0.015)

    assert second == Refusal(line=provider, spent_usd=0.0, reserved_usd=0.015, amount_usd=0.015)
    assert spend(budget, provider, total) == [(0.0, 0.015), (0.0, 0.015)]


def test_the_first_request_of_a_period_is_checked_against_the_cap(budget: SharedBudget) -> None:
    line = Line("total", DAY, 0.10)
    assert isinstance(budget.reserve([line], 0.11), Refusal)
    assert spend(budget, line) == [(0.0, 0.0)]
    assert isinstance(budget.reserve([line], 0.10), Hold)
    assert isinstance(budget.reserve([line], 0.0), Hold)
    assert isinstance(budget.reserve([line], 0.000001), Refusal)


def test_spend_counts_on_lines_without_a_cap(budget: SharedBudget) -> None:
    uncapped = Line("provider:anthropic", MONTH, None)
    for _ in range(3):
        reservation = budget.reserve([uncapped], 5.0)
        assert isinstance(reservation, Hold)
        budget.settle(reservation, 4.0)
    assert spend(budget, uncapped) == [(12.0, 0.0)]
    # A cap set later starts from the period's real spend.
    assert isinstance(budget.reserve([Line("provider:anthropic", MONTH, 15.0)], 4.0), Refusal)


def test_release_after_settle_frees_nothing_more_and_settle_after_release_still_spends(
    budget: SharedBudget,
) -> None:
    line = Line("total", DAY, 1.0)
    settled = budget.reserve([line], 0.5)
    released = budget.reserve([line], 0.2)
    assert isinstance(settled, Hold) and isinstance(released, Hold)

    assert budget.settle(settled, 0.3) is True
    assert budget.release(settled) is False
    assert budget.release(released) is True
    assert budget.release(released) is False
    assert spend(budget, line) == [(0.3, 0.0)]
    # The call went out after all (a cancelled stream the provider still bills).
    assert budget.settle(released, 0.1) is False
    assert spend(budget, line) == [(0.4, 0.0)]


def test_spend_nothing_reserved_is_counted(budget: SharedBudget) -> None:
    lines = lines_for(BudgetSettings(daily_usd=1.0), "openai", NOW)
    budget.add(lines, 0.25)
    assert spend(budget, *lines) == [(0.25, 0.0)] * 4
    assert isinstance(budget.reserve(lines, 0.8), Refusal)


def test_expired_holds_are_reclaimed_and_a_late_settle_still_counts(
    postgres_db: PostgresDatabase,
) -> None:
    line = Line("total", DAY, 1.0)
    crashed = SharedBudget(postgres_db.url, instance="box-1", hold_s=0)
    survivor = SharedBudget(postgres_db.url, instance="box-2")
    reservation = crashed.reserve([line], 0.4)
    assert isinstance(reservation, Hold)
    kept = survivor.reserve([line], 0.1)
    assert isinstance(kept, Hold)

    assert survivor.reclaim_expired() == 1
    assert survivor.reclaim_expired() == 0
    assert spend(survivor, line) == [(0.0, 0.1)]

    assert crashed.settle(reservation, 0.25) is False
    assert spend(survivor, line) == [(0.25, 0.1)]
    crashed.close()
    survivor.close()


def test_a_restarted_daemon_releases_what_its_last_run_held(
    postgres_db: PostgresDatabase,
) -> None:
    line = Line("total", DAY, 1.0)
    killed = SharedBudget(postgres_db.url, instance="box-1")
    other = SharedBudget(postgres_db.url, instance="box-2")
    assert isinstance(killed.reserve([line], 0.3), Hold)
    assert isinstance(killed.reserve([line], 0.2), Hold)
    assert isinstance(other.reserve([line], 0.1), Hold)
    killed.close()

    restarted = SharedBudget(postgres_db.url, instance="box-1")
    assert restarted.release_instance() == 2
    assert spend(restarted, line) == [(0.0, 0.1)]
    restarted.close()
    other.close()


def test_a_database_outage_raises_unavailable_and_the_budget_reconnects(
    postgres_server: PostgresServer, budget: SharedBudget
) -> None:
    line = Line("total", DAY, 1.0)
    held = budget.reserve([line], 0.2)
    assert isinstance(held, Hold)
    with postgres_server.down():
        with pytest.raises(LedgerUnavailableError):
            budget.reserve([line], 0.2)
        with pytest.raises(LedgerUnavailableError):
            budget.settle(held, 0.1)
    assert budget.settle(held, 0.1) is True
    assert spend(budget, line) == [(0.1, 0.0)]


def test_a_row_locked_elsewhere_is_cut_at_the_answer_timeout_and_the_budget_reconnects(
    postgres_db: PostgresDatabase,
) -> None:
    line = Line("total", DAY, 1.0)
    budget = SharedBudget(postgres_db.url, instance="box-1", answer_timeout_s=0.5)
    holder = postgres_db.connect()
    try:
        assert isinstance(budget.reserve([line], 0.2), Hold)
        # Another session holds the line's row: the server would wait 30 s (its statement
        # timeout) before refusing the next reservation; the client waits half a second.
        holder.execute("BEGIN")
        holder.execute("SELECT * FROM hybrid_budget_lines FOR UPDATE")
        with pytest.raises(LedgerUnavailableError, match=r"did not answer within 0\.5 s") as cut:
            budget.reserve([line], 0.2)
        assert "reserve budget" in str(cut.value) and PASSWORD not in str(cut.value)
        # The cut connection is dropped: the next call reads on a new one, lock or not.
        assert eventually(lambda: spend(budget, line)) == [(0.0, 0.2)]
        holder.execute("ROLLBACK")
        assert isinstance(eventually(lambda: budget.reserve([line], 0.3)), Hold)
        # The cut reservation held nothing: its session ended without committing.
        assert spend(budget, line) == [(0.0, 0.5)]
    finally:
        holder.close()
        budget.close()


def test_a_stopped_server_process_is_cut_at_the_answer_timeout(
    postgres_db: PostgresDatabase,
) -> None:
    line = Line("total", DAY, 1.0)
    budget = SharedBudget(postgres_db.url, instance="box-1", answer_timeout_s=0.5)
    try:
        assert isinstance(budget.reserve([line], 0.2), Hold)
        with (
            postgres_db.frozen(),
            pytest.raises(LedgerUnavailableError, match="did not answer"),
        ):
            budget.settle(Hold("gone", 0.0, (line,)), 0.1)
        assert isinstance(eventually(lambda: budget.reserve([line], 0.3)), Hold)
        assert spend(budget, line) == [(0.0, 0.5)]  # the cut settlement spent nothing
    finally:
        budget.close()


def test_a_newer_budget_schema_is_refused(postgres_db: PostgresDatabase) -> None:
    first = SharedBudget(postgres_db.url, instance="box-1")
    first.open()
    first.close()
    with postgres_db.connect() as conn:
        conn.execute("UPDATE hybrid_schema SET version = 9 WHERE part = 'budget'")
    with pytest.raises(LedgerSchemaError, match="budget schema version 9"):
        SharedBudget(postgres_db.url, instance="box-1").open()


@pytest.mark.parametrize("amount", [-0.01, float("nan"), float("inf")])
def test_a_bad_amount_is_refused_before_the_database(amount: float) -> None:
    budget = SharedBudget("postgresql://nobody@127.0.0.1:1/none", instance="box-1")
    with pytest.raises(ValueError, match="amount_usd must be a finite amount"):
        budget.reserve([Line("total", DAY, 1.0)], amount)
    with pytest.raises(ValueError, match="cost_usd must be a finite amount"):
        budget.settle(Hold("id", 0.0, ()), amount)
