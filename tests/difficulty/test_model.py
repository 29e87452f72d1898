"""The logistic difficulty model: fitting, the default threshold, scoring, its JSON form."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hybrid.errors import ConfigError
from hybrid.generation import Message
from hybrid.routing.difficulty.features import FEATURE_VERSION, N_DENSE, N_FEATURES, extract
from hybrid.routing.difficulty.model import DifficultyModel, choose_threshold, fit


def planted(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    rng = np.random.default_rng(seed)
    true_weights, true_bias = np.array([1.5, -2.0, 0.0, 0.7]), -0.3
    X = rng.normal(size=(n, 4))
    p = 1 / (1 + np.exp(-(X @ true_weights + true_bias)))
    y = (rng.random(n) < p).astype(float)
    return X, y, true_weights, true_bias


def test_fit_recovers_a_planted_logistic_model() -> None:
    X, y, true_weights, true_bias = planted(20_000, seed=1)
    weights, bias = fit(X, y, l2=1.0, seed=0)
    assert np.allclose(weights, true_weights, atol=0.1)
    assert bias == pytest.approx(true_bias, abs=0.1)


def test_fit_is_deterministic_and_the_penalty_shrinks_weights() -> None:
    X, y, _, _ = planted(500, seed=2)
    first, again = fit(X, y, l2=1.0, seed=0), fit(X, y, l2=1.0, seed=0)
    assert np.array_equal(first[0], again[0]) and first[1] == again[1]
    strong, _ = fit(X, y, l2=1000.0, seed=0)
    assert np.abs(strong).sum() < np.abs(first[0]).sum() / 3


def test_fit_stays_finite_on_separable_data() -> None:
    X = np.array([[-2.0], [-1.0], [1.0], [2.0]])
    weights, bias = fit(X, np.array([0.0, 0.0, 1.0, 1.0]), l2=0.1, seed=0)
    assert np.all(np.isfinite(weights)) and weights[0] > 0 and np.isfinite(bias)


def test_fit_refuses_a_zero_penalty_and_mismatched_labels() -> None:
    X, y, _, _ = planted(10, seed=3)
    with pytest.raises(ValueError, match="l2"):
        fit(X, y, l2=0.0, seed=0)
    with pytest.raises(ValueError, match="rows"):
        fit(X, y[:5], l2=1.0, seed=0)
    with pytest.raises(ValueError, match="positive weights"):
        fit(X, y, l2=1.0, seed=0, sample_weight=np.zeros(10))
    with pytest.raises(ValueError, match="positive weights"):
        fit(X, y, l2=1.0, seed=0, sample_weight=np.ones(5))


def test_a_weight_counts_as_that_many_copies_of_an_example() -> None:
    X, y, _, _ = planted(300, seed=4)
    weight = np.where(np.arange(300) < 100, 3.0, 1.0)
    copies = np.concatenate([np.arange(300), np.arange(100), np.arange(100)])
    weighted = fit(X, y, l2=1.0, seed=0, sample_weight=weight)
    copied = fit(X[copies], y[copies], l2=1.0, seed=0)
    assert np.allclose(weighted[0], copied[0], atol=1e-8)
    assert weighted[1] == pytest.approx(copied[1], abs=1e-8)
    # Equal weights of 1 are the unweighted fit, bit for bit.
    plain, ones = fit(X, y, l2=1.0, seed=0), fit(X, y, l2=1.0, seed=0, sample_weight=np.ones(300))
    assert np.array_equal(plain[0], ones[0]) and plain[1] == ones[1]
    # Weighing the first 100 more moves the fit toward what they alone say.
    alone = fit(X[:100], y[:100], l2=1.0, seed=0)
    assert np.abs(weighted[0] - alone[0]).sum() < np.abs(plain[0] - alone[0]).sum()


def test_the_threshold_makes_the_fewest_routing_mistakes() -> None:
    scores = np.array([0.1, 0.2, 0.3, 0.6, 0.7, 0.9])
    wrong = np.array([0, 0, 1, 0, 1, 1])
    # Above 0.25: one unneeded escalation (0.6); above 0.65: one miss (0.3).  Equal costs
    # tie, and the tie goes to escalating more.
    assert choose_threshold(scores, wrong) == pytest.approx(0.25)
    # When a miss costs more than a wasted escalation, nothing wrong may stay local.
    assert choose_threshold(scores, wrong, miss_cost=3.0) == pytest.approx(0.25)
    # When misses are cheap, keeping 0.3 local beats escalating the right 0.6 with it.
    assert choose_threshold(scores, wrong, miss_cost=0.5) == pytest.approx(0.65)


def test_all_right_or_all_wrong_gives_the_extreme_thresholds() -> None:
    scores = np.array([0.2, 0.5, 0.8])
    assert choose_threshold(scores, np.zeros(3)) == 1.0
    assert choose_threshold(scores, np.ones(3)) == 0.0


def model(threshold: float = 0.5, **meta: object) -> DifficultyModel:
    rng = np.random.default_rng(4)
    return DifficultyModel(
        weights=rng.normal(size=N_FEATURES) / 10,
        bias=-0.2,
        threshold=threshold,
        feature_version=FEATURE_VERSION,
        mean=rng.normal(size=N_FEATURES),
        scale=rng.uniform(0.5, 2.0, size=N_FEATURES),
        meta=meta,
    )


def test_the_score_is_a_probability_and_agrees_with_the_standardised_formula() -> None:
    difficulty = model()
    messages = [Message("user", "What is 347 * 912? Explain step by step.")]
    x = extract(messages).astype(float)
    z = (x - difficulty.mean) / difficulty.scale @ difficulty.weights + difficulty.bias
    assert difficulty.score(messages) == pytest.approx(1 / (1 + np.exp(-z)))
    assert 0.0 <= difficulty.score([]) <= 1.0
    batch = difficulty.scores(np.stack([x, x]))
    assert batch.tolist() == pytest.approx([difficulty.score(messages)] * 2)


def test_escalation_uses_the_users_threshold_or_else_the_calibrated_one() -> None:
    difficulty = model(threshold=0.6)
    assert difficulty.escalates(0.7) and not difficulty.escalates(0.5)
    assert difficulty.escalates(0.5, threshold=0.4)
    assert not difficulty.escalates(0.7, threshold=0.9)


def test_json_round_trip_keeps_the_scores_and_the_meta() -> None:
    original = model(threshold=0.42, model_sha256="ab" * 32, held_out_auroc=0.81)
    text = json.dumps(original.to_json())
    loaded = DifficultyModel.from_json(json.loads(text))
    messages = [Message("user", "Translate 'cat' to French.")]
    assert loaded.score(messages) == original.score(messages)
    assert loaded.threshold == 0.42
    assert loaded.meta == {"model_sha256": "ab" * 32, "held_out_auroc": 0.81}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"feature_version": FEATURE_VERSION + 1}, "features version"),
        ({"feature_names": ["a"]}, "features version"),
        ({"format": "something else"}, "not a hybrid difficulty model"),
        ({"format_version": 99}, "format version 99"),
        ({"weights": [0.0] * 3}, "damaged"),
        ({"weights": "nope"}, "damaged"),
        ({"threshold": 1.5}, "damaged"),
        ({"scale": [0.0] * N_FEATURES}, "damaged"),
        ({"bias": None}, "damaged"),
    ],
)
def test_a_bad_or_old_file_is_a_config_error_that_says_to_recalibrate(
    change: dict[str, object], message: str
) -> None:
    data = model().to_json() | change
    with pytest.raises(ConfigError, match=message) as caught:
        DifficultyModel.from_json(data)
    if message != "not a hybrid difficulty model":
        assert "hybrid calibrate" in str(caught.value)


def test_a_model_cannot_be_changed_after_it_is_built() -> None:
    difficulty = model()
    with pytest.raises(ValueError):
        difficulty.weights[0] = 1.0


def test_a_model_without_words_keeps_that_through_json_and_refuses_word_weights() -> None:
    worded = model()
    weights = worded.weights.copy()
    weights[N_DENSE:] = 0.0
    plain = DifficultyModel(
        weights=weights,
        bias=worded.bias,
        threshold=0.5,
        feature_version=FEATURE_VERSION,
        mean=worded.mean,
        scale=worded.scale,
        words=False,
    )
    data = json.loads(json.dumps(plain.to_json()))
    assert data["words"] is False
    assert DifficultyModel.from_json(data).words is False
    # A file written before the field reads the words, as its weights do.
    older = worded.to_json()
    del older["words"]
    assert DifficultyModel.from_json(older).words is True
    with pytest.raises(ConfigError, match="damaged"):
        DifficultyModel.from_json(worded.to_json() | {"words": "no"})
    with pytest.raises(ValueError, match="hashed words"):
        DifficultyModel(
            weights=worded.weights,
            bias=0.0,
            threshold=0.5,
            feature_version=FEATURE_VERSION,
            mean=worded.mean,
            scale=worded.scale,
            words=False,
        )
