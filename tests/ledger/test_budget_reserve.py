"""Budget reservations: an estimate is set aside before a cloud call and refused when it does not
fit under a cap; settled with the real cost, released on failure; and the estimate itself."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

import pytest

from hybrid.generation import GenerationRequest, Message, SamplingParams, ToolSpec
from hybrid.ledger.budget import Budget, Reservation, SpendSeed
from hybrid.ledger.costing import ESTIMATED_MAX_OUTPUT_TOKENS, Costing
from hybrid.ledger.prices import PriceTable
from hybrid.routing.names import CloudTarget
from hybrid.routing.reserving import Reserving, prompt_text
from hybrid.settings.ledger import BudgetSettings, EnergySettings

MINI = CloudTarget("openai", "gpt-4.1-mini")  # 0.40 in, 1.60 out per 1M tokens
HAIKU = CloudTarget("anthropic", "claude-haiku-4-5")  # 1.00 in, 5.00 out per 1M tokens


def utc(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


class FakeClock:
    def __init__(self, now: str) -> None:
        self.now = utc(now)

    def __call__(self) -> float:
        return self.now


def budget(clock: FakeClock, **caps: object) -> Budget:
    settings = BudgetSettings.model_validate(caps)
    return Budget(settings, SpendSeed(at=clock()), clock=clock)


def reserve(b: Budget, usd: float, provider: str = "openai") -> Reservation | str:
    return asyncio.run(b.reserve(provider, f"{provider}/m", usd))


def held(result: Reservation | str) -> Reservation:
    assert isinstance(result, Reservation), result
    return result


# -- the gate --------------------------------------------------------------------------------------


def test_a_reservation_is_refused_when_spent_plus_reserved_plus_it_passes_the_cap() -> None:
    clock = FakeClock("2026-11-27T12:00:00")
    b = budget(clock, daily_usd=1.0)
    b.add("openai", 0.25, clock())
    first = held(reserve(b, 0.5))
    assert reserve(b, 0.3) == "budget:daily_cap"  # 0.25 + 0.5 + 0.3 > 1.0
    assert held(reserve(b, 0.25)).estimate_usd == 0.25  # exactly to the cap fits
    assert b.reserved() == (0.75, 0.75) and b.reservations == 2
    assert b.capped("openai") == "budget:daily_cap"  # nothing more fits now
    b.release(first)
    assert b.capped("openai") is None and held(reserve(b, 0.3))


def test_settling_frees_the_estimate_and_spends_the_real_cost() -> None:
    clock = FakeClock("2026-11-27T12:00:00")
    b = budget(clock, daily_usd=1.0)
    reservation = held(reserve(b, 0.6))
    b.settle(reservation, 0.05)
    assert b.spend() == (0.05, 0.05) and b.reserved() == (0.0, 0.0) and b.reservations == 0
    b.release(reservation)  # already settled: frees nothing more, spends nothing
    assert b.spend() == (0.05, 0.05)


def test_a_call_settled_after_its_release_still_spends_what_it_cost() -> None:
    clock = FakeClock("2026-11-27T12:00:00")
    b = budget(clock)
    reservation = held(reserve(b, 0.6))
    b.release(reservation)
    b.release(reservation)
    b.settle(reservation, 0.02)
    assert b.spend() == (0.02, 0.02) and b.reservations == 0


def test_a_providers_own_cap_and_the_monthly_cap_count_reservations_too() -> None:
    clock = FakeClock("2026-11-27T12:00:00")
    b = budget(clock, monthly_usd=2.0, per_provider={"openai": {"daily_usd": 0.5}})
    held(reserve(b, 0.4))
    assert reserve(b, 0.2) == "budget:openai:daily_cap"
    held(reserve(b, 1.5, provider="anthropic"))
    assert reserve(b, 0.2, provider="anthropic") == "budget:monthly_cap"


def test_a_cap_of_zero_refuses_even_a_free_call() -> None:
    clock = FakeClock("2026-11-27T12:00:00")
    assert reserve(budget(clock, daily_usd=0.0), 0.0) == "budget:daily_cap"


def test_without_caps_every_reservation_is_kept_and_shown() -> None:
    clock = FakeClock("2026-11-27T12:00:00")
    b = budget(clock)
    held(reserve(b, 10.0))
    shown = b.to_dict()
    assert shown["daily_reserved_usd"] == shown["monthly_reserved_usd"] == 10.0
    assert shown["reservations"] == 1 and shown["daily_spend_usd"] == 0.0


def test_yesterdays_open_reservation_counts_for_the_month_only() -> None:
    clock = FakeClock("2026-11-27T23:59:59")
    b = budget(clock, daily_usd=1.0, monthly_usd=10.0)
    late = held(reserve(b, 0.9))
    clock.now = utc("2026-11-28T00:00:01")
    assert b.reserved() == (0.0, 0.9)
    held(reserve(b, 0.9))  # today's cap is free again
    b.settle(late, 0.5)  # spent on the day it was reserved
    assert b.spend() == (0.0, 0.5)


@pytest.mark.parametrize("usd", [-0.01, float("nan"), float("inf")])
def test_an_estimate_must_be_a_finite_amount(usd: float) -> None:
    with pytest.raises(ValueError, match="finite USD amount"):
        reserve(budget(FakeClock("2026-11-27T12:00:00")), usd)


def test_concurrent_reservations_each_see_the_others() -> None:
    clock = FakeClock("2026-11-27T12:00:00")
    b = budget(clock, daily_usd=1.0)

    async def race() -> list[Reservation | str]:
        return list(
            await asyncio.gather(*(b.reserve("openai", "openai/m", 0.3) for _ in range(64)))
        )

    results = asyncio.run(race())
    assert sum(isinstance(r, Reservation) for r in results) == 3
    assert results.count("budget:daily_cap") == 61


# -- the estimate ----------------------------------------------------------------------------------


def costing() -> Costing:
    return Costing(PriceTable.shipped(), EnergySettings(), reference_model="openai/gpt-4.1-mini")


def test_the_estimate_prices_the_prompt_and_the_most_it_may_generate() -> None:
    assert costing().estimate("openai/gpt-4.1-mini", 1000, 500) == pytest.approx(
        (1000 * 0.4 + 500 * 1.6) / 1e6
    )
    assert costing().estimate("nobody/unknown-model", 1000, 500) is None


def reserving(b: Budget | None = None, **max_output: int) -> Reserving:
    gate = b if b is not None else budget(FakeClock("2026-11-27T12:00:00"))
    # One token per word: what the local tokenizer would be asked.
    return Reserving(lambda: gate, costing().estimate, lambda text: len(text.split()), max_output)


def ask(text: str, max_tokens: int | None = None) -> GenerationRequest:
    params = SamplingParams(max_tokens=max_tokens)
    return GenerationRequest("r1", messages=(Message("user", text),), params=params)


def test_the_request_estimate_uses_the_local_count_and_max_tokens() -> None:
    estimate = reserving().estimate(ask("one two three four", max_tokens=100), MINI)
    assert estimate == pytest.approx((4 * 0.4 + 100 * 1.6) / 1e6)


def test_a_count_the_router_made_is_used_as_it_is() -> None:
    estimate = reserving().estimate(ask("one two", max_tokens=10), MINI, prompt_tokens=50)
    assert estimate == pytest.approx((50 * 0.4 + 10 * 1.6) / 1e6)


def test_without_max_tokens_the_providers_default_output_is_estimated() -> None:
    r = reserving(anthropic=1024)
    assert r.estimate(ask("hi"), MINI) == pytest.approx(
        (0.4 + ESTIMATED_MAX_OUTPUT_TOKENS * 1.6) / 1e6
    )
    assert r.estimate(ask("hi"), HAIKU) == pytest.approx((1.0 + 1024 * 5.0) / 1e6)


def test_an_unpriced_model_is_reserved_at_zero_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    r = reserving()
    unknown = CloudTarget("groq", "llama-3.3-70b-versatile")
    with caplog.at_level(logging.WARNING, logger="hybrid.routing"):
        assert r.estimate(ask("hi"), unknown) == 0.0
        assert r.estimate(ask("hi"), unknown) == 0.0
    [warning] = [rec.getMessage() for rec in caplog.records]
    assert "groq/llama-3.3-70b-versatile has no price" in warning
    assert "[[pricing.overrides]]" in warning


def test_the_prompt_text_holds_messages_tool_calls_and_tool_schemas() -> None:
    request = GenerationRequest(
        "r1",
        messages=(Message("user", "What is the weather?"),),
        tools=(ToolSpec("weather", "Reads the weather", {"type": "object"}),),
    )
    text = prompt_text(request)
    assert "What is the weather?" in text and "Reads the weather" in text
    assert '"type": "object"' in text
    assert prompt_text(GenerationRequest("r2", prompt="raw text")) == "raw text"


def test_a_reservation_names_the_provider_and_model_and_is_refused_with_the_cap_code() -> None:
    clock = FakeClock("2026-11-27T12:00:00")
    b = budget(clock, daily_usd=0.001)
    r = reserving(b)
    made = held(asyncio.run(r.reserve(ask("hi", max_tokens=100), MINI)))
    assert (made.provider, made.model) == ("openai", "openai/gpt-4.1-mini")
    assert made.estimate_usd == pytest.approx((0.4 + 100 * 1.6) / 1e6)
    assert asyncio.run(r.reserve(ask("hi", max_tokens=1000), MINI)) == "budget:daily_cap"
