"""Decode speed as measured on this machine, for ``/health`` and for routing on capacity.

The local model decodes several answers together in one batch (continuous batching): each
stream is slower in a batch than alone, but the batch as a whole generates more tokens per
second.  So decode speed is measured per batch size: each finished answer says how many
sequences decoded beside it on average (:attr:`GenerationDone.batch_size`), and its speed
goes into the running mean of that batch size, rounded (1, 2, 3, ...).

Between and beyond the batch sizes measured, :meth:`SpeedMeter.stream_decode_tokens_per_s`
estimates the speed one stream gets at a batch size *n* conservatively, assuming the batch
gains nothing that has not been seen:

- above the largest batch size measured (or before any measurement above one), the batch's
  aggregate rate stays at that size's: each of *n* streams gets ``aggregate / n``; before
  any batch was measured that is ``single-stream rate / n``;
- below the smallest measured, each stream decodes at that size's per-stream rate (a stream
  in a smaller batch is no slower);
- between two measured sizes, the aggregate rate is interpolated linearly.
"""

from __future__ import annotations

import bisect
import threading

from hybrid.generation import GenerationDone

# Weight of the newest generation in the running mean.
_EWMA_WEIGHT = 0.2
# Shorter answers say more about start-up costs than about steady decode speed.
MIN_TOKENS = 8
# Shorter prompts say more about fixed per-request costs than about prompt-processing speed.
MIN_PROMPT_TOKENS = 32
# The answer length assumed before any answer has been seen.
DEFAULT_ANSWER_TOKENS = 256


class SpeedMeter:
    """Running means of decode speed per batch size and of prompt-processing (prefill) speed.

    Prefill speed is the prompt tokens the model evaluated (those not reused from a slot's
    KV cache, ``usage.cache_read_tokens``) over the time to the first token.  Decode speed is
    kept per rounded batch size, as the speed of one stream (the answer's own tokens per
    second); the aggregate rate of a batch of *n* is *n* times that.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Per-stream decode tokens/s by rounded batch size, and how many answers each holds.
        self._stream: dict[int, float] = {}
        self._counts: dict[int, int] = {}
        self._prefill: float | None = None
        self._answer_tokens: float | None = None
        self._samples = 0

    @property
    def decode_tokens_per_s(self) -> float | None:
        """Single-stream decode speed: what one answer decoding alone gets.

        The running mean at batch size 1 when one has been measured; otherwise the per-stream
        rate at the smallest batch size measured (a lower bound: a stream alone is no slower
        than in a batch).  None before the first qualifying generation.
        """
        with self._lock:
            if not self._stream:
                return None
            return self._stream[min(self._stream)]

    @property
    def aggregate_decode_tokens_per_s(self) -> dict[int, float]:
        """The measured aggregate decode rates: batch size -> tokens per second of the
        whole batch (the per-stream mean times the batch size), smallest batch first; empty
        before the first qualifying generation."""
        with self._lock:
            return {size: rate * size for size, rate in sorted(self._stream.items())}

    @property
    def decode_samples_by_batch(self) -> dict[int, int]:
        """How many generations each batch size's mean is built from, smallest first."""
        with self._lock:
            return dict(sorted(self._counts.items()))

    def stream_decode_tokens_per_s(self, batch_size: int) -> float | None:
        """The decode speed one stream gets while ``batch_size`` sequences decode together.

        Measured when that batch size has been; estimated otherwise, conservatively (see the
        module docstring): no batch is assumed to generate more in all than the largest
        measured one, nor a stream in a smaller batch to be faster than in the smallest
        measured one.

        Args:
            batch_size: Sequences decoding together, this one included (1 and up; below 1
                counts as 1).

        Returns:
            Tokens per second of one stream, or None before the first qualifying generation.
        """
        n = max(1, batch_size)
        with self._lock:
            if not self._stream:
                return None
            if n in self._stream:
                return self._stream[n]
            sizes = sorted(self._stream)
            at = bisect.bisect_left(sizes, n)
            if at == 0:  # smaller than every measured batch
                return self._stream[sizes[0]]
            low = sizes[at - 1]
            low_aggregate = self._stream[low] * low
            if at == len(sizes):  # larger than every measured batch
                return low_aggregate / n
            high = sizes[at]
            high_aggregate = self._stream[high] * high
            aggregate = low_aggregate + (high_aggregate - low_aggregate) * (n - low) / (high - low)
            return aggregate / n

    @property
    def prefill_tokens_per_s(self) -> float | None:
        """The running mean of prompt tokens evaluated per second, or None before the first."""
        with self._lock:
            return self._prefill

    @property
    def typical_answer_tokens(self) -> int:
        """The running mean of answer lengths in tokens (a default before the first)."""
        with self._lock:
            mean = self._answer_tokens
        return DEFAULT_ANSWER_TOKENS if mean is None else max(1, round(mean))

    @property
    def samples(self) -> int:
        """How many generations the decode means are built from, over all batch sizes."""
        with self._lock:
            return self._samples

    def observe(self, done: GenerationDone, *, constrained: bool) -> None:
        """Fold one finished generation into the means.

        Args:
            done: The generation's closing event; its ``batch_size`` (None: alone) says
                which batch size's mean its decode speed joins.
            constrained: The output was grammar-constrained, which decodes slower by design;
                such generations are left out of the decode speed.
        """
        usage = done.usage
        if not done.cancelled:
            with self._lock:
                self._answer_tokens = _mean(self._answer_tokens, usage.completion_tokens)
        ttft = done.time_to_first_token_s
        # Tokens reused from a slot's cache were not evaluated: they would inflate the speed.
        evaluated = usage.prompt_tokens - min(max(usage.cache_read_tokens, 0), usage.prompt_tokens)
        if ttft and evaluated >= MIN_PROMPT_TOKENS:
            with self._lock:
                self._prefill = _mean(self._prefill, evaluated / ttft)
        rate = done.decode_tokens_per_s
        if constrained or rate is None or usage.completion_tokens < MIN_TOKENS:
            return
        size = 1 if done.batch_size is None else max(1, round(done.batch_size))
        with self._lock:
            self._samples += 1
            self._counts[size] = self._counts.get(size, 0) + 1
            self._stream[size] = _mean(self._stream.get(size), rate)


def _mean(current: float | None, new: float) -> float:
    return new if current is None else current + _EWMA_WEIGHT * (new - current)
