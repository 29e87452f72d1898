"""AUROC, the routing curve, APGR and CPT on cases small enough to work out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hybrid.routing.calibration.metrics import auroc, routing_curve

WRONG = np.array([1, 0, 1, 0])
SCORES = np.array([0.9, 0.8, 0.7, 0.1])


def test_auroc_counts_the_pairs_ranked_right_and_ties_as_half() -> None:
    # Pairs (wrong, right): 0.35>0.1, 0.35<0.4, 0.8>0.1, 0.8>0.4 -> 3 of 4.
    assert auroc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == 0.75
    assert auroc(np.array([0.5, 0.5]), np.array([1, 0])) == 0.5
    assert auroc(np.array([0.2, 0.9]), np.array([1, 0])) == 0.0
    assert math.isnan(auroc(np.array([0.2, 0.9]), np.array([1, 1])))


def test_the_curve_gains_quality_only_when_a_wrong_answer_is_escalated() -> None:
    curve = routing_curve(SCORES, WRONG)
    assert curve.shares.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert curve.quality.tolist() == [0.5, 0.75, 0.75, 1.0, 1.0]
    assert curve.local_quality == 0.5
    assert curve.pgr().tolist() == [0.0, 0.5, 0.5, 1.0, 1.0]


def test_apgr_is_the_area_under_the_pgr_curve() -> None:
    # Trapezoids of width 0.25: (0+.5)/2 + (.5+.5)/2 + (.5+1)/2 + (1+1)/2, times 0.25.
    assert routing_curve(SCORES, WRONG).apgr() == pytest.approx(0.625)


def test_cpt_is_the_smallest_share_reaching_the_recovered_gap() -> None:
    curve = routing_curve(SCORES, WRONG)
    assert curve.cpt(0.5) == pytest.approx(0.25)
    # PGR goes from 0.5 at 50 % to 1.0 at 75 %: 0.8 is 60 % of the way.
    assert curve.cpt(0.8) == pytest.approx(0.65)
    # Quality goes from 0.75 at 50 % to 1.0 at 75 %: 0.95 is 80 % of the way.
    assert curve.share_for_quality(0.95) == pytest.approx(0.7)


def test_a_random_router_is_the_diagonal() -> None:
    curve = routing_curve(np.zeros(4), WRONG)
    assert curve.shares.tolist() == [0.0, 1.0]
    assert curve.apgr() == pytest.approx(0.5)
    assert curve.cpt(0.5) == pytest.approx(0.5)
    assert curve.cpt(0.8) == pytest.approx(0.8)
    assert curve.quality_at(0.5) == pytest.approx(0.75)


def test_the_oracle_recovers_the_gap_by_escalating_only_the_wrong_answers() -> None:
    curve = routing_curve(WRONG.astype(float), WRONG)
    # PGR rises from 0 to 1 over the first half, then stays at 1: 0.25 + 0.5.
    assert curve.apgr() == pytest.approx(0.75)
    assert curve.cpt(0.8) == pytest.approx(0.4)
    assert curve.share_for_quality(1.0) == pytest.approx(0.5)


def test_ties_are_escalated_together_at_their_expected_quality() -> None:
    curve = routing_curve(np.array([0.9, 0.5, 0.5, 0.1]), np.array([0, 1, 0, 0]))
    assert curve.shares.tolist() == [0.0, 0.25, 0.75, 1.0]
    assert curve.quality.tolist() == [0.75, 0.75, 1.0, 1.0]
    assert curve.quality_at(0.5) == pytest.approx(0.875)


def test_a_perfect_local_model_has_nothing_to_recover() -> None:
    curve = routing_curve(np.array([0.3, 0.6]), np.array([0, 0]))
    assert curve.apgr() == 1.0
    assert curve.cpt(0.8) == 0.0
    assert curve.share_for_quality(0.95) == 0.0


def test_empty_or_mismatched_inputs_are_refused() -> None:
    with pytest.raises(ValueError):
        routing_curve(np.array([]), np.array([]))
    with pytest.raises(ValueError):
        routing_curve(np.array([0.1, 0.2]), np.array([1]))
