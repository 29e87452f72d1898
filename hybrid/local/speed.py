"""Decode speed as measured on this machine, for ``/health`` and for routing on capacity."""

from __future__ import annotations

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
    """Running means of decode and prompt-processing (prefill) speed over recent generations.

    Prefill speed is the prompt's tokens over the time to the first token; a prompt whose start
    was cached from the previous request looks faster than it is, so it is an optimistic figure.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._decode: float | None = None
        self._prefill: float | None = None
        self._answer_tokens: float | None = None
        self._samples = 0

    @property
    def decode_tokens_per_s(self) -> float | None:
        """The running mean, or None before the first qualifying generation."""
        with self._lock:
            return self._decode

    @property
    def prefill_tokens_per_s(self) -> float | None:
        """The running mean of prompt tokens per second, or None before the first."""
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
        if not done.cancelled:
            with self._lock:
                self._answer_tokens = _mean(self._answer_tokens, done.usage.completion_tokens)
        ttft = done.time_to_first_token_s
        if ttft and done.usage.prompt_tokens >= MIN_PROMPT_TOKENS:
            prefill = done.usage.prompt_tokens / ttft
            with self._lock:
                self._prefill = _mean(self._prefill, prefill)
        rate = done.decode_tokens_per_s
        if constrained or rate is None or done.usage.completion_tokens < MIN_TOKENS:
            return
        with self._lock:
            self._samples += 1
            self._decode = _mean(self._decode, rate)


def _mean(current: float | None, new: float) -> float:
    return new if current is None else current + _EWMA_WEIGHT * (new - current)
