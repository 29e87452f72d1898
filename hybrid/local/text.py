"""Incremental output text: stop sequences and whitespace trimming while streaming.

Text arrives token by token.  A stop sequence may span several tokens, so text that could be the
start of one is held back until it is clear either way; the stop sequence itself is never sent.
When the format asks for it, leading whitespace is dropped and trailing whitespace is held back
until more text follows, so the streamed answer equals the stripped whole answer.

An answer cut short (by ``max_tokens``) may end in the first characters of a stop sequence.
Those of the request's own stop sequences are sent, as llama.cpp's server does: they may be
the answer's own text.  Those of the others, the prompt format's (a transcript's next turn,
``User:`` on a new line; a model's end-of-turn text), are dropped.
"""

from __future__ import annotations

from collections.abc import Sequence


class StopText:
    """Accumulates generated text and releases what is safe to send.

    Args:
        stop: Stop sequences; empty strings are ignored.
        strip: Drop leading and trailing whitespace of the whole answer.
        own: Those of ``stop`` that are the request's own; the others are the format's.
    """

    def __init__(self, stop: Sequence[str], *, strip: bool, own: Sequence[str] = ()) -> None:
        self._stop = tuple(s for s in stop if s)
        self._format = tuple(s for s in self._stop if s not in own)
        self._strip = strip
        self._pending = ""
        self._started = not strip
        self.stopped = False
        self.matched: str | None = None

    def feed(self, text: str) -> str:
        """Add generated text.

        Args:
            text: The newly decoded text.

        Returns:
            The text that can be sent now (possibly empty).  Once a stop sequence is found,
            :attr:`stopped` is True and everything after it is discarded.
        """
        if self.stopped:
            return ""
        if not self._started:
            text = text.lstrip()
            if not text:
                return ""
            self._started = True
        self._pending += text
        cut = self._first_stop()
        if cut is not None:
            self.stopped = True
            released, self._pending = self._pending[:cut], ""
            return released.rstrip() if self._strip else released
        keep = self._holdback()
        released, self._pending = (
            self._pending[: len(self._pending) - keep],
            self._pending[len(self._pending) - keep :],
        )
        return released

    def flush(self) -> str:
        """Release what was held back, at the end of generation.

        Returns:
            The remaining text (right-stripped when trimming), less a tail that begins one of
            the format's stop sequences.
        """
        released, self._pending = self._pending, ""
        released = released[: len(released) - _partial(released, self._format)]
        return released.rstrip() if self._strip else released

    def _first_stop(self) -> int | None:
        found = [(i, s) for s in self._stop if (i := self._pending.find(s)) >= 0]
        if not found:
            return None
        position, self.matched = min(found)
        return position

    def _holdback(self) -> int:
        """Length of the tail that may still become a stop sequence or is trailing space."""
        pending = self._pending
        keep = _partial(pending, self._stop)
        if self._strip:
            keep = max(keep, len(pending) - len(pending.rstrip()))
        return keep


def _partial(text: str, stops: Sequence[str]) -> int:
    """The length of the longest tail of ``text`` that begins one of ``stops`` (0: none)."""
    longest = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), longest, -1):
            if stop.startswith(text[-size:]):
                longest = size
                break
    return longest
