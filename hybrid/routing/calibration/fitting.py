"""Fitting the difficulty model to graded calibration answers.

The recipe, shared by ``hybrid calibrate`` and ``scripts/eval_router.py``:

1. split the items into training and held-out parts, stratified by category;
2. centre the features on the training part's mean, and scale the hand-made ones by its
   standard deviation; the hashed word n-grams are left out unless given a weight
   (:data:`WORD_WEIGHT`), their counts multiplied by it;
3. choose the L2 penalty by k-fold cross-validation on the training part (lowest
   out-of-fold log loss);
4. choose the default threshold on the out-of-fold scores (see
   :func:`~hybrid.routing.difficulty.model.choose_threshold`);
5. fit on the whole training part, and measure AUROC on the held-out part only, beside the
   AUROC of the simplest rule, "escalate the longest prompts first" (:func:`prompt_length`),
   on the same held-out items;
6. when the local model's prompt vectors were recorded, fit the model stage on the training
   part too (:mod:`hybrid.routing.calibration.probe_fitting`: penalty, blend, band and
   threshold by cross-validation that leaves whole families out, given the feature stage's
   scores from models fitted without each family: :func:`out_of_family_scores`) and measure
   the two stages together on the held-out part;
7. fit both stages again, by the same steps, on every item: the model returned.  The held-out
   figures measure the recipe; the model it makes from all the items is steadier on prompts
   of kinds it never saw than one made from a part of them (``docs/router-eval.md``, *Fitted
   on a part or on every item*).

Everything is deterministic for a seed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from random import Random

import numpy as np

from hybrid.routing.calibration.item import CalibrationItem
from hybrid.routing.calibration.items import split
from hybrid.routing.calibration.metrics import auroc
from hybrid.routing.calibration.probe_fitting import (
    ProbeFit,
    fold_ids,
    train_probe,
    two_stage_scores,
)
from hybrid.routing.difficulty.features import FEATURE_VERSION, N_DENSE, extract
from hybrid.routing.difficulty.model import DifficultyModel, choose_threshold, fit

L2_GRID: tuple[float, ...] = (0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0)
"""Penalties tried by cross-validation."""

DEFAULT_L2 = 10.0
"""Penalty used when the training part is too small to cross-validate."""

FOLDS = 5

WORD_WEIGHT = 0.3
"""The weight of the hashed word n-grams against the hand-made features: their log counts are
multiplied by it before the fit (a smaller weight is a stronger penalty on them), and 0 leaves
them out.  Chosen on the public sets standing in for a user's traffic (real prompts never
fitted on): at 0.3 the router fitted on the generated families ranks them best, and the
held-back development sets, read with the whole cascade, agree within 0.005.  At weight 1 the
words learn the generated families' phrasing, which carries from one generated family to
another but not to prompts nobody here wrote.  ``scripts/eval_router.py`` reports the weights
:data:`WORD_WEIGHTS` and says which the traffic sets choose."""

WORD_WEIGHTS: tuple[float, ...] = (0.0, 0.3, 1.0)
"""The word weights the evaluation compares."""


@dataclass(frozen=True, eq=False)
class Calibration:
    """A fitted model and how it did.

    Attributes:
        model: The model fitted on every item (its ``meta`` holds the figures below too).
        train: The training items.
        held_out: The held-out items.
        held_out_wrong: 1 where the local answer to a held-out item was wrong.
        held_out_scores: The model's scores of the held-out items.
        held_out_auroc: AUROC of those scores against wrong answers (NaN if one class).
        held_out_length_auroc: AUROC of the prompts' lengths against the same wrong answers:
            how well the length rule ranks the same items (NaN if one class).
        held_out_two_stage_scores: The two stages' scores of the held-out items
            (:func:`~hybrid.routing.calibration.probe_fitting.two_stage_scores`), when the
            model has a probe; None otherwise.
        probe_fit: How the probe of :attr:`model` was chosen, when it has one.
        measured: The model fitted on :attr:`train` alone, with its probe, whose held-out
            scores these are (:attr:`model`'s stages when nothing is held out).
    """

    model: DifficultyModel
    train: list[CalibrationItem]
    held_out: list[CalibrationItem]
    held_out_wrong: np.ndarray
    held_out_scores: np.ndarray
    held_out_auroc: float
    held_out_length_auroc: float
    held_out_two_stage_scores: np.ndarray | None = None
    probe_fit: ProbeFit | None = None
    measured: DifficultyModel | None = None


Vector = Sequence[float] | np.ndarray
"""One prompt vector (``ItemAnswer.embedding``)."""


def prompt_length(item: CalibrationItem) -> float:
    """The length rule's score of an item: its conversation's length in characters."""
    return float(sum(len(message.content) for message in item.messages))


def feature_matrix(items: Sequence[CalibrationItem]) -> np.ndarray:
    """One feature row per item, from the conversation it shows first."""
    return np.stack([extract(item.messages) for item in items]).astype(np.float64)


def calibrate(
    items: Sequence[CalibrationItem],
    correct: Sequence[bool],
    *,
    seed: int,
    held_out: float = 0.3,
    meta: Mapping[str, object] | None = None,
    l2_grid: Sequence[float] = L2_GRID,
    vectors: Sequence[Vector | None] | None = None,
    word_weight: float = WORD_WEIGHT,
) -> Calibration:
    """Fit the difficulty model on the training split and evaluate it on the held-out one,
    then fit the model returned on every item by the same steps.

    Args:
        items: The calibration set.
        correct: Whether the local model answered each item right, in the same order.
        seed: Seeds the split and the cross-validation folds.
        held_out: Share of each category held out.
        meta: Extra entries for the model's ``meta`` (model hash, date, ...).
        l2_grid: Penalties the cross-validation chooses from.
        vectors: The local model's prompt vector of each item (None for an item without
            one), in the same order; when given, the model gets a probe fitted on the
            training items that have one.
        word_weight: The hashed word n-grams' weight (:data:`WORD_WEIGHT`).

    Returns:
        The model, whose ``meta`` adds ``seed``, ``items`` (all of which it was fitted on),
        ``train_items`` and ``held_out_items`` (the split the figures were measured on),
        ``local_accuracy``, ``category_accuracy``, ``l2``, ``cv_auroc``, ``held_out_auroc``
        and ``held_out_length_auroc`` (None where undefined) to ``meta``, and with a probe
        ``probe_l2``, ``probe_band_share``, ``probe_cv_auroc``, ``two_stage_cv_auroc`` and
        ``held_out_two_stage_auroc``.  ``l2``, ``cv_auroc`` and the probe's choices are the
        returned model's; the held-out figures are the training split's fit's.

    Raises:
        ValueError: ``items``, ``correct`` and ``vectors`` differ in length, or the vectors
            differ in length from each other.
        ConfigError: ``held_out`` is not between 0 and 1.
    """
    if len(items) != len(correct):
        raise ValueError(f"{len(items)} items but {len(correct)} grades")
    if vectors is not None and len(vectors) != len(items):
        raise ValueError(f"{len(items)} items but {len(vectors)} prompt vectors")
    right = {item.id: ok for item, ok in zip(items, correct, strict=True)}
    vector_of = (
        None
        if vectors is None
        else {
            item.id: np.asarray(v, dtype=np.float64)
            for item, v in zip(items, vectors, strict=True)
            if v is not None
        }
    )
    train, test = split(items, seed=seed, held_out=held_out)
    test_wrong = np.array([not right[item.id] for item in test], dtype=np.float64)

    def fit_stages(
        part: Sequence[CalibrationItem],
    ) -> tuple[DifficultyModel, float, ProbeFit | None]:
        wrong = np.array([not right[item.id] for item in part], dtype=np.float64)
        return _fit_stages(
            part, wrong, vector_of, seed=seed, l2_grid=l2_grid, word_weight=word_weight
        )

    measured, measured_cv, measured_probe = fit_stages(train)
    if measured_probe is not None:
        measured = replace(measured, probe=measured_probe.probe)
    if test:
        model, cv_auroc, probe_fit = fit_stages(items)
    else:  # nothing held out: the training split is every item
        model, cv_auroc, probe_fit = measured, measured_cv, measured_probe
    test_scores = measured.scores(feature_matrix(test)) if test else np.zeros(0)
    two_stage: np.ndarray | None = None
    if measured_probe is not None and vector_of is not None:
        probe = measured_probe.probe
        # An item without a vector (a prompt the model cannot take) keeps its feature score.
        settled = np.array(
            [
                probe.settle(score, probe.score(vector_of[item.id]))
                if item.id in vector_of
                else score
                for item, score in zip(test, test_scores, strict=True)
            ]
        )
        two_stage = np.where(
            [item.id in vector_of for item in test],
            two_stage_scores(test_scores, settled, probe.band),
            test_scores,
        )
    test_auroc = auroc(test_scores, test_wrong) if test else math.nan
    lengths = np.array([prompt_length(item) for item in test])
    length_auroc = auroc(lengths, test_wrong) if test else math.nan
    by_category: dict[str, list[bool]] = {}
    for item, ok in zip(items, correct, strict=True):
        by_category.setdefault(item.category, []).append(ok)
    figures: dict[str, object] = {
        **(meta or {}),
        "seed": seed,
        "items": len(items),
        "train_items": len(train),
        "held_out_items": len(test),
        "local_accuracy": rounded(sum(correct) / max(len(correct), 1)),
        "category_accuracy": {
            category: rounded(sum(oks) / len(oks)) for category, oks in by_category.items()
        },
        "l2": model.meta["l2"],
        "cv_auroc": rounded(cv_auroc),
        "held_out_auroc": rounded(test_auroc),
        "held_out_length_auroc": rounded(length_auroc),
    }
    if probe_fit is not None:
        figures |= {
            "probe_l2": probe_fit.l2,
            "probe_band_share": probe_fit.band_share,
            "probe_cv_auroc": rounded(probe_fit.cv_probe_auroc),
            "two_stage_cv_auroc": rounded(probe_fit.cv_two_stage_auroc),
            "held_out_two_stage_auroc": (
                rounded(auroc(two_stage, test_wrong)) if test and two_stage is not None else None
            ),
        }
    final = DifficultyModel(
        weights=model.weights,
        bias=model.bias,
        threshold=model.threshold,
        feature_version=model.feature_version,
        mean=model.mean,
        scale=model.scale,
        meta=figures,
        probe=None if probe_fit is None else probe_fit.probe,
        words=model.words,
    )
    return Calibration(
        final,
        train,
        test,
        test_wrong,
        test_scores,
        test_auroc,
        length_auroc,
        two_stage,
        probe_fit,
        measured,
    )


def _fit_stages(
    items: Sequence[CalibrationItem],
    wrong: np.ndarray,
    vector_of: Mapping[str, np.ndarray] | None,
    *,
    seed: int,
    l2_grid: Sequence[float],
    word_weight: float,
) -> tuple[DifficultyModel, float, ProbeFit | None]:
    """The feature stage fitted on ``items`` (:func:`train_feature_model`), its
    cross-validated AUROC, and the model stage fitted on those of them with a prompt vector
    (None when ``vector_of`` is None or fewer than two have one)."""
    model, cv_auroc, _ = train_feature_model(
        feature_matrix(items), wrong, seed=seed, l2_grid=l2_grid, word_weight=word_weight
    )
    usable = [i for i, item in enumerate(items) if vector_of is not None and item.id in vector_of]
    if vector_of is None or len(usable) < 2:
        return model, cv_auroc, None
    kept = [items[i] for i in usable]
    probe_fit = train_probe(
        np.stack([vector_of[item.id] for item in kept]),
        wrong[usable],
        feature_scores=out_of_family_scores(
            kept, wrong[usable], seed=seed, l2_grid=l2_grid, word_weight=word_weight
        ),
        feature_threshold=model.threshold,
        groups=[item.category for item in kept],
        seed=seed,
    )
    return model, cv_auroc, probe_fit


def train_model(
    X: np.ndarray, wrong: np.ndarray, *, seed: int, l2_grid: Sequence[float] = L2_GRID
) -> tuple[DifficultyModel, float]:
    """Standardise, choose the penalty and the threshold by cross-validation, and fit.

    Args:
        X: ``(n, N_FEATURES)`` raw features of the training items.
        wrong: 1 where the local answer was wrong.
        seed: Seeds the fold assignment.
        l2_grid: Penalties to try.

    Returns:
        The model (``meta`` holds only ``l2``) and its cross-validated AUROC (NaN when the
        data is too small, or of one class, to cross-validate).
    """
    model, cv_auroc, _ = train_feature_model(X, wrong, seed=seed, l2_grid=l2_grid)
    return model, cv_auroc


def train_feature_model(
    X: np.ndarray,
    wrong: np.ndarray,
    *,
    seed: int,
    l2_grid: Sequence[float] = L2_GRID,
    sample_weight: np.ndarray | None = None,
    word_weight: float = WORD_WEIGHT,
) -> tuple[DifficultyModel, float, np.ndarray]:
    """:func:`train_model`, also returning the out-of-fold scores it chose the threshold on.

    ``sample_weight`` (None: all 1) weighs each item in the fit and in the cross-validated
    loss the penalty is chosen by.  ``word_weight``: the hashed word n-grams' weight
    (:data:`WORD_WEIGHT`; their scale is its inverse; at 0 they are left out of the fit: weight
    0, mean 0, scale 1).

    Raises:
        ValueError: ``word_weight`` is negative or not finite.

    Returns:
        The model, its cross-validated AUROC, and each training item's out-of-fold score (the
        fitted model's own scores when the data cannot be cross-validated).
    """
    if not (math.isfinite(word_weight) and word_weight >= 0):
        raise ValueError(f"word_weight must be a finite number >= 0 (got {word_weight})")
    words = word_weight > 0
    X = np.array(X, dtype=np.float64)
    if not words:
        X[:, N_DENSE:] = 0.0
    wrong = np.asarray(wrong, dtype=np.float64)
    mean = X.mean(axis=0) if len(X) else np.zeros(X.shape[1])
    scale = X.std(axis=0) if len(X) else np.ones(X.shape[1])
    scale = np.where(scale > 1e-9, scale, 1.0)  # constant features stay as they are
    # Hashed n-gram counts keep their own scale, times the word weight: dividing by the standard
    # deviation would blow up a bucket seen in two prompts until the penalty hardly restrains
    # its weight.
    scale[N_DENSE:] = 1.0 / word_weight if words else 1.0
    Z = (X - mean) / scale
    if not words:  # fitted on the hand-made features alone; the words' weights stay 0
        Z = Z[:, :N_DENSE]
    folds = _fold_ids(wrong, seed)
    if folds is None:
        l2, cv_auroc = DEFAULT_L2, math.nan
        weights, bias = fit(Z, wrong, l2=l2, seed=seed, sample_weight=sample_weight)
        threshold_scores = _logistic(Z @ weights + bias)
    else:
        best: tuple[float, float, np.ndarray] | None = None
        for candidate in l2_grid:
            scores = _out_of_fold(
                Z, wrong, folds, l2=candidate, seed=seed, sample_weight=sample_weight
            )
            loss = _log_loss(scores, wrong, sample_weight)
            if best is None or loss < best[0] - 1e-12:
                best = (loss, candidate, scores)
        assert best is not None  # l2_grid is not empty
        _, l2, threshold_scores = best
        cv_auroc = auroc(threshold_scores, wrong)
        weights, bias = fit(Z, wrong, l2=l2, seed=seed, sample_weight=sample_weight)
    weights = np.concatenate([weights, np.zeros(X.shape[1] - len(weights))])
    model = DifficultyModel(
        weights=weights,
        bias=bias,
        threshold=choose_threshold(threshold_scores, wrong),
        feature_version=FEATURE_VERSION,
        mean=mean,
        scale=scale,
        meta={"l2": l2},
        words=words,
    )
    return model, cv_auroc, threshold_scores


def out_of_family_scores(
    items: Sequence[CalibrationItem],
    wrong: np.ndarray,
    *,
    seed: int,
    l2_grid: Sequence[float] = L2_GRID,
    word_weight: float = WORD_WEIGHT,
) -> np.ndarray:
    """Each item's feature-stage score from a model fitted without the item's family.

    The families (categories) are dealt whole to folds
    (:func:`~hybrid.routing.calibration.probe_fitting.fold_ids`; stratified folds when there
    are fewer than three), and each fold is scored by :func:`train_feature_model` fitted on the
    others, penalty and all.  These are the scores the model stage's band and blend are chosen
    on: scores of a kind of prompt the feature stage has not seen, as a user's requests are.

    Args:
        items: The training items.
        wrong: 1 where the local answer was wrong.
        seed: Seeds the folds.
        l2_grid: Penalties each fold's model chooses from.
        word_weight: The hashed word n-grams' weight (:data:`WORD_WEIGHT`).

    Returns:
        One score per item (the ordinary out-of-fold scores when the data cannot be split).
    """
    wrong = np.asarray(wrong, dtype=np.float64)
    X = feature_matrix(items)
    folds = fold_ids(wrong, [item.category for item in items], seed)
    if folds is None:
        return train_feature_model(X, wrong, seed=seed, l2_grid=l2_grid, word_weight=word_weight)[2]
    scores = np.empty(len(items))
    for fold in np.unique(folds):
        held = folds == fold
        model, _, _ = train_feature_model(
            X[~held], wrong[~held], seed=seed, l2_grid=l2_grid, word_weight=word_weight
        )
        scores[held] = model.scores(X[held])
    return scores


def _fold_ids(wrong: np.ndarray, seed: int) -> np.ndarray | None:
    """Fold numbers, stratified by label; None when a class has fewer than two examples."""
    positives = np.flatnonzero(wrong == 1)
    negatives = np.flatnonzero(wrong == 0)
    k = min(FOLDS, len(positives), len(negatives))
    if k < 2:
        return None
    rng = Random(seed)
    folds = np.empty(len(wrong), dtype=np.int64)
    for indices in (positives, negatives):
        shuffled = [int(i) for i in indices]
        rng.shuffle(shuffled)
        for position, index in enumerate(shuffled):
            folds[index] = position % k
    return folds


def _out_of_fold(
    Z: np.ndarray,
    wrong: np.ndarray,
    folds: np.ndarray,
    *,
    l2: float,
    seed: int,
    sample_weight: np.ndarray | None = None,
) -> np.ndarray:
    scores = np.empty(len(wrong))
    for fold in np.unique(folds):
        held = folds == fold
        weight = None if sample_weight is None else sample_weight[~held]
        weights, bias = fit(Z[~held], wrong[~held], l2=l2, seed=seed, sample_weight=weight)
        scores[held] = _logistic(Z[held] @ weights + bias)
    return scores


def _logistic(z: np.ndarray) -> np.ndarray:
    result: np.ndarray = 1.0 / (1.0 + np.exp(-np.clip(z, -40.0, 40.0)))
    return result


def _log_loss(scores: np.ndarray, wrong: np.ndarray, weight: np.ndarray | None = None) -> float:
    p = np.clip(scores, 1e-12, 1 - 1e-12)
    return float(-np.average(wrong * np.log(p) + (1 - wrong) * np.log(1 - p), weights=weight))


def rounded(value: float) -> float | None:
    """A figure for JSON: 4 decimals, or None when undefined (JSON has no NaN)."""
    return None if math.isnan(value) else round(value, 4)
