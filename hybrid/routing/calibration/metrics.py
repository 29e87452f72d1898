"""How good a router is: AUROC, the quality-vs-escalation curve, APGR and CPT.

The definitions follow RouteLLM (Ong et al., 2024), with the local model as the weak model and
the cloud as the strong one, whose answers are taken to be right (quality 1):

- a router escalates the requests it scores highest; escalating a share ``c`` of them gives a
  *quality* (the share of requests answered right: escalated ones, plus local ones the local
  model got right);
- the *performance gap recovered* at ``c`` is ``PGR(c) = (quality(c) - q_local) /
  (q_cloud - q_local)``: 0 for all-local, 1 for all-cloud;
- *APGR* is the area under PGR over ``c`` in [0, 1] (0.5 for a random router);
- *CPT(x)* is the smallest cloud share with ``PGR >= x``.

Requests with equal scores are escalated as a group, in random order: the curve runs straight
across a tie group, which is the expected quality over all orders within it.  A random router
(every score equal) is therefore exactly the diagonal, not one random draw.

:func:`bootstrap_ci` gives a percentile confidence interval for any of these figures by
resampling the requests.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

CLOUD_QUALITY = 1.0
"""The quality of an escalated request: cloud answers count as right."""


def auroc(scores: np.ndarray, wrong: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` as a detector of wrong local answers.

    Args:
        scores: One score per request; higher should mean "more likely wrong".
        wrong: 1 (or True) where the local answer was wrong.

    Returns:
        The probability that a random wrong request scores above a random right one, ties
        counting half; NaN when either class is empty.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(wrong, dtype=bool)
    n_wrong, n_right = int(labels.sum()), int((~labels).sum())
    if n_wrong == 0 or n_right == 0:
        return float("nan")
    ranks = _average_ranks(scores)
    rank_sum = float(ranks[labels].sum())
    return (rank_sum - n_wrong * (n_wrong + 1) / 2) / (n_wrong * n_right)


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, tied values sharing the mean of their ranks."""
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    ranks = np.empty(len(values), dtype=np.float64)
    start = 0
    while start < len(values):
        end = start
        while end + 1 < len(values) and sorted_values[end + 1] == sorted_values[start]:
            end += 1
        ranks[order[start : end + 1]] = (start + end) / 2 + 1
        start = end + 1
    return ranks


@dataclass(frozen=True, eq=False)
class RoutingCurve:
    """Quality as a function of the share of requests escalated, for one router.

    The curve is piecewise linear through its points (at the boundaries of tie groups).

    Attributes:
        shares: Increasing cloud shares from 0 to 1.
        quality: The quality at each share.
    """

    shares: np.ndarray
    quality: np.ndarray

    @property
    def local_quality(self) -> float:
        """Quality with nothing escalated: the local model's accuracy."""
        return float(self.quality[0])

    def quality_at(self, share: float) -> float:
        """Quality when escalating ``share`` of the requests (0 to 1)."""
        return float(np.interp(share, self.shares, self.quality))

    def pgr(self) -> np.ndarray:
        """The performance gap recovered at each point; all ones when local is already perfect."""
        gap = CLOUD_QUALITY - self.local_quality
        if gap <= 0:
            return np.ones_like(self.quality)
        result: np.ndarray = (self.quality - self.local_quality) / gap
        return result

    def apgr(self) -> float:
        """Average performance gap recovered: the area under PGR over the cloud share."""
        pgr = self.pgr()
        widths = np.diff(self.shares)
        return float(np.sum(widths * (pgr[1:] + pgr[:-1]) / 2))

    def cpt(self, recovered: float) -> float:
        """Call-performance threshold: the smallest cloud share with PGR at least ``recovered``.

        Args:
            recovered: The share of the gap to recover, e.g. 0.5 for CPT(50%).

        Returns:
            The cloud share, interpolated along the curve.
        """
        return _first_crossing(self.shares, self.pgr(), recovered)

    def share_for_quality(self, target: float) -> float:
        """The smallest cloud share at which quality reaches ``target`` (e.g. 0.95)."""
        return _first_crossing(self.shares, self.quality, target)


def _first_crossing(xs: np.ndarray, ys: np.ndarray, target: float) -> float:
    """The smallest x where the piecewise-linear curve reaches ``target`` (1.0 if never)."""
    if ys[0] >= target:
        return float(xs[0])
    for i in range(1, len(xs)):
        if ys[i] >= target - 1e-12:
            rise = ys[i] - ys[i - 1]
            fraction = 1.0 if rise <= 0 else (target - ys[i - 1]) / rise
            return float(xs[i - 1] + min(max(fraction, 0.0), 1.0) * (xs[i] - xs[i - 1]))
    return 1.0


def routing_curve(scores: np.ndarray, wrong: np.ndarray) -> RoutingCurve:
    """The quality-vs-escalation curve of a router that escalates the highest scores first.

    Args:
        scores: One score per request (higher escalates first).
        wrong: 1 (or True) where the local answer was wrong.

    Returns:
        The curve through (0, local accuracy), one point per tie group, and (1, 1).

    Raises:
        ValueError: The inputs are empty or differ in length.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(wrong, dtype=np.float64)
    if scores.shape != labels.shape or scores.size == 0:
        raise ValueError("scores and wrong must be non-empty and of equal length")
    n = scores.size
    order = np.argsort(-scores, kind="mergesort")
    sorted_scores, sorted_wrong = scores[order], labels[order]
    # Each escalated wrong request gains one right answer; group ends are where scores change.
    gains = np.cumsum(sorted_wrong)
    ends = np.flatnonzero(np.append(sorted_scores[1:] != sorted_scores[:-1], True))
    local = 1.0 - float(labels.mean())
    shares = np.concatenate([[0.0], (ends + 1) / n])
    quality = np.concatenate([[local], local + gains[ends] / n * CLOUD_QUALITY])
    return RoutingCurve(shares, quality)


def bootstrap_ci(
    statistic: Callable[[np.ndarray], float],
    n: int,
    *,
    resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """A percentile bootstrap confidence interval, resampling items with replacement.

    Args:
        statistic: The figure of a sample, given the indices (0 to ``n - 1``, with repeats)
            of the items drawn; NaN where it is undefined (a sample of one class).
        n: How many items there are.
        resamples: Samples drawn.
        seed: Seeds the draws: the same seed gives the same interval.
        level: Coverage, e.g. 0.95.

    Returns:
        ``(low, high)``, the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of the
        defined resampled figures; ``(nan, nan)`` when fewer than half of them are defined.

    Raises:
        ValueError: ``n`` or ``resamples`` is below 1, or ``level`` is not in (0, 1).
    """
    if n < 1 or resamples < 1:
        raise ValueError(f"need at least one item and one resample (got {n}, {resamples})")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be between 0 and 1 (got {level})")
    rng = np.random.default_rng(seed)
    values = np.array([statistic(rng.integers(0, n, size=n)) for _ in range(resamples)])
    defined = values[~np.isnan(values)]
    if defined.size < resamples / 2:
        return (math.nan, math.nan)
    tail = (1.0 - level) / 2
    low, high = np.quantile(defined, [tail, 1.0 - tail])
    return (float(low), float(high))
