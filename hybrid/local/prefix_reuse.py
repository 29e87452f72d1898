"""Prefix reuse: which of the batch's slots a request takes, and how much of its cache it keeps.

A :class:`Slot` is one sequence of the scheduler's context (one of ``n_parallel``), with its own
part of the KV cache.  It keeps the tokens its last request left in the cache.  A new request
goes to the free slot whose cache shares the longest start with its prompt (the same
conversation, the same system prompt), when that covers at least half the prompt; otherwise to
the slot used longest ago (:func:`choose_slot`).  Only what follows the shared start is
evaluated, and at least the prompt's last token always is (:meth:`Slot.keep_start`).

A model with sliding-window attention keeps only the window of its sliding layers (``swa_full``
off), so a start can be reused only when the window before its end is still cached (as
llama.cpp's server decides it); otherwise the slot is cleared and the prompt read whole.

Only the scheduler's thread calls these, on the context it owns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from hybrid.local.batch_request import BatchRequest

# A slot is reused for its cached start when that covers at least this share of the prompt.
_REUSE_SHARE = 0.5


@dataclass(eq=False)
class Slot:
    """One sequence of the context: the tokens its cache holds and the request it serves."""

    seq: int
    cached: list[int] = field(default_factory=list)
    request: BatchRequest | None = None
    used: int = 0
    # The logits after the last cached token, kept by an embedding (None once a token is added).
    logits: np.ndarray | None = None
    # Of those cached tokens, how many the embedding found cached before it (its own reuse).
    logits_reused: int = 0

    def keep_start(self, common: int, prompt_length: int, memory: Any, n_swa: int) -> int:
        """Keep the start of the cache a prompt can reuse, and remove the rest from it.

        Args:
            common: How many leading tokens the cache shares with the prompt.
            prompt_length: The prompt's tokens (its last one is always evaluated again).
            memory: The context's memory (``llama_memory_t``).
            n_swa: The sliding window of the model's sliding-window layers (0: none).

        Returns:
            The tokens kept (0: the slot's sequence was cleared).
        """
        import llama_cpp

        keep = min(common, prompt_length - 1)
        seq = self.seq
        if keep > 0 and n_swa > 0:
            # The sliding layers keep their window only: reusing `keep` tokens needs the
            # window before position `keep` still there (llama.cpp's server's rule).  It is
            # read before the removal below, which may empty the sliding layers (their oldest
            # position then reads -1, as if nothing had ever been dropped).
            oldest = llama_cpp.llama_memory_seq_pos_min(memory, seq)
            if oldest < 0 or oldest > max(0, keep - n_swa):
                keep = 0
        if 0 < keep < len(self.cached):
            if not llama_cpp.llama_memory_seq_rm(memory, seq, keep, -1):
                keep = 0
        if keep == 0:
            llama_cpp.llama_memory_seq_rm(memory, seq, -1, -1)
        self.cached = self.cached[:keep]
        return keep


def choose_slot(free: list[Slot], tokens: tuple[int, ...]) -> Slot:
    """The free slot for a prompt: the one sharing its longest start, when that covers at
    least half of it; otherwise the one used longest ago."""
    best, shared = min(free, key=lambda slot: slot.used), 0
    for slot in free:
        common = common_prefix(slot.cached, tokens)
        if common > shared:
            best, shared = slot, common
    if shared < _REUSE_SHARE * len(tokens):
        return min(free, key=lambda slot: slot.used)
    return best


def common_prefix(cached: Sequence[int], tokens: Sequence[int]) -> int:
    """How many leading tokens two sequences share."""
    limit = min(len(cached), len(tokens))
    if limit == 0:
        return 0
    differ = np.flatnonzero(np.asarray(cached[:limit]) != np.asarray(tokens[:limit]))
    return int(differ[0]) if differ.size else limit
