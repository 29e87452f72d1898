"""The budget gate of a fleet, against a real PostgreSQL server: reservations in the database,
settlements and spend queued to a worker and written in order, a database that is down, or
connected but silent, refusing cloud requests with ``budget:unavailable`` (and nothing queued
lost), holds an earlier run or a dead daemon left counted as spent; and the in-memory budget's
state and the metrics counting what is reserved."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from fake_cloud import FakeCloud
from live_app import serving
from postgres import PASSWORD, PostgresDatabase, PostgresServer
from prometheus_client.parser import text_string_to_metric_families
from scripted import scripted_app

from hybrid.cli import main
from hybrid.ledger.budget import Budget, Reservation, SpendSeed
from hybrid.ledger.budget_lines import Hold, Line, day_period, month_period
from hybrid.ledger.fleet_budget import UNAVAILABLE, FleetBudget
from hybrid.ledger.pg_budget import SharedBudget
from hybrid.ledger.pg_watchdog import ANSWER_TIMEOUT_S
from hybrid.service.metrics import Metrics
from hybrid.settings import load_settings
from hybrid.settings.ledger import BudgetSettings

# Noon of today (UTC), and a clock that starts there: the day and month a request counts in
# stay those of DAY and MONTH however late the tests run (a run across midnight included).
NOW = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
_STARTED = time.monotonic()


def clock() -> float:
    return NOW.timestamp() + (time.monotonic() - _STARTED)


DAY = Line("total", day_period(NOW))
MONTH = Line("total", month_period(NOW))
CAP = BudgetSettings(daily_usd=1.0)
TO_CLOUD = {"X-Hybrid-Route": "cloud"}


def fleet(
    url: str, instance: str = "box-1", settings: BudgetSettings = CAP, **timing: float
) -> FleetBudget:
    """A gate that refreshes and retries fast, so the tests do not wait."""
    hold_s = timing.pop("hold_s", 120.0)
    answer_timeout_s = timing.pop("answer_timeout_s", ANSWER_TIMEOUT_S)
    timing = {"refresh_s": 0.2, "retry_s": 0.1} | timing
    shared = SharedBudget(url, instance=instance, hold_s=hold_s, answer_timeout_s=answer_timeout_s)
    return FleetBudget(shared, settings, clock=clock, **timing)


def lines(db: PostgresDatabase, *wanted: Line) -> list[tuple[float, float]]:
    reader = SharedBudget(db.url, instance="reader")
    try:
        return [(round(s.spent_usd, 9), round(s.reserved_usd, 9)) for s in reader.spend(wanted)]
    finally:
        reader.close()


def holds_of(db: PostgresDatabase, instance: str) -> int:
    with db.connect() as conn:
        row = conn.execute(
            "SELECT count(DISTINCT reservation_id) FROM hybrid_budget_holds WHERE instance = %s",
            (instance,),
        ).fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture
def gate(postgres_db: PostgresDatabase) -> Iterator[FleetBudget]:
    budget = fleet(postgres_db.url)
    asyncio.run(budget.start())
    yield budget
    budget.close()


def test_reserve_holds_in_the_database_and_settle_is_written_by_the_worker(
    gate: FleetBudget, postgres_db: PostgresDatabase
) -> None:
    reservation = asyncio.run(gate.reserve("openai", "openai/gpt-4.1-mini", 0.25))
    assert isinstance(reservation, Reservation)
    assert lines(postgres_db, DAY, MONTH) == [(0.0, 0.25), (0.0, 0.25)]
    assert gate.flush()
    assert gate.to_dict() == {
        "daily_spend_usd": 0.0,
        "daily_reserved_usd": 0.25,
        "daily_cap_usd": 1.0,
        "monthly_spend_usd": 0.0,
        "monthly_reserved_usd": 0.25,
        "monthly_cap_usd": None,
        "reservations": 1,
        "state": "ok",
        "shared": True,
        "available": True,
    }

    gate.settle(reservation, 0.1)
    gate.release(reservation)  # after settle: frees nothing more
    assert gate.flush()
    assert lines(postgres_db, DAY, MONTH) == [(0.1, 0.0), (0.1, 0.0)]
    assert gate.reservations == 0 and gate.local_reservations == 0
    assert gate.to_dict()["daily_spend_usd"] == pytest.approx(0.1)


def test_settle_after_release_still_spends_and_add_counts_unreserved_spend(
    gate: FleetBudget, postgres_db: PostgresDatabase
) -> None:
    reservation = asyncio.run(gate.reserve("openai", "openai/gpt-4.1-mini", 0.3))
    assert isinstance(reservation, Reservation)
    gate.release(reservation)
    gate.settle(reservation, 0.05)  # an answer after all: the money went out
    gate.add("anthropic", 0.2, NOW.timestamp())
    gate.add("anthropic", 0.0, NOW.timestamp())  # nothing to count
    assert gate.flush()
    assert lines(postgres_db, DAY) == [(0.25, 0.0)]
    assert lines(postgres_db, Line("provider:anthropic", DAY.period)) == [(0.2, 0.0)]


def test_a_reservation_that_does_not_fit_gets_the_caps_reason_code(
    postgres_db: PostgresDatabase,
) -> None:
    settings = BudgetSettings(daily_usd=1.0, per_provider={"openai": {"daily_usd": 0.3}})
    gate = fleet(postgres_db.url, settings=settings)

    async def run() -> list[Reservation | str]:
        await gate.start()
        return [
            await gate.reserve("openai", "openai/gpt-4.1-mini", 0.2),
            await gate.reserve("openai", "openai/gpt-4.1-mini", 0.2),
            await gate.reserve("anthropic", "anthropic/claude", 0.7),
            await gate.reserve("anthropic", "anthropic/claude", 0.2),
        ]

    try:
        first, own_cap, second, total_cap = asyncio.run(run())
        assert isinstance(first, Reservation) and isinstance(second, Reservation)
        assert own_cap == "budget:openai:daily_cap"
        assert total_cap == "budget:daily_cap"
        assert gate.flush()
        # 0.9 of 1.0 reserved: past the warning, and the view refuses what no longer fits.
        assert gate.state() == "warning" and gate.capped("anthropic") is None
        assert gate.reservations == 2
    finally:
        gate.close()


def test_two_daemons_reserving_at_once_never_hold_more_than_the_cap(
    postgres_db: PostgresDatabase,
) -> None:
    # Room for exactly five estimates of 0.2; 64 requests at once over two daemons.
    gates = [fleet(postgres_db.url, f"box-{n}") for n in (1, 2)]

    async def run() -> list[Reservation | str]:
        for gate in gates:
            await gate.start()
        return await asyncio.gather(
            *(gates[n % 2].reserve("openai", "openai/gpt-4.1-mini", 0.2) for n in range(64))
        )

    try:
        outcomes = asyncio.run(run())
        held = [o for o in outcomes if isinstance(o, Reservation)]
        assert len(held) == 5
        assert {o for o in outcomes if isinstance(o, str)} == {"budget:daily_cap"}
        assert lines(postgres_db, DAY) == [(0.0, 1.0)]
    finally:
        for gate in gates:
            gate.close()


def test_a_database_that_goes_down_refuses_reservations_and_keeps_the_queue(
    gate: FleetBudget, postgres_db: PostgresDatabase, postgres_server: PostgresServer
) -> None:
    reservation = asyncio.run(gate.reserve("openai", "openai/gpt-4.1-mini", 0.4))
    assert isinstance(reservation, Reservation)
    with postgres_server.down():
        gate.settle(reservation, 0.3)  # queued; the worker cannot write it now
        gate.add("openai", 0.1, NOW.timestamp())
        assert not gate.flush(timeout_s=1.0)
        assert asyncio.run(gate.reserve("openai", "openai/gpt-4.1-mini", 0.01)) == UNAVAILABLE
        assert gate.capped("openai") == UNAVAILABLE
        assert gate.to_dict()["available"] is False
    # Back: the queue is written in order, and reservations are made again.
    assert gate.flush(timeout_s=20)
    assert lines(postgres_db, DAY) == [(0.4, 0.0)]
    assert gate.available and gate.capped("openai") is None
    assert isinstance(asyncio.run(gate.reserve("openai", "openai/gpt-4.1-mini", 0.1)), Reservation)


def test_a_frozen_database_refuses_reservations_as_a_database_down_does(
    postgres_db: PostgresDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    gate = fleet(postgres_db.url, answer_timeout_s=0.5)
    asyncio.run(gate.start())
    try:
        # The server process of the gate's connection stops: connected, but it never answers.
        with postgres_db.frozen(), caplog.at_level(logging.WARNING, logger="hybrid.ledger"):
            refused = asyncio.run(gate.reserve("openai", "openai/gpt-4.1-mini", 0.1))
        assert refused == UNAVAILABLE
        [warning] = [r.getMessage() for r in caplog.records if "cannot be reached" in r.message]
        assert "budget:unavailable" in warning and "did not answer within 0.5 s" in warning
        assert PASSWORD not in warning
        # The worker connects again; reservations are made again.
        assert asyncio.run(_wait_for(lambda: gate.flush(timeout_s=1.0) and gate.available))
        held = asyncio.run(_reserved(gate, 0.2))
        assert isinstance(held, Reservation)
        assert lines(postgres_db, DAY) == [(0.0, 0.2)]  # the frozen try held nothing
    finally:
        gate.close()


async def _reserved(gate: FleetBudget, usd: float, tries: int = 20) -> Reservation | str:
    """A reservation, tried again while the gate says unavailable (a loaded machine may make
    a healthy reservation outlast a test's short answer timeout)."""
    for _ in range(tries):
        outcome = await gate.reserve("openai", "openai/gpt-4.1-mini", usd)
        if outcome != UNAVAILABLE:
            return outcome
        await _wait_for(lambda: gate.available)
    return outcome


def test_the_holds_of_an_earlier_run_are_counted_as_spent_at_start(
    postgres_db: PostgresDatabase,
) -> None:
    killed = SharedBudget(postgres_db.url, instance="box-1")
    for amount in (0.3, 0.2):
        assert isinstance(killed.reserve([DAY, MONTH], amount), Hold)
    killed.close()  # the process died: nothing settled or released them
    other = SharedBudget(postgres_db.url, instance="box-2")
    assert isinstance(other.reserve([DAY, MONTH], 0.1), Hold)

    restarted = fleet(postgres_db.url, "box-1")
    asyncio.run(restarted.start())
    try:
        assert holds_of(postgres_db, "box-1") == 0 and holds_of(postgres_db, "box-2") == 1
        # They may have been answered and billed: counted at their estimate, so the cap holds.
        assert lines(postgres_db, DAY) == [(0.5, 0.1)]
        assert restarted.to_dict()["daily_spend_usd"] == pytest.approx(0.5)
    finally:
        restarted.close()
        other.close()


def test_a_database_down_at_start_takes_the_earlier_holds_off_before_any_reservation(
    postgres_db: PostgresDatabase, postgres_server: PostgresServer
) -> None:
    killed = SharedBudget(postgres_db.url, instance="box-1")
    assert isinstance(killed.reserve([DAY, MONTH], 0.3), Hold)
    killed.close()
    gate = fleet(postgres_db.url, "box-1")
    try:
        with postgres_server.down():
            asyncio.run(gate.start())  # serves anyway
            assert asyncio.run(gate.reserve("openai", "openai/gpt-4.1-mini", 0.1)) == UNAVAILABLE
        assert gate.flush(timeout_s=20)
        held = asyncio.run(gate.reserve("openai", "openai/gpt-4.1-mini", 0.1))
        assert isinstance(held, Reservation)
        # The earlier run's hold went first; the new one was not taken with it.
        assert holds_of(postgres_db, "box-1") == 1
        assert lines(postgres_db, DAY) == [(0.3, 0.1)]
    finally:
        gate.close()


def test_a_dead_daemons_holds_expire_and_a_live_daemons_are_renewed(
    postgres_db: PostgresDatabase,
) -> None:
    dead = SharedBudget(postgres_db.url, instance="box-dead", hold_s=0.5)
    assert isinstance(dead.reserve([DAY, MONTH], 0.3), Hold)
    dead.close()
    live = fleet(postgres_db.url, "box-live", hold_s=0.5, renew_s=0.1, reclaim_s=0.2)
    asyncio.run(live.start())
    try:
        running = asyncio.run(live.reserve("openai", "openai/gpt-4.1-mini", 0.2))
        assert isinstance(running, Reservation)
        deadline = asyncio.run(_wait_for(lambda: holds_of(postgres_db, "box-dead") == 0))
        assert deadline, "the dead daemon's hold was never reclaimed"
        asyncio.run(asyncio.sleep(1.0))  # twice the hold: renewed all along
        assert holds_of(postgres_db, "box-live") == 1
        assert live.flush()
        assert lines(postgres_db, DAY) == [(0.3, 0.2)]
        live.settle(running, 0.15)
        assert live.flush()
        assert lines(postgres_db, DAY) == [(0.45, 0.0)]
    finally:
        live.close()


def test_a_reservation_whose_request_was_cancelled_is_released(
    gate: FleetBudget, postgres_db: PostgresDatabase
) -> None:
    async def run() -> None:
        task = asyncio.create_task(gate.reserve("openai", "openai/gpt-4.1-mini", 0.5))
        await asyncio.sleep(0)  # the reservation is under way on its thread
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.5)  # its thread finishes; the hold it made is queued for release

    asyncio.run(run())
    assert gate.flush()
    assert lines(postgres_db, DAY) == [(0.0, 0.0)]


def test_close_writes_what_is_queued(postgres_db: PostgresDatabase) -> None:
    gate = fleet(postgres_db.url)
    asyncio.run(gate.start())
    held = [asyncio.run(gate.reserve("openai", "openai/gpt-4.1-mini", 0.1)) for _ in range(3)]
    for reservation in held:
        assert isinstance(reservation, Reservation)
        gate.settle(reservation, 0.05)
    gate.close()
    assert lines(postgres_db, DAY) == [(0.15, 0.0)]
    assert holds_of(postgres_db, "box-1") == 0


def test_a_bad_estimate_is_refused_before_the_database() -> None:
    gate = fleet("postgresql://nobody@127.0.0.1:1/none")
    with pytest.raises(ValueError, match="finite USD amount"):
        asyncio.run(gate.reserve("openai", "openai/gpt-4.1-mini", float("nan")))
    gate.close()


def test_the_budget_state_and_the_metrics_count_what_is_reserved() -> None:
    budget = Budget(
        BudgetSettings(daily_usd=1.0, warn_percent=80), SpendSeed(at=NOW.timestamp()), clock=clock
    )
    metrics = Metrics()
    budget.add("openai", 0.5, NOW.timestamp())
    assert isinstance(asyncio.run(budget.reserve("openai", "openai/m", 0.35)), Reservation)
    assert budget.state() == "warning"  # 0.5 spent + 0.35 reserved of 1.0
    metrics.budget(budget)
    left = {
        sample.labels["period"]: sample.value
        for family in text_string_to_metric_families(metrics.render().decode())
        if family.name == "hybrid_budget_remaining_usd"
        for sample in family.samples
    }
    assert left == {"daily": pytest.approx(0.15)}
    assert isinstance(asyncio.run(budget.reserve("openai", "openai/m", 0.15)), Reservation)
    assert budget.state() == "capped"


async def _wait_for(check: object, timeout_s: float = 10.0) -> bool:
    assert callable(check)
    for _ in range(int(timeout_s / 0.05)):
        if check():
            return True
        await asyncio.sleep(0.05)
    return False


def test_a_daemon_whose_budget_database_is_down_answers_locally_and_sends_nothing(
    tmp_path: Path, postgres_db: PostgresDatabase, postgres_server: PostgresServer
) -> None:
    environ = {
        "HYBRID_HOME": str(tmp_path),
        "HYBRID_LEDGER__URL": postgres_db.url,
        "HYBRID_LEDGER__INSTANCE": "edge-a",
        "HYBRID_BUDGET__DAILY_USD": "1.0",
        "OPENAI_API_KEY": "sk-fake-openai",
    }
    chat = {"model": "gpt-4.1-mini", "messages": [{"role": "user", "content": "Say hello"}]}
    with FakeCloud() as cloud:
        environ["OPENAI_BASE_URL"] = cloud.base_url + "/v1"
        cli = {"probe.measure_bandwidth": False}
        settings = load_settings(environ=environ, dotenv_file=None, cli=cli).settings
        with serving(scripted_app(settings)) as base, httpx.Client(base_url=base) as client:
            sent = client.post("/v1/chat/completions", json=chat, headers=TO_CLOUD)
            assert sent.headers["x-hybrid-route"] == "cloud" and len(cloud.requests) == 1
            with postgres_server.down():
                kept = client.post("/v1/chat/completions", json=chat, headers=TO_CLOUD)
            assert kept.status_code == 200
            assert kept.headers["x-hybrid-route"] == "local"
            assert kept.headers["x-hybrid-reason"] == "budget:unavailable;explicit:cloud"
            assert len(cloud.requests) == 1  # never sent unreserved
            # Back: once the worker reaches the database (every second), reserved and sent.
            assert asyncio.run(_wait_for(lambda: _budget_available(client)))
            assert (
                client.post("/v1/chat/completions", json=chat, headers=TO_CLOUD).status_code == 200
            )
            assert len(cloud.requests) == 2


def test_a_budget_schema_from_a_newer_hybrid_stops_serve_in_one_line(
    postgres_db: PostgresDatabase,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    first = SharedBudget(postgres_db.url, instance="box-1")
    first.open()
    first.close()
    with postgres_db.connect() as conn:
        conn.execute("UPDATE hybrid_schema SET version = version + 1 WHERE part = 'budget'")
    monkeypatch.setenv("HYBRID_LEDGER__URL", postgres_db.url)
    assert main(["serve", "--port", "1"]) == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err and PASSWORD not in err, err
    assert "budget schema version" in lines[0] and "***" in lines[0]


def _budget_available(client: httpx.Client) -> bool:
    stats = client.get("/v1/hybrid/stats", timeout=30)
    return stats.status_code == 200 and stats.json()["budget"]["available"] is True
