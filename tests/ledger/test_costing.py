"""Costs of cloud and local answers: spend, electricity, the counterfactual, cost avoided."""

from __future__ import annotations

import pytest

from hybrid.ledger.costing import Costing
from hybrid.ledger.prices import PriceTable
from hybrid.settings.ledger import EnergySettings, PricingSettings


def costing(default_model: str | None = None, **energy: float | None) -> Costing:
    return Costing(
        PriceTable.shipped(),
        EnergySettings(**energy),  # type: ignore[arg-type]
        reference_model=PricingSettings().reference_model,
        default_model=default_model,
    )


def test_the_documented_local_answer_is_priced_against_gpt_4_1_mini() -> None:
    costs = costing().for_local("openai/gpt-4.1-mini", 31, 12, cpu_seconds=0.0)
    # docs/events.md: 31 prompt and 12 completion tokens at $0.40 / $1.60 per 1M.
    assert costs.counterfactual_cost_usd == pytest.approx(0.0000316)
    assert costs.cloud_cost_usd == 0.0
    assert costs.price_known


def test_an_hour_of_cpu_at_15_watts_costs_its_electricity() -> None:
    # 15 W for 3600 s is 0.015 kWh, at $0.17 per kWh.
    assert costing().energy_cost(3600.0) == pytest.approx(0.015 * 0.17)


def test_measured_gpu_energy_is_added_and_gpu_watts_only_fill_in_for_it() -> None:
    base = costing(gpu_watts=100.0)
    joules_cost = 36_000 / 3.6e6 * 0.17
    assert base.energy_cost(0.0, gpu_joules=36_000.0) == pytest.approx(joules_cost)
    assert base.energy_cost(0.0, gpu_seconds=360.0) == pytest.approx(joules_cost)
    assert base.energy_cost(0.0, gpu_joules=0.0, gpu_seconds=360.0) == 0.0
    assert costing().energy_cost(0.0, gpu_seconds=360.0) == 0.0  # gpu_watts unset


def test_cost_avoided_is_the_counterfactual_minus_the_electricity() -> None:
    costs = costing(cpu_watts=15.0).for_local(None, 1000, 1000, cpu_seconds=10.0)
    assert costs.energy_cost_usd is not None and costs.counterfactual_cost_usd is not None
    assert costs.cost_avoided_usd == pytest.approx(
        costs.counterfactual_cost_usd - costs.energy_cost_usd
    )


def test_the_counterfactual_is_the_requested_model_then_the_default_then_the_reference() -> None:
    assert (
        costing("anthropic/claude-haiku-4-5").counterfactual_model("openai/gpt-4o")
        == "openai/gpt-4o"
    )
    assert (
        costing("anthropic/claude-haiku-4-5").counterfactual_model(None)
        == "anthropic/claude-haiku-4-5"
    )
    assert costing().counterfactual_model(None) == "openai/gpt-4.1-mini"


def test_an_unpriced_counterfactual_leaves_the_saving_unknown_not_zero() -> None:
    costs = costing().for_local("groq/llama-3.3-70b", 100, 100, cpu_seconds=1.0)
    assert costs.counterfactual_cost_usd is None and costs.cost_avoided_usd is None
    assert costs.energy_cost_usd is not None and costs.energy_cost_usd > 0
    assert not costs.price_known


def test_an_unpriced_cloud_model_is_flagged() -> None:
    assert costing().cloud_cost("groq/llama-3.3-70b", 100, 100) is None
    costs = costing().for_cloud("groq/llama-3.3-70b", 100, 100)
    assert costs.cloud_cost_usd is None and not costs.price_known


def test_a_cloud_answer_costs_what_its_provider_charges() -> None:
    costs = costing().for_cloud("openai/gpt-4.1-mini", 1_000_000, 0, cache_read_tokens=1_000_000)
    assert costs.cloud_cost_usd == pytest.approx(0.10)
    assert costs.cost_avoided_usd == 0.0 and costs.price_known


def test_a_cache_write_without_its_rate_is_flagged_and_not_priced() -> None:
    # gpt-4.1-mini has a cached-input rate but no cache-write rate (OpenAI reports no writes).
    costs = costing().for_cloud("openai/gpt-4.1-mini", 1000, 10, cache_write_tokens=200)
    assert costs.cloud_cost_usd is None and not costs.price_known


def test_a_discarded_cascade_leg_avoided_minus_its_electricity() -> None:
    costs = costing().for_discarded_local(cpu_seconds=3600.0)
    assert costs.cost_avoided_usd == pytest.approx(-0.015 * 0.17)
    assert costs.counterfactual_model is None
