"""Refitting the difficulty model from what traffic taught: ``hybrid calibrate --from-ledger``.

The examples are the calibration answers ``hybrid calibrate`` recorded for the model and the
labelled requests the ledger kept signals for, each labelled right or wrong
(:mod:`hybrid.routing.calibration.refit_examples`).

The recipe is calibration's own (:func:`hybrid.routing.calibration.fitting.train_feature_model`:
standardise, penalty and threshold by cross-validation), on a seeded split stratified by
where each example came from and by its label.  A labelled request may count for several
calibration answers: it is the user's traffic, where the calibration answers only stand in
for it.  How many is chosen per refit, by cross-validation inside the training split, and so
is the weight of the hashed word n-grams (:func:`_fit_weighted`): a user's requests share
their app's phrasing, which the words can learn where the generated families could not teach
them.  The fit replaces the one in use only when the review allows it
(:func:`hybrid.routing.calibration.refit_acceptance.review`: enough held out, no worse than
prompt length, better than the model in use).

Once judged, the refit is fitted again on every example with the weights it chose, as
``hybrid calibrate`` saves a fit on every item: the model adopted learns from the held-out
labelled requests too (fitted on a part, it ranked new requests worse on the public sets
standing in for traffic, ``docs/router-eval.md``).

The current model's prompt-vector stage (``probe``), when it has one, is carried over on the
refitted feature stage, or fitted again on the labelled requests' prompt vectors when they
teach a better one (:mod:`hybrid.routing.calibration.probe_refit`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from random import Random
from typing import Any

import numpy as np

from hybrid.routing.calibration.acceptance import MIN_HELD_OUT_ITEMS, MIN_HELD_OUT_PER_CLASS
from hybrid.routing.calibration.fitting import (
    WORD_WEIGHT,
    WORD_WEIGHTS,
    rounded,
    train_feature_model,
)
from hybrid.routing.calibration.metrics import auroc
from hybrid.routing.calibration.probe_fitting import follow_feature_stage
from hybrid.routing.calibration.probe_refit import ProbeRefit, refit_probe
from hybrid.routing.calibration.refit_acceptance import review
from hybrid.routing.calibration.refit_examples import (
    MIN_TRAFFIC_PER_CLASS,
    Example,
    Source,
    learned_scores,
)
from hybrid.routing.difficulty.features import N_FEATURES
from hybrid.routing.difficulty.model import DifficultyModel
from hybrid.routing.difficulty.probe import ProbeStage


@dataclass(frozen=True, eq=False)
class Refit:
    """A refit and how it compares with the model in use.

    Attributes:
        model: The refit, fitted again on every example once judged (its ``meta`` holds the
            figures below under ``refit``).
        counts: Examples by source.
        held_out: How many examples were held out to measure the fits.
        held_out_wrong: Of those, how many local answers were wrong.
        held_out_traffic: Of those, how many were labelled requests.
        before_auroc: The current model's held-out AUROC (NaN without one, or one class).
        after_auroc: The refit's held-out AUROC.
        length_auroc: Prompt length's held-out AUROC.
        before_traffic_auroc: The current model's AUROC on every labelled request.
        after_traffic_auroc: The refit's AUROC on them, each scored by a fit that did not see
            it (out-of-fold for the training split's, the refit for the held-out ones).
        traffic_weight: How many calibration answers one labelled request counted for in the
            fit (chosen per refit; 1 with too few labelled requests to choose).
        word_weight: The hashed word n-grams' weight in the fit (chosen with
            ``traffic_weight``; the default with too few labelled requests to choose).
        rejection: Why the refit must not replace the model in use; None when it may.
        probe: The model stage fitted again on the labelled requests' prompt vectors, and
            whether it replaced the carried-over one (None: the model in use has no probe).
    """

    model: DifficultyModel
    counts: Mapping[str, int]
    held_out: int
    held_out_wrong: int
    held_out_traffic: int
    before_auroc: float
    after_auroc: float
    length_auroc: float
    before_traffic_auroc: float
    after_traffic_auroc: float
    traffic_weight: float
    word_weight: float
    rejection: str | None
    probe: ProbeRefit | None = None

    @property
    def adopted(self) -> bool:
        """Whether the refit may replace the model in use."""
        return self.rejection is None


def refit(
    current: DifficultyModel | None,
    examples: Sequence[Example],
    *,
    seed: int,
    held_out: float = 0.3,
    meta: Mapping[str, object] | None = None,
) -> Refit:
    """Fit a difficulty model on the examples and judge it against the current one.

    Args:
        current: The model in use, None when the model has none.
        examples: Calibration answers and labelled requests.
        seed: Seeds the split and the cross-validation folds.
        held_out: Share of each (source, label) group held out.
        meta: Extra entries for the new model's ``meta``.

    Returns:
        The refit, its held-out figures, and whether it may replace the current model.

    Raises:
        ValueError: There are no examples, too few to both fit a refit and hold some out to
            measure it (a handful of labelled requests and no calibration answers: the
            message says how many are needed, and how to label more), ``held_out`` is not
            between 0 and 1, or an example's features have the wrong length.
    """
    if not examples:
        raise ValueError("there is nothing to refit from: no calibration answers or labels")
    if not 0.0 < held_out < 1.0:
        raise ValueError(f"held_out must be between 0 and 1 (got {held_out})")
    if any(example.features.shape != (N_FEATURES,) for example in examples):
        raise ValueError(f"every example needs {N_FEATURES} features")
    train, test = _split(examples, seed=seed, held_out=held_out)
    if not train or not test:
        raise ValueError(_too_few(examples, held_out))
    X = np.stack([e.features for e in train]).astype(np.float64)
    y = np.array([e.wrong for e in train], dtype=np.float64)
    from_traffic = np.array([e.source != "calibration" for e in train])
    (weight, word_weight), (fitted, _, out_of_fold) = _fit_weighted(X, y, from_traffic, seed=seed)
    X_test = np.stack([e.features for e in test]).astype(np.float64)
    y_test = np.array([e.wrong for e in test], dtype=np.float64)
    traffic = np.array([e.source != "calibration" for e in test])
    after = fitted.scores(X_test)
    before = current.scores(X_test) if current is not None else np.full(len(test), math.nan)
    lengths = np.array([e.length for e in test])
    # Every labelled request, scored by a fit that did not see it: the training split's by
    # their out-of-fold scores, the held-out ones by the refit.  The model in use never saw
    # any of them.
    labelled_wrong = np.concatenate([y[from_traffic], y_test[traffic]])
    labelled_after = np.concatenate([out_of_fold[from_traffic], after[traffic]])
    labelled_before = (
        np.concatenate([current.scores(X[from_traffic]), before[traffic]])
        if current is not None
        else np.full(len(labelled_wrong), math.nan)
    )
    figures = {
        "after": _auroc(after, y_test),
        "before": _auroc(before, y_test) if current is not None else math.nan,
        "length": _auroc(lengths, y_test),
        "after_traffic": _auroc(labelled_after, labelled_wrong),
        "before_traffic": (
            _auroc(labelled_before, labelled_wrong) if current is not None else math.nan
        ),
    }
    counts: dict[str, int] = {s: sum(e.source == s for e in examples) for s in _SOURCES}
    wrong = int(y_test.sum())
    labelled_count = len(labelled_wrong)
    labelled_wrong_count = int(labelled_wrong.sum())
    judged_on_traffic = (
        min(labelled_wrong_count, labelled_count - labelled_wrong_count) >= MIN_HELD_OUT_PER_CLASS
    )
    # Fitted again on every example, with the weights chosen: the model saved once judged.
    final, final_cv, final_out_of_fold = train_feature_model(
        np.stack([e.features for e in examples]).astype(np.float64),
        np.array([e.wrong for e in examples], dtype=np.float64),
        seed=seed,
        sample_weight=np.array([1.0 if e.source == "calibration" else weight for e in examples]),
        word_weight=word_weight,
    )
    probe: ProbeStage | None = getattr(current, "probe", None)
    refitted: ProbeRefit | None = None
    if probe is not None:
        assert current is not None  # a probe belongs to a model in use
        share = current.meta.get("probe_band_share")
        probe = follow_feature_stage(
            probe,
            final_out_of_fold,
            final.threshold,
            share=float(share) if isinstance(share, int | float) else None,
            previous_threshold=current.threshold,
        )
        refitted = refit_probe(
            probe,
            examples,
            final_out_of_fold,
            final.threshold,
            traffic_weight=weight,
            seed=seed,
            in_use=current,
        )
    rejection = review(
        len(test),
        wrong,
        figures["after"],
        figures["length"],
        figures["before"],
        traffic=(
            (labelled_count, figures["after_traffic"], figures["before_traffic"])
            if judged_on_traffic
            else None
        ),
        both=refitted.judged() if refitted is not None else None,
    )
    refit_meta: dict[str, object] = {
        "examples": dict(counts),
        "held_out": len(test),
        "held_out_traffic": int(traffic.sum()),
        "held_out_auroc_before": rounded(figures["before"]),
        "traffic_auroc_before": rounded(figures["before_traffic"]),
        "traffic_auroc": rounded(figures["after_traffic"]),
        "cv_auroc": rounded(final_cv),
        "traffic_weight": weight,
        "word_weight": word_weight,
    }
    times = [example.time for example in examples if example.time is not None]
    if times:
        # What the labelled requests' reading reads with the scores below, not the refit's own
        # (hybrid.routing.difficulty.labelled).
        refit_meta["labels_until"] = max(times)
        refit_meta["out_of_fold"] = learned_scores(examples, final_out_of_fold)
    model_meta: dict[str, Any] = {
        **(dict(current.meta) if current is not None else {}),
        **(meta or {}),
        "seed": seed,
        "items": len(examples),
        "train_items": len(train),
        "held_out_items": len(test),
        "l2": final.meta["l2"],
        "held_out_auroc": rounded(figures["after"]),
        "held_out_length_auroc": rounded(figures["length"]),
        "refit": refit_meta,
    }
    if refitted is not None:
        refit_meta["probe"] = refitted.meta()
        if refitted.adopted:
            probe = refitted.probe
            model_meta["probe_band_share"] = refitted.band_share
    model = dataclasses.replace(final, meta=model_meta, probe=probe)
    return Refit(
        model=model,
        counts=counts,
        held_out=len(test),
        held_out_wrong=wrong,
        held_out_traffic=int(traffic.sum()),
        before_auroc=figures["before"],
        after_auroc=figures["after"],
        length_auroc=figures["length"],
        before_traffic_auroc=figures["before_traffic"],
        after_traffic_auroc=figures["after_traffic"],
        traffic_weight=weight,
        word_weight=word_weight,
        rejection=rejection,
        probe=refitted,
    )


_SOURCES: tuple[Source, ...] = ("calibration", "feedback", "shadow", "cascade")

TRAFFIC_WEIGHTS = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0)
"""What one labelled request may count for, in calibration answers, in a refit."""


def _fit_weighted(
    X: np.ndarray, y: np.ndarray, from_traffic: np.ndarray, *, seed: int
) -> tuple[tuple[float, float], tuple[DifficultyModel, float, np.ndarray]]:
    """The feature stage fitted with labelled requests weighted as their traffic says.

    Labelled requests are the user's own traffic, the calibration answers a stand-in for it;
    a request that counts for several calibration answers pulls the fit toward the traffic.
    How much is chosen per refit, inside the training split, with the weight of the hashed
    word n-grams: each pair of :data:`TRAFFIC_WEIGHTS` and
    :data:`~hybrid.routing.calibration.fitting.WORD_WEIGHTS` is fitted
    (:func:`~hybrid.routing.calibration.fitting.train_feature_model`) and the one whose
    out-of-fold scores rank the training split's labelled requests best wins (on a tie, the
    default word weight, then the lighter traffic weight).  With fewer than
    :data:`MIN_TRAFFIC_PER_CLASS` labelled requests of either class every example weighs 1
    and the words keep their default weight.

    Returns:
        The traffic weight and the word weight chosen, and ``train_feature_model``'s result
        for them.
    """
    wrong = int(y[from_traffic].sum())
    if min(wrong, int(from_traffic.sum()) - wrong) < MIN_TRAFFIC_PER_CLASS:
        return (1.0, WORD_WEIGHT), train_feature_model(X, y, seed=seed)
    word_weights = dict.fromkeys((WORD_WEIGHT, *WORD_WEIGHTS))
    best: tuple[float, tuple[float, float], tuple[DifficultyModel, float, np.ndarray]] | None
    best = None
    for word_weight in word_weights:
        for weight in TRAFFIC_WEIGHTS:
            result = train_feature_model(
                X,
                y,
                seed=seed,
                sample_weight=np.where(from_traffic, weight, 1.0),
                word_weight=word_weight,
            )
            ranked = auroc(result[2][from_traffic], y[from_traffic])
            if best is None or ranked > best[0] + 1e-9:
                best = (ranked, (weight, word_weight), result)
    assert best is not None  # TRAFFIC_WEIGHTS is not empty
    return best[1], best[2]


def _split(
    examples: Sequence[Example], *, seed: int, held_out: float
) -> tuple[list[Example], list[Example]]:
    """A seeded split, stratified by where an example came from and by its label."""
    groups: dict[tuple[bool, bool], list[Example]] = {}
    for example in examples:
        groups.setdefault((example.source == "calibration", example.wrong), []).append(example)
    rng = Random(seed)
    train: list[Example] = []
    test: list[Example] = []
    for key in sorted(groups):
        members = list(groups[key])
        rng.shuffle(members)
        cut = round(len(members) * held_out)
        test.extend(members[:cut])
        train.extend(members[cut:])
    return train, test


def _too_few(examples: Sequence[Example], held_out: float) -> str:
    """Why ``examples`` cannot be split into some to fit on and some to measure with, and how
    many labelled requests the review (:func:`review`) needs."""
    labelled = [example for example in examples if example.source != "calibration"]
    wrong = sum(example.wrong for example in labelled)
    answers = len(examples) - len(labelled)
    # Each class holds out its share, rounded (_split): this many hold out MIN_HELD_OUT_PER_CLASS.
    per_class = math.ceil((MIN_HELD_OUT_PER_CLASS - 0.5) / held_out)
    needed = max(2 * per_class, math.ceil(MIN_HELD_OUT_ITEMS / held_out))
    requests = "request" if len(labelled) == 1 else "requests"
    return (
        f"{len(labelled)} labelled {requests} ({len(labelled) - wrong} answered right, {wrong} "
        f"wrong) and {answers} calibration answers are too few to fit a refit and hold "
        f"{held_out:.0%} of them out to measure it; a refit is adopted only when at least "
        f"{MIN_HELD_OUT_ITEMS} examples are held out, with {MIN_HELD_OUT_PER_CLASS} right and "
        f"{MIN_HELD_OUT_PER_CLASS} wrong: without calibration answers, about {needed} labelled "
        f"requests, at least {per_class} right and {per_class} wrong. Label more requests "
        f"(POST /v1/hybrid/feedback, routing.learn.shadow_rate, or "
        f"routing.learn.local_shadow_rate for the requests sent to the cloud)"
    )


def _auroc(scores: np.ndarray, wrong: np.ndarray) -> float:
    if len(wrong) == 0 or wrong.min() == wrong.max():
        return math.nan
    return auroc(scores, wrong)
