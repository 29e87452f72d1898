"""Shadow and judge calls reserve their estimated cost before they are sent, against the fake
cloud: refused at a cap, settled by the record of the call, never left reserved."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from random import Random
from typing import Any

import pytest
from fake_cloud import FakeCloud

from hybrid.generation import GenerationRequest, Message, SamplingParams
from hybrid.ledger.budget import Budget, SpendSeed
from hybrid.ledger.costing import Costing
from hybrid.ledger.prices import PriceTable
from hybrid.routing.agreement import Grade
from hybrid.routing.names import CloudTarget
from hybrid.routing.reserving import Reserving
from hybrid.routing.shadow import Shadowing, ShadowOutcome
from hybrid.service.providers import build_providers
from hybrid.settings import load_settings
from hybrid.settings.ledger import BudgetSettings, EnergySettings

TARGET = CloudTarget("openai", "gpt-4.1-mini")
JUDGE = CloudTarget("openai", "gpt-4.1")
QUESTION = GenerationRequest(
    "r1",
    messages=(Message("user", "What is the capital of France?"),),
    params=SamplingParams(max_tokens=16),
)
COSTING = Costing(PriceTable.shipped(), EnergySettings(), reference_model="openai/gpt-4.1-mini")


@pytest.fixture
def cloud() -> Any:
    with FakeCloud(reply="The capital of France is Paris.") as fake:
        yield fake


def words(text: str) -> int:
    return len(text.split())


def shadow_estimate() -> float:
    usd = COSTING.estimate(TARGET.qualified, words("What is the capital of France?"), 16)
    assert usd is not None
    return usd


def comparing(
    cloud: FakeCloud,
    tmp_path: Path,
    budget: Budget,
    settle: bool,
    judge: CloudTarget | None = None,
) -> list[ShadowOutcome]:
    """Offer one local answer; the report settles the calls' reservations when ``settle``
    (as the learner's records do), or keeps them (a report that records nothing)."""
    settings = load_settings(
        environ={"HYBRID_HOME": str(tmp_path)},
        dotenv_file=None,
        cli={
            "cloud.openai.api_key": cloud.openai_key,
            "cloud.openai.base_url": cloud.base_url + "/v1",
        },
    ).settings
    pool = build_providers(settings.cloud)
    reserving = Reserving(lambda: budget, COSTING.estimate, words)
    shadowing = Shadowing(
        rate=1.0,
        providers=pool.providers,
        usable=lambda provider: True,
        budget=reserving,
        agreement=0.5,
        judge=judge,
        rng=Random(0),
    )
    outcomes: list[ShadowOutcome] = []

    def report(outcome: ShadowOutcome) -> None:
        outcomes.append(outcome)
        assert budget.reservations == len(
            [c for c in (outcome.shadow, outcome.judge) if c is not None]
        )  # still held while the report records the calls
        for call in (outcome.shadow, outcome.judge):
            if settle and call is not None and call.reservation is not None:
                assert call.usage is not None
                cost = COSTING.cloud_cost(
                    call.target.qualified, call.usage.prompt_tokens, call.usage.completion_tokens
                )
                budget.settle(call.reservation, cost)

    async def run() -> None:
        try:
            shadowing.offer(QUESTION, "Paris", TARGET, report)
            await shadowing.drain()
        finally:
            await pool.aclose()

    asyncio.run(run())
    return outcomes


def budget_with(daily_usd: float | None) -> Budget:
    return Budget(BudgetSettings(daily_usd=daily_usd), SpendSeed(at=time.time()))


@pytest.mark.parametrize("settle", [True, False])
def test_a_shadow_call_reserves_and_leaves_nothing_reserved(
    cloud: FakeCloud, tmp_path: Path, settle: bool
) -> None:
    budget = budget_with(1.0)
    [outcome] = comparing(cloud, tmp_path, budget, settle)
    assert outcome.shadow.reservation is not None
    assert outcome.shadow.reservation.estimate_usd == pytest.approx(shadow_estimate())
    assert budget.reservations == 0
    spent = budget.spend()[0]
    assert (spent > 0) is settle  # settled: its real cost is spent; released: nothing


def test_a_shadow_call_whose_estimate_does_not_fit_is_not_sent(
    cloud: FakeCloud, tmp_path: Path
) -> None:
    budget = budget_with(shadow_estimate() / 2)
    assert comparing(cloud, tmp_path, budget, settle=True) == []
    assert cloud.requests == [] and budget.reservations == 0


def test_a_judge_that_does_not_fit_leaves_the_grade_to_word_overlap(
    cloud: FakeCloud, tmp_path: Path
) -> None:
    # Room for the shadow call, not for the judge's longer prompt at gpt-4.1's price.
    budget = budget_with(shadow_estimate() * 1.5)
    [outcome] = comparing(cloud, tmp_path, budget, settle=True, judge=JUDGE)
    assert outcome.judge is None and outcome.grade == Grade(True, 1.0, "match")
    assert len(cloud.requests) == 1 and budget.reservations == 0
