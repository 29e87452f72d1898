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

A refused fit leaves the calibration in use as it was; :class:`Rejection` says why, and by how
much the sample would have to grow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from hybrid.routing.calibration.fitting import Calibration

MIN_HELD_OUT_ITEMS = 50
"""Fewest held-out items a saved fit is measured on (20 items per category hold out 54)."""

MIN_HELD_OUT_PER_CLASS = 10
"""Fewest held-out items answered right, and fewest answered wrong, a saved fit is measured on."""


@dataclass(frozen=True)
class Rejection:
    """Why a fit must not be saved.

    Attributes:
        reason: ``"sample"`` (too little held-out evidence) or ``"length"`` (worse than the
            length rule).
        message: What happened, in one sentence without a final full stop.
        growth: How many times more items would probably meet the minimums (from the held-out
            counts seen); None when it cannot be estimated (every held-out answer of one kind)
            or when the sample was large enough.
    """

    reason: Literal["sample", "length"]
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
