"""Fitting the model stage: a probe on the local model's prompt vectors, its blend and band.

The probe (:class:`~hybrid.routing.difficulty.probe.ProbeStage`) is a logistic regression on
the standardised prompt vector, optionally after a projection on the training vectors' first
principal components (whitened), folded back into one weight per dimension so that scoring
stays one dot product.  Everything is chosen by cross-validation inside the training items:

1. the folds leave out whole item families (categories) when there are at least three, so the
   penalty is the one that transfers to a kind of prompt the probe has not seen, not the one
   that best separates more draws of the same generators; otherwise they are stratified;
2. the L2 penalty: the lowest out-of-fold log loss;
3. the blend (:class:`~hybrid.routing.difficulty.probe.Blend`): the mean and spread of each
   stage's out-of-fold log-odds, so that inside the band the two stages' standardised
   log-odds are averaged;
4. the band: among bands holding a given share of the training items around the feature
   stage's threshold, the one whose two-stage out-of-fold scores rank wrong answers best
   (AUROC); on a tie the narrower band, which asks the model less often.  The figure reported
   for it (``cv_two_stage_auroc``) is not that best AUROC, which the choice itself flatters,
   but the AUROC of each half of the judged items ranked with the band chosen on the other
   half (:func:`cross_fitted_two_stage`): a refit from traffic is adopted on it;
5. the threshold: :func:`~hybrid.routing.difficulty.model.choose_threshold` on the blended
   out-of-fold scores of the items inside that band;
6. the threshold for asking the model stage for every request (``every_threshold``): the same
   choice on every judged item's :meth:`~hybrid.routing.difficulty.probe.ProbeStage.every`
   score of its two out-of-fold scores.

The feature stage's scores given should be out-of-fold the same way (fitted without each
item's family: :func:`~hybrid.routing.calibration.fitting.out_of_family_scores`).  Scores from
random folds flatter the feature stage, which has seen more draws of every generator, and the
band chosen on them comes out empty.

The *two-stage score* (:func:`two_stage_scores`) orders requests as the runtime decides them:
feature scores outside the band stand, and inside it the blended score, mapped into the band,
orders the requests the model stage settles.  Everything is deterministic for a seed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from random import Random

import numpy as np

from hybrid.routing.calibration.metrics import auroc
from hybrid.routing.difficulty.model import choose_threshold, fit
from hybrid.routing.difficulty.probe import (
    EVERY_WEIGHT,
    Blend,
    ProbeStage,
    every_scores,
    log_odds,
)

PROBE_L2_GRID: tuple[float, ...] = (10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0)
"""Penalties tried for the probe (the vectors have hundreds of dimensions)."""

BAND_SHARES: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4)
"""Shares of the training items a candidate band holds.  At most 40 %: the requests in the band
pay a prefill before the decision, and the median decision stays in the feature stage
(sub-millisecond) only while fewer than half of them do."""

FOLDS = 5
_TIE = 0.002  # AUROC differences below this are noise at a few hundred items


@dataclass(frozen=True, eq=False)
class ProbeFit:
    """A fitted probe and what cross-validation said of it.

    Attributes:
        probe: The probe, with its band and threshold.
        l2: The chosen penalty.
        components: Principal components kept (None: the whole standardised vector).
        band_share: Share of the training items inside the chosen band.
        cv_probe_auroc: Out-of-fold AUROC of the probe alone.
        cv_feature_auroc: AUROC of the feature-stage scores given (out-of-fold).
        cv_two_stage_auroc: Out-of-fold AUROC of the two stages, each half of the judged
            items ranked with the band chosen on the other half (:func:`cross_fitted_two_stage`).
        cv_probe_scores: Each training item's out-of-fold probe score (None when the data
            could not be cross-validated).
    """

    probe: ProbeStage
    l2: float
    components: int | None
    band_share: float
    cv_probe_auroc: float
    cv_feature_auroc: float
    cv_two_stage_auroc: float
    cv_probe_scores: np.ndarray | None = None


def fit_blend(feature_scores: np.ndarray, probe_scores: np.ndarray) -> Blend:
    """The blend whose spreads are those of the two stages' log-odds on these items."""
    feature = log_odds(feature_scores)
    probe = log_odds(probe_scores)
    return Blend(
        feature=(float(feature.mean()), float(feature.std())),
        probe=(float(probe.mean()), float(probe.std())),
    )


def two_stage_scores(
    feature_scores: np.ndarray, settled_scores: np.ndarray, band: tuple[float, float]
) -> np.ndarray:
    """One score per request, ordered as the two-stage router decides.

    Args:
        feature_scores: The feature stage's scores.
        settled_scores: The scores that settle requests in the band
            (:meth:`~hybrid.routing.difficulty.probe.ProbeStage.settle`) of the same requests.
        band: Feature scores in ``[low, high]`` are settled by the model stage.

    Returns:
        The feature score outside the band; inside it ``low + (high - low) * settled score``,
        so requests above the band rank first, then the band's in the settled order, then
        those below.
    """
    feature = np.asarray(feature_scores, dtype=np.float64)
    probe = np.asarray(settled_scores, dtype=np.float64)
    low, high = band
    inside = (feature >= low) & (feature <= high)
    return np.where(inside, low + (high - low) * probe, feature)


def follow_feature_stage(
    probe: ProbeStage,
    feature_scores: np.ndarray,
    feature_threshold: float,
    *,
    share: float | None,
    previous_threshold: float | None = None,
) -> ProbeStage:
    """The probe of a model whose feature stage was refitted (``hybrid calibrate
    --from-ledger``), its feature-side choices taken again on the new feature stage.

    The probe's weights, its own side of the blend and its threshold stay; the blend's feature
    side (the new scores' log-odds mean and spread) and the band (the same share of the
    training items, around the new threshold) follow the new feature stage, whose scores may
    sit elsewhere than the old one's.  So does ``every_threshold``, by the feature part of the
    score it is compared with: a feature stage whose threshold moved by ``d`` moves it by
    ``(1 - EVERY_WEIGHT) * d``.

    Args:
        probe: The probe carried over.
        feature_scores: The new feature stage's out-of-fold scores of its training examples.
        feature_threshold: The new feature stage's threshold.
        share: The band's share of the training items when the probe was fitted (the model's
            ``probe_band_share``); None keeps the band as it was.
        previous_threshold: The old feature stage's threshold (None keeps ``every_threshold``
            as it was).

    Returns:
        The probe for the new feature stage.
    """
    scores = np.asarray(feature_scores, dtype=np.float64)
    if scores.size == 0:
        return probe
    band = probe.band if share is None else band_around(scores, feature_threshold, share)
    blend = probe.blend
    if blend is not None:
        feature = log_odds(scores)
        blend = Blend(feature=(float(feature.mean()), float(feature.std())), probe=blend.probe)
    every = probe.every_threshold
    if every is not None and previous_threshold is not None:
        step = (1.0 - EVERY_WEIGHT) * (feature_threshold - previous_threshold)
        every = min(max(every + step, 0.0), 1.0)
    return replace(probe, band=band, blend=blend, every_threshold=every)


def band_around(feature_scores: np.ndarray, threshold: float, share: float) -> tuple[float, float]:
    """The band holding ``share`` of the scores, centred (in rank) on the threshold.

    Args:
        feature_scores: Out-of-fold feature scores of the training items.
        threshold: The feature stage's threshold.
        share: 0 to 1; 1 gives ``(0, 1)``, 0 an empty band at the threshold.

    Returns:
        ``(low, high)`` within [0, 1].
    """
    if share >= 1.0:
        return (0.0, 1.0)
    scores = np.sort(np.asarray(feature_scores, dtype=np.float64))
    if share <= 0.0 or scores.size == 0:
        return (threshold, threshold)
    centre = float(np.mean(scores <= threshold))
    low_q = min(max(centre - share / 2, 0.0), 1.0 - share)
    high_q = low_q + share
    low = 0.0 if low_q <= 0.0 else float(np.quantile(scores, low_q))
    high = 1.0 if high_q >= 1.0 else float(np.quantile(scores, high_q))
    return (min(max(low, 0.0), 1.0), min(max(high, low), 1.0))


def fold_ids(wrong: np.ndarray, groups: Sequence[str] | None, seed: int) -> np.ndarray | None:
    """Cross-validation folds: by group when there are three or more, else stratified.

    Groups are dealt to at most :data:`FOLDS` folds in a seeded order, whole.

    Returns:
        A fold number per item; None when the data cannot be cross-validated (fewer than two
        items of a class).
    """
    wrong = np.asarray(wrong, dtype=np.float64)
    if min(int(wrong.sum()), int((1 - wrong).sum())) < 2:
        return None
    rng = Random(seed)
    if groups is not None and len(set(groups)) >= 3:
        names = sorted(set(groups))
        rng.shuffle(names)
        k = min(FOLDS, len(names))
        fold_of = {name: index % k for index, name in enumerate(names)}
        return np.array([fold_of[g] for g in groups], dtype=np.int64)
    positives = np.flatnonzero(wrong == 1)
    negatives = np.flatnonzero(wrong == 0)
    k = min(FOLDS, len(positives), len(negatives))
    folds = np.empty(len(wrong), dtype=np.int64)
    for indices in (positives, negatives):
        shuffled = [int(i) for i in indices]
        rng.shuffle(shuffled)
        for position, index in enumerate(shuffled):
            folds[index] = position % k
    return folds


@dataclass(frozen=True, eq=False)
class _Basis:
    """Standardisation, and the optional whitened principal-component projection."""

    mean: np.ndarray
    scale: np.ndarray
    projection: np.ndarray | None  # (dim, k): standardised vector to whitened components

    @classmethod
    def of(cls, V: np.ndarray, components: int | None) -> _Basis:
        mean = V.mean(axis=0)
        scale = V.std(axis=0)
        scale = np.where(scale > 1e-6, scale, 1.0)
        if components is None:
            return cls(mean, scale, None)
        Z = (V - mean) / scale
        _, singular, vt = np.linalg.svd(Z, full_matrices=False)
        k = min(components, int(np.sum(singular > 1e-6 * singular[0])) if singular.size else 0)
        k = max(k, 1)
        spread = singular[:k] / math.sqrt(max(len(V), 1))
        return cls(mean, scale, vt[:k].T / spread)

    def transform(self, V: np.ndarray) -> np.ndarray:
        Z: np.ndarray = (V - self.mean) / self.scale
        if self.projection is None:
            return Z
        projected: np.ndarray = Z @ self.projection
        return projected

    def fold(self, weights: np.ndarray) -> np.ndarray:
        """Weights on the transformed vector as weights on the standardised one."""
        if self.projection is None:
            return weights
        folded: np.ndarray = self.projection @ weights
        return folded


def _logistic(z: np.ndarray) -> np.ndarray:
    result: np.ndarray = 1.0 / (1.0 + np.exp(-np.clip(z, -40.0, 40.0)))
    return result


def _log_loss(scores: np.ndarray, wrong: np.ndarray, weight: np.ndarray | None = None) -> float:
    p = np.clip(scores, 1e-12, 1 - 1e-12)
    losses = -(wrong * np.log(p) + (1 - wrong) * np.log(1 - p))
    return float(np.average(losses, weights=weight))


def out_of_fold_probe(
    V: np.ndarray,
    wrong: np.ndarray,
    folds: np.ndarray,
    *,
    l2: float,
    components: int | None,
    seed: int,
    sample_weight: np.ndarray | None = None,
) -> np.ndarray:
    """The probe's score of each item from a probe fitted without the item's fold."""
    scores = np.empty(len(wrong))
    for fold in np.unique(folds):
        held = folds == fold
        basis = _Basis.of(V[~held], components)
        weights, bias = fit(
            basis.transform(V[~held]),
            wrong[~held],
            l2=l2,
            seed=seed,
            sample_weight=None if sample_weight is None else sample_weight[~held],
        )
        scores[held] = _logistic(basis.transform(V[held]) @ weights + bias)
    return scores


def cross_fitted_two_stage(
    feature_scores: np.ndarray,
    settled: np.ndarray,
    wrong: np.ndarray,
    judged: np.ndarray,
    feature_threshold: float,
    shares: Sequence[float],
    *,
    seed: int,
) -> float:
    """The two stages' AUROC on the judged items, free of the band's choice.

    The judged items are cut in two halves, stratified by outcome (seeded); each half is ranked
    with the band (among ``shares``, chosen as :func:`train_probe` chooses it) that ranks the
    other half best, and the two halves' rankings are pooled.  Choosing the band where it
    ranks best and reporting that AUROC would flatter the band by the choice itself.

    Args:
        feature_scores: The feature stage's out-of-fold score of every item.
        settled: The blended out-of-fold score of every item.
        wrong: 1 where the local answer was wrong.
        judged: The items ranked (a boolean mask).
        feature_threshold: Where the bands are centred.
        shares: The band shares to choose among.
        seed: Seeds the halves.

    Returns:
        The pooled AUROC (NaN when the judged items hold one class only).
    """
    indices = np.flatnonzero(judged)
    rng = Random(seed)
    first = np.zeros(len(indices), dtype=bool)
    for outcome in (0.0, 1.0):
        members = [i for i, index in enumerate(indices) if wrong[index] == outcome]
        rng.shuffle(members)
        first[members[: len(members) // 2]] = True
    ranked = np.empty(len(indices))
    for half in (first, ~first):
        chooses = np.zeros(len(wrong), dtype=bool)
        chooses[indices[~half]] = True
        share = _best_share(feature_scores, settled, wrong, chooses, feature_threshold, shares)
        band = band_around(feature_scores, feature_threshold, share)
        ranked[half] = two_stage_scores(feature_scores, settled, band)[indices[half]]
    return auroc(ranked, wrong[indices])


def _best_share(
    feature_scores: np.ndarray,
    settled: np.ndarray,
    wrong: np.ndarray,
    chooses: np.ndarray,
    feature_threshold: float,
    shares: Sequence[float],
) -> float:
    """The band share whose two-stage scores rank the ``chooses`` items best (AUROC); on a
    tie (within :data:`_TIE`) the smaller share, which asks the model less often."""
    chosen: tuple[float, float] | None = None
    for share in sorted(shares):
        band = band_around(feature_scores, feature_threshold, share)
        ordered = two_stage_scores(feature_scores, settled, band)
        value = auroc(ordered[chooses], wrong[chooses])
        if chosen is None or value > chosen[0] + _TIE:
            chosen = (value, share)
    assert chosen is not None  # shares is not empty
    return chosen[1]


def train_probe(
    vectors: np.ndarray,
    wrong: np.ndarray,
    *,
    feature_scores: np.ndarray,
    feature_threshold: float,
    groups: Sequence[str] | None,
    seed: int,
    l2_grid: Sequence[float] = PROBE_L2_GRID,
    shares: Sequence[float] = BAND_SHARES,
    components: int | None = None,
    sample_weight: np.ndarray | None = None,
    judged: np.ndarray | None = None,
) -> ProbeFit:
    """Fit the probe on prompt vectors, choosing its penalty, blend, band and threshold by CV.

    Args:
        vectors: ``(n, dim)`` prompt vectors of the training items.
        wrong: 1 where the local answer was wrong.
        feature_scores: The feature stage's out-of-fold scores of the same items (best
            fitted without each item's family).
        feature_threshold: The feature stage's threshold (the band is centred on it).
        groups: Each item's family, for folds that leave whole families out (None:
            stratified folds).
        seed: Seeds the folds.
        l2_grid: Penalties to try.
        shares: Band shares to try.
        components: Keep this many whitened principal components (None: all dimensions).
        sample_weight: A positive weight per item in the fits and the penalty's choice (None:
            all 1); a labelled request of a user's traffic counts for several calibration
            answers (:mod:`~hybrid.routing.calibration.learning`).
        judged: The items whose out-of-fold ranking chooses the band and the threshold (a
            boolean mask; None: every item): a refit from traffic chooses them on the
            labelled requests, which are what the user's traffic looks like.

    Returns:
        The probe and its cross-validated figures, on the judged items (NaN where one class
        makes them undefined; then the penalty is the grid's middle, the band empty and the
        probe has no blend).

    Raises:
        ValueError: The inputs disagree in length, or the vectors are not a finite matrix.
    """
    V = np.asarray(vectors, dtype=np.float64)
    wrong = np.asarray(wrong, dtype=np.float64)
    feature = np.asarray(feature_scores, dtype=np.float64)
    if V.ndim != 2 or len(V) != len(wrong) or len(feature) != len(wrong) or len(V) == 0:
        raise ValueError("vectors, wrong and feature_scores must describe the same items")
    if not np.all(np.isfinite(V)):
        raise ValueError("a prompt vector holds a value that is not finite")
    if groups is not None and len(groups) != len(wrong):
        raise ValueError("groups must name one family per item")
    weight = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    if weight is not None and (weight.shape != wrong.shape or not np.all(weight > 0)):
        raise ValueError("sample_weight must hold one positive weight per item")
    chooses = np.ones(len(wrong), dtype=bool) if judged is None else np.asarray(judged, dtype=bool)
    if chooses.shape != wrong.shape:
        raise ValueError("judged must mark each item")
    if min(int(wrong[chooses].sum()), int((1 - wrong[chooses]).sum())) < 2:
        chooses = np.ones(len(wrong), dtype=bool)  # too few to choose on: every item chooses
    folds = fold_ids(wrong, groups, seed)
    feature_auroc = auroc(feature[chooses], wrong[chooses])
    if folds is None:
        l2 = l2_grid[len(l2_grid) // 2]
        oof = None
    else:
        best: tuple[float, float, np.ndarray] | None = None
        for candidate in l2_grid:
            scores = out_of_fold_probe(
                V,
                wrong,
                folds,
                l2=candidate,
                components=components,
                seed=seed,
                sample_weight=weight,
            )
            loss = _log_loss(scores, wrong, weight)
            if best is None or loss < best[0] - 1e-12:
                best = (loss, candidate, scores)
        assert best is not None  # l2_grid is not empty
        _, l2, oof = best
    basis = _Basis.of(V, components)
    weights, bias = fit(basis.transform(V), wrong, l2=l2, seed=seed, sample_weight=weight)
    blend: Blend | None = None
    if oof is None:
        band, share, two_stage, probe_auroc = (feature_threshold,) * 2, 0.0, math.nan, math.nan
        threshold, every_threshold = 0.5, None
    else:
        probe_auroc = auroc(oof[chooses], wrong[chooses])
        blend = fit_blend(feature, oof)
        settled = blend.combine(feature, oof)
        share = _best_share(feature, settled, wrong, chooses, feature_threshold, shares)
        band = band_around(feature, feature_threshold, share)
        two_stage = cross_fitted_two_stage(
            feature, settled, wrong, chooses, feature_threshold, shares, seed=seed
        )
        inside = (feature >= band[0]) & (feature <= band[1]) & chooses
        pool = inside if inside.sum() >= 2 else chooses
        threshold = choose_threshold(settled[pool], wrong[pool])
        every = every_scores(feature, oof)
        every_threshold = choose_threshold(every[chooses], wrong[chooses])
    probe = ProbeStage(
        weights=basis.fold(weights),
        bias=float(bias),
        mean=basis.mean,
        scale=basis.scale,
        band=(float(band[0]), float(band[1])),
        threshold=float(threshold),
        blend=blend,
        every_threshold=every_threshold,
    )
    return ProbeFit(probe, l2, components, share, probe_auroc, feature_auroc, two_stage, oof)
