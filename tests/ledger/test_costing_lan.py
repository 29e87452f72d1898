"""Costs of a LAN answer: lan.usd_per_1m_tokens, taken off what the cloud would have charged."""

from __future__ import annotations

import math

import pytest

from hybrid.ledger.costing import Costing
from hybrid.ledger.prices import PriceTable
from hybrid.settings.ledger import EnergySettings, PricingSettings


def costing(rate: float = 0.0, default_model: str | None = None) -> Costing:
    return Costing(
        PriceTable.shipped(),
        EnergySettings(cpu_watts=15.0),
        reference_model=PricingSettings().reference_model,
        default_model=default_model,
        lan_usd_per_1m_tokens=rate,
    )


def test_a_lan_answer_costs_its_tokens_at_the_lan_price_and_saves_the_rest() -> None:
    costs = costing(rate=2.0).for_lan("openai/gpt-4.1-mini", 1000, 500)

    # 1,500 tokens at $2 per million; gpt-4.1-mini charges $0.40 / $1.60 per million.
    assert costs.energy_cost_usd == pytest.approx(0.003)
    assert costs.counterfactual_model == "openai/gpt-4.1-mini"
    assert costs.counterfactual_cost_usd == pytest.approx(0.0004 + 0.0008)
    assert costs.cost_avoided_usd == pytest.approx(0.0012 - 0.003)
    assert costs.cloud_cost_usd == 0.0
    assert costs.price_known


def test_at_the_default_price_a_lan_answer_saves_the_whole_counterfactual() -> None:
    costs = costing().for_lan("openai/gpt-4.1-mini", 31, 12)

    assert costs.energy_cost_usd == 0.0
    assert costs.cost_avoided_usd == pytest.approx(0.0000316)


def test_without_a_cloud_target_it_is_compared_with_the_default_then_the_reference() -> None:
    assert costing(default_model="openai/gpt-4o").for_lan(None, 10, 10).counterfactual_model == (
        "openai/gpt-4o"
    )
    assert costing().for_lan(None, 10, 10).counterfactual_model == "openai/gpt-4.1-mini"


def test_an_unpriced_counterfactual_leaves_cost_avoided_unknown_not_zero() -> None:
    costs = costing(rate=1.0).for_lan("acme/unknown-model", 1000, 1000)

    assert costs.counterfactual_cost_usd is None
    assert costs.cost_avoided_usd is None
    assert not costs.price_known
    assert costs.energy_cost_usd == pytest.approx(0.002)  # what the server cost is still known
    assert costs.cloud_cost_usd == 0.0


def test_the_cpu_the_process_spends_is_not_a_lan_answers_cost() -> None:
    # A local answer would be charged electricity; a LAN answer ran on another machine.
    local = costing(rate=0.0).for_local(None, 100, 100, cpu_seconds=3600.0)
    lan = costing(rate=0.0).for_lan(None, 100, 100)

    assert local.energy_cost_usd is not None and local.energy_cost_usd > 0
    assert lan.energy_cost_usd == 0.0


@pytest.mark.parametrize("rate", [-0.01, math.inf, math.nan])
def test_a_price_that_is_not_a_finite_amount_is_refused_with_the_setting_named(
    rate: float,
) -> None:
    with pytest.raises(ValueError, match=r"lan\.usd_per_1m_tokens"):
        costing(rate=rate)
