"""Whether a fit may replace the calibration in use.

A fit is saved only when its held-out figures can be trusted and are not worse than the
simplest rule:

1. **Enough held-out evidence.**  At least :data:`MIN_HELD_OUT_ITEMS` items held out, with at
   least :data:`MIN_HELD_OUT_PER_CLASS` answered right *and* as many answered wrong.  Below
   that, the held-out AUROC changes widely from one seed to the next, and the threshold is
   chosen from a handful of examples: it can land at 0 (every request to the cloud) or 1
   (none).
2. **No worse than prompt length.**  The held-out AUROC must be at least the length rule's
   (escalate the longest prompts first) on the same held-out items; a fit that ranks prompts
   worse than their length would route worse than the simplest rule there is.
3. **Better than the prior it replaces** (background calibration only,
   :func:`review_against_prior`): the fit's held-out log loss must be below the prior's on the
   same held-out items.  Log loss rewards both ranking the prompts right and predicting how
   often the model is wrong, which is what the prior guessed from the model's size.

A refused fit leaves the calibration in use as it was; :class:`Rejection` says why, and by how
much the sample would have to grow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from hybrid.routing.calibration.fitting import Calibration, feature_matrix
from hybrid.routing.calibration.metrics import auroc
from hybrid.routing.difficulty.model import DifficultyModel

MIN_HELD_OUT_ITEMS = 50
"""Fewest held-out items a saved fit is measured on (20 items per category hold out 54)."""

MIN_HELD_OUT_PER_CLASS = 10
"""Fewest held-out items answered right, and fewest answered wrong, a saved fit is measured on."""


@dataclass(frozen=True)
class Rejection:
    """Why a fit must not be saved.

    Attributes:
        reason: ``"sample"`` (too little held-out evidence), ``"length"`` (worse than the
            length rule) or ``"prior"`` (no better than the prior it would replace).
        message: What happened, in one sentence without a final full stop.
        growth: How many times more items would probably meet the minimums (from the held-out
            counts seen); None when it cannot be estimated (every held-out answer of one kind)
            or when the sample was large enough.
    """

    reason: Literal["sample", "length", "prior"]
    message: str
    growth: float | None = None


def review(calibration: Calibration) -> Rejection | None:
    """Check a fit against the rules of the module docstring.

    Args:
        calibration: The fit and its held-out figures.

    Returns:
        None when the fit may be saved, else why not.
    """
    held = len(calibration.held_out)
    wrong = int(calibration.held_out_wrong.sum())
    right = held - wrong
    if held < MIN_HELD_OUT_ITEMS or min(right, wrong) < MIN_HELD_OUT_PER_CLASS:
        fewest = min(right, wrong)
        growth = (
            max(MIN_HELD_OUT_ITEMS / held, MIN_HELD_OUT_PER_CLASS / fewest) if fewest > 0 else None
        )
        return Rejection(
            "sample",
            f"{held} items were held out to measure the fit, {right} answered right and "
            f"{wrong} wrong: too few to trust (a fit is saved only when at least "
            f"{MIN_HELD_OUT_ITEMS} are held out, with at least {MIN_HELD_OUT_PER_CLASS} "
            f"answered right and {MIN_HELD_OUT_PER_CLASS} wrong)",
            growth,
        )
    fitted, length = calibration.held_out_auroc, calibration.held_out_length_auroc
    # Both classes are present by now, so neither AUROC is NaN.
    if fitted < length:
        return Rejection(
            "length",
            f"the fit ranks the {held} held-out prompts worse than their length does (held-out "
            f"AUROC {fitted:.3f}, against {length:.3f} for escalating the longest prompts "
            "first), so routing by it would be worse than the simplest rule",
        )
    return None


def review_against_prior(calibration: Calibration, prior: DifficultyModel) -> Rejection | None:
    """Check a fit by :func:`review`, then against the prior on the same held-out items.

    Args:
        calibration: The fit and its held-out figures.
        prior: The model in use, built from the model's size and family.

    Returns:
        None when the fit may replace the prior, else why not.
    """
    rejection = review(calibration)
    if rejection is not None:
        return rejection
    wrong = calibration.held_out_wrong
    prior_scores = prior.scores(feature_matrix(calibration.held_out))
    fitted_loss = held_out_log_loss(calibration.held_out_scores, wrong)
    prior_loss = held_out_log_loss(prior_scores, wrong)
    if fitted_loss >= prior_loss:
        return Rejection(
            "prior",
            f"on the {len(wrong)} held-out items the fit predicts wrong answers no better than "
            f"the prior from the model's size (log loss {fitted_loss:.3f} against "
            f"{prior_loss:.3f}; AUROC {calibration.held_out_auroc:.3f} against "
            f"{auroc(prior_scores, wrong):.3f})",
        )
    return None


def held_out_log_loss(scores: np.ndarray, wrong: np.ndarray) -> float:
    """Mean log loss of scores as probabilities of a wrong answer (lower is better)."""
    p = np.clip(np.asarray(scores, dtype=np.float64), 1e-12, 1 - 1e-12)
    y = np.asarray(wrong, dtype=np.float64)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
