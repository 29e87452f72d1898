"""Refitting the model stage from labelled requests' prompt vectors, and judging the refit.

A refit from traffic (:mod:`hybrid.routing.calibration.learning`) carries the current model's
prompt-vector stage (``probe``), when it has one, over with its feature-side choices taken
again on the refitted feature stage (its band, the same share of the examples around the new
threshold, its blend's feature side, and ``every_threshold`` by the feature part of the score
it is compared with:
:func:`~hybrid.routing.calibration.probe_fitting.follow_feature_stage`), unless the labelled
requests teach a better one (:func:`refit_probe`).  The server keeps the local model's vector
of each prompt it answers (``routing.learn.prompt_vectors``); when at least
:data:`~hybrid.routing.calibration.refit_examples.MIN_TRAFFIC_PER_CLASS` labelled requests of
each class carry one, the probe is fitted again on the calibration answers' vectors and theirs
(one labelled request counting for the feature stage's traffic weight), its band and
threshold chosen on the labelled requests' own out-of-fold ranking.  It replaces the
carried-over probe only when that ranking, both stages together, beats the carried-over
probe's on the same requests, which it never saw; the band is chosen on those requests too,
so each half of them is ranked with the band the other half chose
(:func:`~hybrid.routing.calibration.probe_fitting.cross_fitted_two_stage`), lest the choice
flatter the refit.

:meth:`ProbeRefit.judged` gives what the refit's review compares when it is judged on both
stages together (:func:`~hybrid.routing.calibration.refit_acceptance.review`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from hybrid.routing.calibration.acceptance import MIN_HELD_OUT_PER_CLASS
from hybrid.routing.calibration.fitting import rounded
from hybrid.routing.calibration.metrics import auroc
from hybrid.routing.calibration.probe_fitting import train_probe, two_stage_scores
from hybrid.routing.calibration.refit_examples import MIN_TRAFFIC_PER_CLASS, Example
from hybrid.routing.difficulty.model import DifficultyModel
from hybrid.routing.difficulty.probe import ProbeStage


@dataclass(frozen=True, eq=False)
class ProbeRefit:
    """The model stage fitted again on labelled requests' prompt vectors, and its judgement.

    Attributes:
        probe: The refitted probe; None when too few labelled requests carry a vector.
        labelled: Labelled requests with a vector of the probe's size.
        band_share: The refitted probe's band, as a share of the examples it was fitted on.
        carried_auroc: The carried-over probe's two-stage AUROC on those requests, on the
            refitted feature stage's out-of-fold scores.
        refit_auroc: The refitted probe's two-stage AUROC on them, out-of-fold, each half
            ranked with the band chosen on the other half.
        labelled_wrong: Of those requests, how many local answers were wrong.
        in_use_auroc: The model in use's two-stage AUROC on them (both of its stages).
    """

    probe: ProbeStage | None
    labelled: int
    band_share: float = 0.0
    carried_auroc: float = math.nan
    refit_auroc: float = math.nan
    labelled_wrong: int = 0
    in_use_auroc: float = math.nan

    @property
    def adopted(self) -> bool:
        """Whether the refitted probe replaces the carried-over one."""
        return self.probe is not None and self.refit_auroc > self.carried_auroc

    def judged(self) -> tuple[int, float, float] | None:
        """What :func:`~hybrid.routing.calibration.refit_acceptance.review` compares when the
        refit is judged on both stages together: the labelled requests with a vector, the
        refit's two-stage AUROC on them (with the model stage it keeps) and the model in use's;
        None when they hold fewer than :data:`~.acceptance.MIN_HELD_OUT_PER_CLASS` right or
        wrong, or no refit was tried."""
        right = self.labelled - self.labelled_wrong
        if self.probe is None or min(right, self.labelled_wrong) < MIN_HELD_OUT_PER_CLASS:
            return None
        after = self.refit_auroc if self.adopted else self.carried_auroc
        return (self.labelled, after, self.in_use_auroc)

    def meta(self) -> dict[str, object]:
        """What the refit's ``meta`` says of it."""
        return {
            "labelled_with_vector": self.labelled,
            "refitted": self.adopted,
            "band_share": self.band_share if self.probe is not None else None,
            "carried_auroc": rounded(self.carried_auroc),
            "refit_auroc": rounded(self.refit_auroc),
        }


def refit_probe(
    carried: ProbeStage,
    examples: Sequence[Example],
    feature_scores: np.ndarray,
    feature_threshold: float,
    *,
    traffic_weight: float,
    seed: int,
    in_use: DifficultyModel | None = None,
) -> ProbeRefit:
    """The probe fitted again with the labelled requests' prompt vectors (module docstring).

    Args:
        carried: The model in use's probe, following the refitted feature stage.
        examples: The refit's examples, in the order of ``feature_scores``.
        feature_scores: The refitted feature stage's out-of-fold score of each example.
        feature_threshold: The refitted feature stage's threshold.
        traffic_weight: What one labelled request counts for, in calibration answers.
        seed: Seeds the folds.
        in_use: The model in use, whose two stages are scored on the same requests (None:
            not scored).

    Returns:
        The refitted probe and how it compares with ``carried`` on the labelled requests (no
        probe when fewer than :data:`MIN_TRAFFIC_PER_CLASS` of each class carry a vector).
    """
    usable = [
        i
        for i, example in enumerate(examples)
        if example.vector is not None and example.vector.shape == (carried.dim,)
    ]
    traffic = np.array([examples[i].source != "calibration" for i in usable], dtype=bool)
    wrong = np.array([examples[i].wrong for i in usable], dtype=np.float64)
    labelled = int(traffic.sum())
    labelled_wrong = int(wrong[traffic].sum())
    if min(labelled_wrong, labelled - labelled_wrong) < MIN_TRAFFIC_PER_CLASS:
        return ProbeRefit(None, labelled)
    vectors = np.stack([np.asarray(examples[i].vector, dtype=np.float64) for i in usable])
    scores = np.asarray(feature_scores, dtype=np.float64)[usable]
    fitted = train_probe(
        vectors,
        wrong,
        feature_scores=scores,
        feature_threshold=feature_threshold,
        groups=None,
        seed=seed,
        sample_weight=np.where(traffic, traffic_weight, 1.0),
        judged=traffic,
    )
    carried_auroc = _two_stage_auroc(carried, scores[traffic], vectors[traffic], wrong[traffic])
    in_use_auroc = math.nan
    if in_use is not None and in_use.probe is not None:
        requests = [examples[i] for i, asked in zip(usable, traffic, strict=True) if asked]
        own = in_use.scores(np.stack([example.features for example in requests]))
        in_use_auroc = _two_stage_auroc(in_use.probe, own, vectors[traffic], wrong[traffic])
    return ProbeRefit(
        fitted.probe,
        labelled,
        fitted.band_share,
        carried_auroc,
        fitted.cv_two_stage_auroc,
        labelled_wrong,
        in_use_auroc,
    )


def _two_stage_auroc(
    probe: ProbeStage, feature_scores: np.ndarray, vectors: np.ndarray, wrong: np.ndarray
) -> float:
    """AUROC of the two stages as the router decides: ``probe`` settles the feature scores
    inside its band."""
    settled = np.array(
        [
            probe.settle(float(score), probe.score(vector))
            for score, vector in zip(feature_scores, vectors, strict=True)
        ]
    )
    return auroc(two_stage_scores(feature_scores, settled, probe.band), wrong)
