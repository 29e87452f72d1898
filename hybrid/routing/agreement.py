"""Grading a local answer against the cloud's without a judge: word agreement.

Shadow comparisons (:mod:`hybrid.routing.shadow`) label a local answer by how far it agrees
with the cloud's answer to the same request: graded here when no judge model is set, or when
the judge's verdict is unreadable.

**Grading without a judge** (:func:`grade_overlap`).  Both answers are normalised (Unicode
NFKC, lower case, punctuation and the articles *a*, *an*, *the* dropped, whitespace
collapsed) and compared as word sequences.  When the cloud's answer has words that the
request's question (:func:`question_of`) does not, only the words each answer adds to the
question are compared: answers restate the question ("The capital of Spain is Madrid."), and a
local answer that only repeats it ("The capital of Spain is a city.") would otherwise share most
of its words with the cloud's.  A local answer that adds nothing to the question then does not
agree.  Otherwise (the cloud's answer is made of the question's words: "yes", one of the
options it names) the whole answers are compared.  Then:

1. the same words: agreement 1;
2. the shorter answer states a number the longer one lacks: agreement 0 (numbers decide
   arithmetic, and "it is 12" / "it is 13" share two words of three);
3. a short answer (up to :data:`SHORT_ANSWER_WORDS` words) found whole inside the other
   ("Paris" in "The capital of France is Paris."): agreement 1;
4. otherwise the word-overlap F1 (SQuAD's answer F1).

Compared whole, answers that restate the question taught the router wrong:
``scripts/shadow_grading.py`` (docs/shadow-grading.md) measures both on recorded local answers.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from typing import Literal

from hybrid.generation import FinishReason, GenerationRequest

SHORT_ANSWER_WORDS = 8
"""An answer of at most this many words counts as agreeing when the other contains it whole."""

_ARTICLES = frozenset({"a", "an", "the"})
_WORD = re.compile(r"\d+(?:[.,]\d+)*|\w+")
_NUMBER = re.compile(r"^\d+(?:[.,]\d+)*$")
_SENTENCE_END = re.compile(r"(?<=[.!?\uff1f\u3002])\s+|\n+")


@dataclass(frozen=True)
class Grade:
    """How a local answer compares with the cloud's.

    Attributes:
        good: The local answer counts as good (it agrees with the cloud's).
        agreement: 0 to 1: the overlap score, or 1 / 0 for a judge's yes / no.
        method: ``match`` (same words, or a short answer contained), ``overlap`` (word F1) or
            ``judge``.
    """

    good: bool
    agreement: float
    method: Literal["match", "overlap", "judge"]


def words(text: str) -> list[str]:
    """The normalised words of an answer (see the module docstring)."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return [word for word in _WORD.findall(folded) if word not in _ARTICLES]


def question_of(text: str) -> str:
    """The question a request's text asks: its last sentence that ends with a question mark;
    without one, its last sentence or line ("Translate this into German: good morning")."""
    sentences = [part for part in _SENTENCE_END.split(text) if part.strip()]
    asked = [part for part in sentences if part.rstrip().endswith(("?", "\uff1f"))]
    return (asked or sentences or [""])[-1].strip()


def gradable(text: str, finish_reason: FinishReason | None) -> bool:
    """Whether an answer can take part in a comparison: it ended normally (end of turn, a stop
    sequence or max tokens) and has text.

    An empty answer (a content filter, a reasoning model that spent ``max_tokens`` before
    writing anything) or one that ended in tool calls or a refusal says nothing about the
    worth of the answer it would be compared with, so it gives no label either way.

    Args:
        text: The answer.
        finish_reason: How it ended; None when the call failed.
    """
    return finish_reason in ("stop", "length") and bool(text.strip())


def grade_overlap(local: str, cloud: str, *, threshold: float, question: str = "") -> Grade:
    """Grade a local answer against a cloud answer without a judge (module docstring).

    Args:
        local: The local model's answer.
        cloud: The cloud model's answer to the same request.
        threshold: Agreement at or above which the local answer is good.
        question: The question both answer (:func:`question_of` of the request's text):
            where the cloud's answer adds words to it, only the words each answer adds are
            compared.  Empty: the whole answers are compared.

    Returns:
        The grade; an empty local answer never agrees, nor does one that adds nothing to the
        question when the cloud's answer does.
    """
    mine, theirs = words(local), words(cloud)
    given = set(words(question))
    added = [word for word in theirs if word not in given]
    if mine and added and len(added) < len(theirs):
        mine, theirs = [word for word in mine if word not in given], added
    if not mine or not theirs:
        return Grade(False, 0.0, "overlap")
    if mine == theirs:
        return Grade(True, 1.0, "match")
    short, long = (mine, theirs) if len(mine) <= len(theirs) else (theirs, mine)
    if {w for w in short if _NUMBER.match(w)} - {w for w in long if _NUMBER.match(w)}:
        return Grade(False, 0.0, "overlap")  # the shorter answer states a number the other lacks
    if len(short) <= SHORT_ANSWER_WORDS and _contains(long, short):
        return Grade(True, 1.0, "match")
    common = sum((Counter(mine) & Counter(theirs)).values())
    if common == 0:
        return Grade(False, 0.0, "overlap")
    precision, recall = common / len(mine), common / len(theirs)
    f1 = 2 * precision * recall / (precision + recall)
    return Grade(f1 >= threshold, round(f1, 4), "overlap")


def _contains(haystack: list[str], needle: list[str]) -> bool:
    n = len(needle)
    return any(haystack[i : i + n] == needle for i in range(len(haystack) - n + 1))


def asked(request: GenerationRequest) -> str:
    """What a request asks: its prompt, or its last user message."""
    return request.prompt or next(
        (m.content for m in reversed(request.messages) if m.role == "user"), ""
    )
