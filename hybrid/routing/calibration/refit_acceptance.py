"""Whether a refit from traffic may replace the difficulty model in use.

A refit (:mod:`hybrid.routing.calibration.learning`) replaces the model in use only when
(:func:`review`):

1. enough is held out to measure it: at least :data:`~.acceptance.MIN_HELD_OUT_ITEMS`
   examples, at least :data:`~.acceptance.MIN_HELD_OUT_PER_CLASS` right and as many wrong;
2. its held-out AUROC is at least prompt length's, as for any calibration;
3. it ranks better than the current model: a refit that does not improve on the model in use
   is not adopted.  When the labelled requests hold at least
   :data:`~.acceptance.MIN_HELD_OUT_PER_CLASS` right and as many wrong, the comparison is made
   on them alone, each scored by a fit that did not see it (the training split's by their
   out-of-fold scores, the held-out ones by the refit): they are what the user's traffic looks
   like, and the model in use has never been fitted on them, whereas it was fitted on the
   calibration answers held out here, which flatters it.  When the model has a model stage and
   as many of the labelled requests carry a prompt vector, the comparison is made on those,
   both stages together (what the router decides;
   :meth:`~hybrid.routing.calibration.probe_refit.ProbeRefit.judged`).  Otherwise the
   comparison is on the held-out examples.

The rules for a fit made by ``hybrid calibrate`` are :mod:`hybrid.routing.calibration.acceptance`'s.
"""

from __future__ import annotations

import math

from hybrid.routing.calibration.acceptance import MIN_HELD_OUT_ITEMS, MIN_HELD_OUT_PER_CLASS


def review(
    held: int,
    wrong: int,
    after: float,
    length: float,
    before: float,
    *,
    traffic: tuple[int, float, float] | None = None,
    both: tuple[int, float, float] | None = None,
) -> str | None:
    """Why a refit must not replace the model in use (module docstring), or None.

    Args:
        held: Examples held out.
        wrong: Of those, how many local answers were wrong.
        after: The refit's held-out AUROC.
        length: Prompt length's held-out AUROC.
        before: The current model's held-out AUROC; NaN when there is no current model.
        traffic: When the labelled requests hold enough of each class to measure on, their
            count and the refit's (each scored by a fit that did not see it) and the current
            model's AUROC on them; the comparison with the model in use is then made on them
            alone.
        both: When enough labelled requests carry a prompt vector
            (:meth:`ProbeRefit.judged`), their count and the refit's and the model in use's
            AUROC on them, both stages together: the comparison is then made on what the
            router decides.

    Returns:
        One sentence without a final full stop, or None.
    """
    right = held - wrong
    if held < MIN_HELD_OUT_ITEMS or min(right, wrong) < MIN_HELD_OUT_PER_CLASS:
        return (
            f"{held} examples were held out to measure the refit, {right} answered right and "
            f"{wrong} wrong: too few to trust (at least {MIN_HELD_OUT_ITEMS}, with "
            f"{MIN_HELD_OUT_PER_CLASS} right and {MIN_HELD_OUT_PER_CLASS} wrong, are needed); "
            f"label more requests (POST /v1/hybrid/feedback, routing.learn.shadow_rate, or "
            f"routing.learn.local_shadow_rate for the requests sent to the cloud)"
        )
    if after < length:
        return (
            f"the refit ranks the {held} held-out examples worse than their length does "
            f"(held-out AUROC {after:.3f}, against {length:.3f} for prompt length)"
        )
    if both is not None and not math.isnan(both[2]):
        requests, after_both, before_both = both
        if not after_both > before_both:
            return (
                f"the refit does not improve on the model in use on the {requests} labelled "
                f"requests with a prompt vector, both stages together, each scored by a fit "
                f"that did not see it (AUROC {after_both:.3f}, against {before_both:.3f} now)"
            )
        return None
    if traffic is not None:
        requests, after_traffic, before_traffic = traffic
        if not math.isnan(before_traffic) and not after_traffic > before_traffic:
            return (
                f"the refit does not improve on the model in use on the {requests} labelled "
                f"requests, each scored by a fit that did not see it (AUROC "
                f"{after_traffic:.3f}, against {before_traffic:.3f} now)"
            )
        return None
    if not math.isnan(before) and not after > before:
        return (
            f"the refit does not improve on the model in use on the {held} held-out examples "
            f"(held-out AUROC {after:.3f}, against {before:.3f} now)"
        )
    return None
