"""A score read beside the recent requests most like it: 0.2 x its own plus 0.8 x the mean own
score of its nearest, by the cosine of the standardised features (none below 0.3); one model's
memory at a time, bounded."""

from __future__ import annotations

import math

import numpy as np
import pytest
from kinds_of_request import asked, model, request

from hybrid.generation import Message
from hybrid.routing.difficulty.features import N_DENSE, N_FEATURES, extract
from hybrid.routing.difficulty.recent import WEIGHT, RecentScores, standardised_unit
from hybrid.routing.policies.difficulty import DifficultyPolicy


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_the_first_request_keeps_its_own_score_and_the_next_is_read_beside_it() -> None:
    recent, scorer = RecentScores(10), model()

    first, own_first = recent.score(scorer, request(0, 1.0))
    second, own_second = recent.score(scorer, request(0, -1.0))

    assert first == own_first == pytest.approx(sigmoid(1.0))
    assert own_second == pytest.approx(sigmoid(-1.0))
    assert second == pytest.approx((1 - WEIGHT) * own_second + WEIGHT * own_first)


def test_a_score_is_read_beside_the_nearest_of_its_own_kind() -> None:
    recent, scorer = RecentScores(3), model()
    mine = [recent.score(scorer, request(0, d))[1] for d in (2.0, 1.5, 2.5)]
    for d in (-3.0, -2.0, -2.5, -1.0):  # another kind, easy
        recent.score(scorer, request(1, d))

    score, own = recent.score(scorer, request(0, 0.0))

    assert score == pytest.approx((1 - WEIGHT) * own + WEIGHT * float(np.mean(mine)))


def test_another_model_starts_the_memory_afresh() -> None:
    recent = RecentScores(10)
    recent.score(model(), request(0, 3.0))
    refitted = model(np.where(np.arange(N_FEATURES) == 0, 2.0, 0.0))

    score, own = recent.score(refitted, request(0, 0.5))

    assert score == own == pytest.approx(sigmoid(1.0))


def test_the_memory_holds_the_last_requests_only() -> None:
    recent, scorer = RecentScores(2, size=2), model()
    for d in (4.0, -1.0, 1.0):  # the first is forgotten
        recent.score(scorer, request(0, d))

    score, own = recent.score(scorer, request(0, 0.0))

    assert score == pytest.approx((1 - WEIGHT) * own + WEIGHT * (sigmoid(-1.0) + sigmoid(1.0)) / 2)


def test_a_request_unlike_every_recent_one_is_scored_alone() -> None:
    recent, scorer = RecentScores(10), model()
    for d in (3.0, 2.0, 2.5):
        recent.score(scorer, request(0, d))

    score, own = recent.score(scorer, request(1, -2.0))  # another kind: cosine 0

    assert score == own == pytest.approx(sigmoid(-2.0))


def test_the_policy_reads_scores_beside_recent_requests_only_when_asked() -> None:
    scorer = model(np.full(N_FEATURES, 0.01))

    prompts = ("What is 12 times 7?", "What is 13 times 8?")
    own = [scorer.score_features(extract((Message("user", p),))) for p in prompts]
    alone = DifficultyPolicy(lambda: scorer, threshold=0.5)
    beside = DifficultyPolicy(lambda: scorer, threshold=0.5, neighbours=10)

    assert [alone.evaluate(asked(p)).score for p in prompts] == pytest.approx(own)
    first, second = (beside.evaluate(asked(p)).score for p in prompts)
    assert first == pytest.approx(own[0])
    assert second == pytest.approx((1 - WEIGHT) * own[1] + WEIGHT * own[0])
    with pytest.raises(ValueError, match="at least 1"):
        RecentScores(0)


def test_a_model_without_words_compares_recent_requests_without_them() -> None:
    plain = model(words=False)
    # Two requests alike only in their hashed words: alike to a model that reads them.
    first, second = np.zeros(N_FEATURES), np.zeros(N_FEATURES)
    first[0], second[0] = 1.0, -1.0
    first[N_DENSE:] = second[N_DENSE:] = 5.0
    unit = standardised_unit(plain, first)
    assert not unit[N_DENSE:].any() and np.linalg.norm(unit) == pytest.approx(1.0)
    for scorer, beside in ((model(), True), (plain, False)):
        recent = RecentScores(10)
        recent.score(scorer, first)
        score, own = recent.score(scorer, second)
        assert (score != pytest.approx(own)) is beside
