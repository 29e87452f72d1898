"""Decode speed as measured on this machine, for ``/health`` and for routing on capacity."""

from __future__ import annotations

import threading

from hybrid.generation import GenerationDone

# Weight of the newest generation in the running mean.
_EWMA_WEIGHT = 0.2
# Shorter answers say more about start-up costs than about steady decode speed.
MIN_TOKENS = 8


class SpeedMeter:
    """A running mean of decode tokens per second over recent, unconstrained generations."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._decode: float | None = None
        self._samples = 0

    @property
    def decode_tokens_per_s(self) -> float | None:
        """The running mean, or None before the first qualifying generation."""
        with self._lock:
            return self._decode

    @property
    def samples(self) -> int:
        """How many generations the mean is built from."""
        with self._lock:
            return self._samples

    def observe(self, done: GenerationDone, *, constrained: bool) -> None:
        """Fold one finished generation into the mean.

        Args:
            done: The generation's closing event.
            constrained: The output was grammar-constrained, which decodes slower by design;
                such generations are left out.
        """
        rate = done.decode_tokens_per_s
        if constrained or rate is None or done.usage.completion_tokens < MIN_TOKENS:
            return
        with self._lock:
            self._samples += 1
            if self._decode is None:
                self._decode = rate
            else:
                self._decode += _EWMA_WEIGHT * (rate - self._decode)
