"""Budgets: spend today and this month (UTC) against the caps, per provider, across midnight."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from ledger_records import cloud_record, local_record

from hybrid.ledger.budget import Budget, SpendSeed
from hybrid.ledger.store import LedgerStore
from hybrid.settings.ledger import BudgetSettings


def utc(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


class FakeClock:
    def __init__(self, now: str) -> None:
        self.now = utc(now)

    def __call__(self) -> float:
        return self.now

    def set(self, now: str) -> None:
        self.now = utc(now)


def budget(clock: FakeClock, seed: SpendSeed | None = None, **caps: object) -> Budget:
    settings = BudgetSettings.model_validate({"warn_percent": 75, **caps})
    return Budget(settings, seed or SpendSeed(at=clock()), clock=clock)


def test_without_caps_the_budget_is_always_ok() -> None:
    clock = FakeClock("2026-11-27T12:00:00")
    b = budget(clock)
    b.add("openai", 1_000.0, clock())
    assert b.state() == "ok" and b.capped("openai") is None


def test_the_state_turns_to_warning_at_the_percentage_and_capped_at_the_cap() -> None:
    clock = FakeClock("2026-11-27T12:00:00")
    b = budget(clock, daily_usd=1.0)
    b.add("openai", 0.5, clock())
    assert b.state() == "ok"
    b.add("anthropic", 0.25, clock())
    assert b.state() == "warning" and b.capped("openai") is None
    b.add("openai", 0.25, clock())
    assert b.state() == "capped"
    assert b.capped("openai") == b.capped("anthropic") == "budget:daily_cap"


def test_a_providers_own_cap_stops_only_that_provider() -> None:
    clock = FakeClock("2026-11-27T12:00:00")
    b = budget(clock, daily_usd=10.0, per_provider={"openai": {"monthly_usd": 0.5}})
    b.add("openai", 0.5, clock())
    assert b.capped("openai") == "budget:openai:monthly_cap"
    assert b.capped("anthropic") is None
    assert b.state() == "ok"
    assert b.state("openai") == "capped"


def test_a_new_utc_day_starts_from_zero_but_the_month_goes_on() -> None:
    clock = FakeClock("2026-11-27T23:59:00")
    b = budget(clock, daily_usd=1.0, monthly_usd=1.25)
    b.add("openai", 1.0, clock())
    assert b.capped("openai") == "budget:daily_cap"
    clock.set("2026-11-28T00:01:00")
    assert b.spend() == (0.0, 1.0)
    assert b.state() == "warning"  # 1.0 of the 1.25 month
    b.add("openai", 0.5, clock())
    assert b.capped("openai") == "budget:monthly_cap"
    clock.set("2026-12-01T00:00:00")
    assert b.spend() == (0.0, 0.0) and b.state() == "ok"


def test_a_record_from_yesterday_counts_for_the_month_only() -> None:
    clock = FakeClock("2026-11-27T00:00:05")
    b = budget(clock)
    b.add("openai", 0.25, utc("2026-11-26T23:59:59"))
    assert b.spend("openai") == (0.0, 0.25)


def test_a_zero_cap_keeps_every_request_off_the_cloud() -> None:
    clock = FakeClock("2026-11-27T12:00:00")
    assert budget(clock, per_provider={"openai": {"daily_usd": 0}}).capped("openai") == (
        "budget:openai:daily_cap"
    )


def test_the_budget_is_seeded_from_the_ledger_and_shown_as_documented(tmp_path: Path) -> None:
    store = LedgerStore.open(tmp_path / "ledger.sqlite3")
    store.append(
        [
            cloud_record(time=utc("2026-10-31T23:00:00"), cloud_cost_usd=5.0),  # last month
            cloud_record(time=utc("2026-11-26T10:00:00"), cloud_cost_usd=0.25),  # yesterday
            cloud_record(time=utc("2026-11-27T09:00:00"), cloud_cost_usd=0.5),
            cloud_record(time=utc("2026-11-27T09:30:00"), provider="anthropic", cloud_cost_usd=1.0),
            local_record(time=utc("2026-11-27T10:00:00")),
        ]
    )
    clock = FakeClock("2026-11-27T12:00:00")
    seed = SpendSeed.from_store(store, clock())
    store.close()
    assert seed.daily == {"openai": 0.5, "anthropic": 1.0}
    assert seed.monthly == {"openai": 0.75, "anthropic": 1.0}
    b = budget(clock, seed, daily_usd=2.0)
    assert b.to_dict() == {
        "daily_spend_usd": 1.5,
        "daily_reserved_usd": 0.0,
        "daily_cap_usd": 2.0,
        "monthly_spend_usd": 1.75,
        "monthly_reserved_usd": 0.0,
        "monthly_cap_usd": None,
        "reservations": 0,
        "state": "warning",
    }


@pytest.mark.parametrize("usd", [0.0, -1.0])
def test_nothing_is_counted_for_a_free_answer(usd: float) -> None:
    clock = FakeClock("2026-11-27T12:00:00")
    b = budget(clock, daily_usd=0.5)
    b.add("openai", usd, clock())
    assert b.spend() == (0.0, 0.0)
