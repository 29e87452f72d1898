"""Fitting the difficulty model to graded answers: train on one split, measure on the other."""

from __future__ import annotations

import numpy as np
import pytest

from hybrid.routing.calibration.fitting import (
    WORD_WEIGHT,
    Calibration,
    calibrate,
    feature_matrix,
    prompt_length,
    train_feature_model,
    train_model,
)
from hybrid.routing.calibration.item import CalibrationItem
from hybrid.routing.calibration.items import CATEGORIES, calibration_set
from hybrid.routing.difficulty.features import N_DENSE

ITEMS = calibration_set(0, per_category=12)
GRID = (1.0, 10.0)  # two penalties keep the cross-validation quick


def easy_chat(items: list[CalibrationItem]) -> list[bool]:
    """A local model that only manages chat."""
    return [item.category == "chat" for item in items]


@pytest.fixture(scope="module")
def chat_calibration() -> Calibration:
    return calibrate(
        ITEMS, easy_chat(ITEMS), seed=0, meta={"model_sha256": "ab" * 32}, l2_grid=GRID
    )


def test_the_model_learns_which_prompts_the_local_model_gets_right(
    chat_calibration: Calibration,
) -> None:
    assert chat_calibration.held_out_auroc > 0.9
    model = chat_calibration.model
    held_out = chat_calibration.held_out
    chat = [model.score(i.messages) for i in held_out if i.category == "chat"]
    others = [model.score(i.messages) for i in held_out if i.category != "chat"]
    assert np.mean(chat) < 0.5 < np.mean(others)
    escalated = [model.escalates(s) for s in others]
    assert sum(escalated) >= 0.8 * len(others)


def test_the_meta_says_how_the_model_was_made(chat_calibration: Calibration) -> None:
    meta = chat_calibration.model.meta
    assert meta["model_sha256"] == "ab" * 32
    assert meta["items"] == len(ITEMS)
    assert meta["train_items"] == len(chat_calibration.train)
    assert meta["held_out_items"] == len(chat_calibration.held_out) == 4 * len(CATEGORIES)
    assert meta["local_accuracy"] == round(1 / len(CATEGORIES), 4)
    assert meta["category_accuracy"] == {
        category: (1.0 if category == "chat" else 0.0)
        for category in dict.fromkeys(i.category for i in ITEMS)
    }
    assert meta["held_out_auroc"] == round(chat_calibration.held_out_auroc, 4)
    assert meta["held_out_length_auroc"] == round(chat_calibration.held_out_length_auroc, 4)
    assert meta["seed"] == 0 and meta["l2"] in GRID


def test_the_figures_measure_a_fit_on_the_split_and_the_model_is_fitted_on_every_item(
    chat_calibration: Calibration,
) -> None:
    wrong = np.array([not ok for ok in easy_chat(ITEMS)], dtype=float)
    whole, _, _ = train_feature_model(feature_matrix(ITEMS), wrong, seed=0, l2_grid=GRID)
    assert np.array_equal(chat_calibration.model.weights, whole.weights)
    assert chat_calibration.model.threshold == whole.threshold
    train = chat_calibration.train
    part, _, _ = train_feature_model(
        feature_matrix(train),
        np.array([not ok for ok in easy_chat(train)], dtype=float),
        seed=0,
        l2_grid=GRID,
    )
    measured = chat_calibration.measured
    assert measured is not None and np.array_equal(measured.weights, part.weights)
    assert not np.array_equal(measured.weights, whole.weights)
    # The held-out figures are the split's fit's: it never saw the held-out items.
    held_out = feature_matrix(chat_calibration.held_out)
    assert np.allclose(chat_calibration.held_out_scores, measured.scores(held_out))
    assert {item.id for item in train}.isdisjoint(i.id for i in chat_calibration.held_out)
    meta = chat_calibration.model.meta
    assert meta["items"] == len(ITEMS) == meta["train_items"] + meta["held_out_items"]


def test_the_length_rule_is_measured_on_the_same_held_out_items(
    chat_calibration: Calibration,
) -> None:
    held_out = chat_calibration.held_out
    wrong = [item.category != "chat" for item in held_out]
    # AUROC by hand: the share of (wrong, right) pairs where the wrong prompt is longer.
    pairs = [
        (prompt_length(w), prompt_length(r))
        for w, is_wrong in zip(held_out, wrong, strict=True)
        if is_wrong
        for r, r_wrong in zip(held_out, wrong, strict=True)
        if not r_wrong
    ]
    expected = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in pairs) / len(pairs)
    assert chat_calibration.held_out_length_auroc == pytest.approx(expected)
    assert chat_calibration.held_out_wrong.tolist() == [float(w) for w in wrong]


def test_fitting_is_reproducible_for_a_seed() -> None:
    X = feature_matrix(ITEMS[:60])
    wrong = np.array([i % 3 == 0 for i in range(60)], dtype=float)
    first, _ = train_model(X, wrong, seed=3, l2_grid=GRID)
    again, _ = train_model(X, wrong, seed=3, l2_grid=GRID)
    assert np.array_equal(first.weights, again.weights)
    assert (first.bias, first.threshold) == (again.bias, again.threshold)


def test_a_model_that_gets_everything_wrong_escalates_everything() -> None:
    model, cv_auroc = train_model(feature_matrix(ITEMS[:30]), np.ones(30), seed=0)
    assert model.threshold == 0.0
    assert all(model.escalates(model.score(i.messages)) for i in ITEMS[30:60])
    assert np.isnan(cv_auroc)


def test_grades_must_match_the_items() -> None:
    with pytest.raises(ValueError, match="grades"):
        calibrate(ITEMS, [True], seed=0)


def test_a_word_weight_of_zero_leaves_the_hashed_words_out_and_the_default_brings_them_in() -> None:
    X = feature_matrix(ITEMS)
    wrong = np.array([not ok for ok in easy_chat(ITEMS)], dtype=float)
    plain, _, _ = train_feature_model(X, wrong, seed=0, l2_grid=GRID, word_weight=0.0)
    assert not plain.words
    assert not plain.weights[N_DENSE:].any() and plain.weights[:N_DENSE].any()
    # Another prompt's words change nothing: the score reads the hand-made features only.
    other = X[0].copy()
    other[N_DENSE:] = X[-1, N_DENSE:] + 1.0
    assert plain.score_features(other) == pytest.approx(plain.score_features(X[0]))
    worded, _ = train_model(X, wrong, seed=0, l2_grid=GRID)
    assert WORD_WEIGHT == 0.3 and worded.words and worded.weights[N_DENSE:].any()
    assert np.allclose(worded.scale[N_DENSE:], 1 / WORD_WEIGHT)
    assert worded.score_features(other) != pytest.approx(worded.score_features(X[0]))
    with_words = calibrate(ITEMS, easy_chat(ITEMS), seed=0, l2_grid=GRID, word_weight=1.0)
    assert with_words.model.words and with_words.model.weights[N_DENSE:].any()
    assert np.allclose(with_words.model.scale[N_DENSE:], 1.0)


@pytest.mark.parametrize("weight", [-0.5, float("nan"), float("inf")])
def test_a_word_weight_must_be_a_finite_number_not_below_zero(weight: float) -> None:
    with pytest.raises(ValueError, match="word_weight"):
        train_feature_model(feature_matrix(ITEMS[:20]), np.ones(20), seed=0, word_weight=weight)
