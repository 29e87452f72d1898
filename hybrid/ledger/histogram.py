"""Latency histograms with fixed buckets, so that percentiles over any number of records cost
the same.

The bucket bounds are the R10 preferred numbers (1, 1.25, 1.6, 2, 2.5, 3.15, 4, 5, 6.3, 8 in
each decade) from 1 ms to 1,000 s: 61 upper bounds, 62 buckets.  Bucket 0 holds values
``<= 0.001``; bucket ``i`` holds ``BOUNDS[i - 1] < value <= BOUNDS[i]``; the last bucket holds
everything above 1,000 s.  Two neighbouring bounds differ by at most 28 %.

A percentile read from a histogram is the nearest-rank definition of
:func:`hybrid.ledger.totals.percentile` with the value replaced by the upper bound of its
bucket, clamped to the largest value counted.  So the exact nearest-rank value ``p`` and the
reported one ``r`` satisfy ``p <= r``, and ``r <= max(0.001, 1.28 * p)`` up to 1,000 s (above
it, ``r`` is the largest value): "p95 2.50 s" reads as "95 % of the requests took at most
2.5 s, and the exact p95 is above 2 s".
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

_MANTISSAS = ("1", "1.25", "1.6", "2", "2.5", "3.15", "4", "5", "6.3", "8")

BOUNDS: tuple[float, ...] = (
    *(float(f"{mantissa}e{exponent}") for exponent in range(-3, 3) for mantissa in _MANTISSAS),
    1000.0,
)
"""The buckets' upper bounds, in seconds, ascending (the last bucket has none)."""

BUCKETS = len(BOUNDS) + 1
"""How many buckets a histogram has."""

MAX_ERROR = max(high / low for low, high in itertools.pairwise(BOUNDS))
"""The largest ratio of a reported percentile to the exact one (above 1 ms): about 1.28."""


def bucket(value: float) -> int:
    """Return the index of the bucket a value falls in (``value <= BOUNDS[index]``)."""
    return bisect.bisect_left(BOUNDS, value)


def bucket_sql(column: str) -> str:
    """A standard SQL ``CASE`` expression giving the bucket index of a column, as
    :func:`bucket` does (NULL for NULL).

    The comparisons nest as a binary search, so a row costs about six of them.

    Args:
        column: A column (or expression) of seconds.
    """

    def search(low: int, high: int) -> str:
        # The index is in [low, high]: index i means BOUNDS[i - 1] < value <= BOUNDS[i].
        if low == high:
            return str(low)
        middle = (low + high) // 2
        return (
            f"CASE WHEN {column} <= {BOUNDS[middle]!r} THEN {search(low, middle)} "
            f"ELSE {search(middle + 1, high)} END"
        )

    return f"CASE WHEN {column} IS NULL THEN NULL ELSE {search(0, len(BOUNDS))} END"


@dataclass(frozen=True)
class Histogram:
    """Counts of values per bucket, and the largest value.

    Attributes:
        counts: One count per bucket (:data:`BUCKETS` of them).
        max: The largest value counted, None when there are none.
    """

    counts: tuple[int, ...] = (0,) * BUCKETS
    max: float | None = None

    def __post_init__(self) -> None:
        """Reject a histogram with the wrong number of buckets.

        Raises:
            ValueError: ``counts`` does not have :data:`BUCKETS` entries.
        """
        if len(self.counts) != BUCKETS:
            raise ValueError(f"a histogram has {BUCKETS} buckets, not {len(self.counts)}")

    @property
    def samples(self) -> int:
        """How many values were counted."""
        return sum(self.counts)

    @classmethod
    def of(cls, values: Iterable[float]) -> Histogram:
        """Count values."""
        counts = [0] * BUCKETS
        largest: float | None = None
        for value in values:
            counts[bucket(value)] += 1
            largest = value if largest is None or value > largest else largest
        return cls(tuple(counts), largest)

    def plus(self, other: Histogram) -> Histogram:
        """Return the histogram of both sets of values."""
        return Histogram(
            tuple(a + b for a, b in zip(self.counts, other.counts, strict=True)),
            _larger(self.max, other.max),
        )

    def percentile(self, percent: float) -> float | None:
        """Return the upper bound of the bucket holding the nearest-rank percentile, clamped to
        the largest value (see the module's docstring for the error).

        Args:
            percent: In (0, 100].

        Returns:
            The bound, or None when nothing was counted.
        """
        total = self.samples
        if not total or self.max is None:
            return None
        rank = min(max(1, math.ceil(percent / 100 * total)), total)
        seen = 0
        for index, count in enumerate(self.counts):
            seen += count
            if seen >= rank:
                bound = BOUNDS[index] if index < len(BOUNDS) else math.inf
                return min(bound, self.max)
        return self.max  # unreachable: the counts add up to total


def histogram_of(counts: Sequence[int | None], largest: float | None) -> Histogram:
    """Build a histogram from query results, where a bucket summed over no rows is NULL."""
    return Histogram(tuple(int(count or 0) for count in counts), largest)


def _larger(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return a if a >= b else b
