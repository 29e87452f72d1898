"""What the privacy detectors share: the scanned text, in the forms they search, and a hit.

A :class:`ScanText` computes each derived form of a prompt (ASCII image, lower case, shapes,
token runs) once, however many detectors read it; a :class:`PrivacyHit` names a detector and a
span, never the matched text.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property

from hybrid.routing.privacy.shapes import SHAPE_TABLE
from hybrid.routing.privacy.tokens import TOKEN_TABLE


@dataclass(frozen=True)
class PrivacyHit:
    """Sensitive data found in a text.

    Attributes:
        detector: What was found (``email``, ``api_key:openai``, ``user_pattern:<name>``, ...);
            safe to log and to put in a routing reason.
        start: Offset of the first character of the match in the scanned text.
        end: Offset just past the match.  The span is for tests and tools (redaction); it must
            never be logged or put in a reason.
    """

    detector: str
    start: int
    end: int


class ScanText:
    """One text and the forms derived from it that detectors share, each computed once."""

    def __init__(self, text: str) -> None:
        self.text = text
        # "replace" maps each non-ASCII character to one "?", so offsets match the str.
        self.ascii = text.encode("ascii", "replace")

    @cached_property
    def lower(self) -> bytes:
        """The ASCII image in lower case."""
        return self.ascii.lower()

    @cached_property
    def shapes(self) -> bytes:
        """A space, then the text as shapes (see ``SHAPE_TABLE``): offset ``i`` is text ``i-1``.

        The leading space lets a number at the very start match the same ``" 0"`` prefix.
        """
        return b" " + self.ascii.translate(SHAPE_TABLE)

    @cached_property
    def tokens(self) -> bytes:
        """Token characters (base64/base64url) as ``t``, everything else as a space."""
        return self.ascii.translate(TOKEN_TABLE)

    def preceded_by(self, start: int, keywords: re.Pattern[bytes], window: int = 32) -> bool:
        """Whether ``keywords`` (see :func:`keywords`) occur in the bytes before.

        Args:
            start: Offset of what the keywords must precede.
            keywords: A pattern over lower-cased text.
            window: How many bytes before ``start`` to search.
        """
        return keywords.search(self.lower, max(0, start - window), start) is not None


class Detector(ABC):
    """Finds one family of sensitive data in a text."""

    @abstractmethod
    def find(self, text: ScanText) -> Iterator[PrivacyHit]:
        """Yield the hits in ``text`` (in any order; each detector's own order is by position).

        Args:
            text: The text to scan, with its shared derived forms.

        Returns:
            An iterator that does the work lazily, so that a caller can stop at the first hit.
        """


def keywords(*words: bytes) -> re.Pattern[bytes]:
    """A pattern finding any of ``words`` (lower case) in lower-cased text."""
    return re.compile(b"|".join(re.escape(word) for word in words))
