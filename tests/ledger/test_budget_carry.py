"""Switching a daemon from its SQLite ledger to a shared one (``ledger.url``) keeps the caps:
the spend the file records today and this month counts on the fleet's budget lines, once
across restarts and daemons, against a real PostgreSQL server, with a fixed clock."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from ledger_records import cloud_record
from live_app import serving
from postgres import PostgresDatabase, PostgresServer
from scripted import scripted_app

from hybrid.ledger.budget import Reservation
from hybrid.ledger.budget_lines import Line
from hybrid.ledger.fleet_budget import UNAVAILABLE, FleetBudget
from hybrid.ledger.pg_budget import SharedBudget
from hybrid.ledger.record import LedgerRecord
from hybrid.ledger.store import LedgerStore
from hybrid.settings import load_settings
from hybrid.settings.ledger import BudgetSettings


def utc(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


NOW = utc("2026-11-27T12:00:00")
DAY, MONTH = "day:2026-11-27", "month:2026-11"
CAPS = BudgetSettings(daily_usd=1.0, monthly_usd=10.0)


def sqlite_ledger(path: Path, *records: LedgerRecord) -> Path:
    store = LedgerStore.open(path)
    try:
        store.append(records)
    finally:
        store.close()
    return path


def spent_before_the_switch(tmp_path: Path) -> Path:
    """A ledger that spent $0.8 today ($0.5 OpenAI, $0.3 Anthropic), $2.0 more earlier this
    month and $5.0 last month."""
    return sqlite_ledger(
        tmp_path / "ledger.sqlite3",
        cloud_record(id="a", time=utc("2026-10-31T23:00:00"), cloud_cost_usd=5.0),
        cloud_record(id="b", time=utc("2026-11-26T23:59:00"), cloud_cost_usd=2.0),
        cloud_record(id="c", time=utc("2026-11-27T09:00:00"), cloud_cost_usd=0.5),
        cloud_record(
            id="d", time=utc("2026-11-27T11:00:00"), provider="anthropic", cloud_cost_usd=0.3
        ),
    )


def fleet(
    url: str, ledger: Path | None, instance: str = "box-1", settings: BudgetSettings = CAPS
) -> FleetBudget:
    shared = SharedBudget(url, instance=instance)
    return FleetBudget(
        shared, settings, clock=lambda: NOW, refresh_s=0.2, retry_s=0.1, sqlite_ledger=ledger
    )


def started(url: str, ledger: Path | None, instance: str = "box-1") -> FleetBudget:
    budget = fleet(url, ledger, instance)
    asyncio.run(budget.start())
    return budget


def spent(db: PostgresDatabase, scope: str = "total") -> tuple[float, float]:
    reader = SharedBudget(db.url, instance="reader")
    try:
        day, month = reader.spend([Line(scope, DAY), Line(scope, MONTH)])
    finally:
        reader.close()
    return round(day.spent_usd, 9), round(month.spent_usd, 9)


def test_todays_sqlite_spend_counts_against_the_shared_caps(
    tmp_path: Path, postgres_db: PostgresDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    ledger = spent_before_the_switch(tmp_path)
    with caplog.at_level(logging.WARNING, logger="hybrid.ledger"):
        budget = started(postgres_db.url, ledger)
    try:
        assert spent(postgres_db) == (0.8, 2.8)
        assert spent(postgres_db, "provider:openai") == (0.5, 2.5)
        assert spent(postgres_db, "provider:anthropic") == (0.3, 0.3)
        assert budget.to_dict()["daily_spend_usd"] == pytest.approx(0.8)
        # $0.8 of the $1.0 daily cap is gone: $0.3 more does not fit, $0.2 does.
        refused = asyncio.run(budget.reserve("openai", "openai/gpt-4.1-mini", 0.3))
        assert refused == "budget:daily_cap"
        fits = asyncio.run(budget.reserve("openai", "openai/gpt-4.1-mini", 0.2))
        assert isinstance(fits, Reservation)
    finally:
        budget.close()
    said = [r.getMessage() for r in caplog.records if "SQLite ledger" in r.getMessage()]
    assert len(said) == 1, said
    assert "$0.800000 spent today and $2.800000 this month" in said[0] and str(ledger) in said[0]


def test_restarts_count_the_file_once_and_later_spend_in_it_once_more(
    tmp_path: Path, postgres_db: PostgresDatabase
) -> None:
    ledger = spent_before_the_switch(tmp_path)
    for _ in range(3):
        started(postgres_db.url, ledger).close()
    assert spent(postgres_db) == (0.8, 2.8)

    # Run on SQLite again the same day, then back to the shared ledger: only the new $0.1.
    sqlite_ledger(ledger, cloud_record(id="e", time=utc("2026-11-27T11:30:00"), cloud_cost_usd=0.1))
    started(postgres_db.url, ledger).close()
    started(postgres_db.url, ledger).close()
    assert spent(postgres_db) == (0.9, 2.9)


def test_daemons_starting_together_on_one_file_count_it_once(
    tmp_path: Path, postgres_db: PostgresDatabase
) -> None:
    ledger = spent_before_the_switch(tmp_path)
    budgets = [fleet(postgres_db.url, ledger) for _ in range(4)]
    go = threading.Barrier(len(budgets))

    def start(budget: FleetBudget) -> None:
        go.wait()
        asyncio.run(budget.start())

    threads = [threading.Thread(target=start, args=(budget,)) for budget in budgets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for budget in budgets:
        budget.close()
    assert spent(postgres_db) == (0.8, 2.8)


def test_a_database_down_at_start_counts_the_file_before_any_reservation(
    tmp_path: Path, postgres_db: PostgresDatabase, postgres_server: PostgresServer
) -> None:
    ledger = spent_before_the_switch(tmp_path)
    budget = fleet(postgres_db.url, ledger)
    try:
        with postgres_server.down():
            asyncio.run(budget.start())  # serves anyway
            assert asyncio.run(budget.reserve("openai", "openai/gpt-4.1-mini", 0.1)) == UNAVAILABLE
        assert budget.flush(timeout_s=20)
        assert spent(postgres_db) == (0.8, 2.8)
        refused = asyncio.run(budget.reserve("openai", "openai/gpt-4.1-mini", 0.3))
        assert refused == "budget:daily_cap"
    finally:
        budget.close()


def test_each_daemons_own_file_counts(tmp_path: Path, postgres_db: PostgresDatabase) -> None:
    first = spent_before_the_switch(tmp_path / "a")
    second = sqlite_ledger(
        tmp_path / "b" / "ledger.sqlite3",
        cloud_record(id="x", time=utc("2026-11-27T08:00:00"), cloud_cost_usd=0.15),
    )
    started(postgres_db.url, first, "box-1").close()
    started(postgres_db.url, second, "box-2").close()
    assert spent(postgres_db) == (0.95, 2.95)


def test_no_file_no_spend_and_nothing_created(
    tmp_path: Path, postgres_db: PostgresDatabase
) -> None:
    missing = tmp_path / "never" / "ledger.sqlite3"
    started(postgres_db.url, missing).close()
    assert not missing.parent.exists()
    old = sqlite_ledger(
        tmp_path / "ledger.sqlite3",
        cloud_record(id="a", time=utc("2026-10-31T23:00:00"), cloud_cost_usd=5.0),
    )
    started(postgres_db.url, old).close()
    assert spent(postgres_db) == (0.0, 0.0)


def test_an_unreadable_file_is_said_and_does_not_stop_the_daemon(
    tmp_path: Path, postgres_db: PostgresDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    broken = tmp_path / "ledger.sqlite3"
    broken.write_bytes(b"not a SQLite database, not at all" * 100)
    with caplog.at_level(logging.WARNING, logger="hybrid.ledger"):
        budget = started(postgres_db.url, broken)
    try:
        assert isinstance(
            asyncio.run(budget.reserve("openai", "openai/gpt-4.1-mini", 0.2)), Reservation
        )
    finally:
        budget.close()
    assert any("cannot be read" in r.getMessage() for r in caplog.records)


def test_serve_with_ledger_url_counts_the_data_folders_sqlite_ledger_once(
    tmp_path: Path, postgres_db: PostgresDatabase
) -> None:
    # An hour ahead: in the day (and month) the daemon starts in, whatever the clock says.
    ahead = time.time() + 3600
    sqlite_ledger(tmp_path / "ledger.sqlite3", cloud_record(id="a", time=ahead, cloud_cost_usd=0.7))
    environ = {
        "HYBRID_HOME": str(tmp_path),
        "HYBRID_LEDGER__URL": postgres_db.url,
        "HYBRID_LEDGER__INSTANCE": "edge-a",
        "HYBRID_BUDGET__DAILY_USD": "1.0",
    }
    cli = {"probe.measure_bandwidth": False}
    settings = load_settings(environ=environ, dotenv_file=None, cli=cli).settings
    for _ in range(2):  # started, stopped, started again
        with serving(scripted_app(settings)):
            pass
    with postgres_db.connect() as conn:
        rows = conn.execute(
            "SELECT period, spent_usd FROM hybrid_budget_lines WHERE scope = 'total'"
        ).fetchall()
    days = [float(usd) for period, usd in rows if str(period).startswith("day:")]
    months = [float(usd) for period, usd in rows if str(period).startswith("month:")]
    assert days == [pytest.approx(0.7)] and months == [pytest.approx(0.7)]
