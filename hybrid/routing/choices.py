"""The closed set of answers a prompt offers, and whether an answer is one of them.

A prompt that lists lettered options on their own lines ("A) Paris", "(B) Rome"), or asks for
"yes or no" or "true or false", offers a closed set of answers (:func:`closed_set`); an answer
that opens with none of them ("I think the capital is Paris" to a yes-or-no question, "E" to
options A to D) is no answer to the question (:func:`outside`).  Only an answer's start is
read, so a stream's opening is read the same way.  The cascade discards such answers
(:mod:`hybrid.routing.cascade`), and the router evaluation counts them with it
(``scripts/router_cascade.py``).  A guess at yes or no is right half the time, so the difficulty
router scores such a prompt lower (:func:`guessed`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from hybrid.generation import GenerationRequest, Message, tool_needs

# An option on its own line: "A) ...", "(B) ...", "c. ...", "D: ...".
_OPTION = re.compile(r"^[ \t]*\(?([A-Ha-h])[).:]\s", re.MULTILINE)
# A turn that lists lettered lines offers them as options only when it asks for a choice: a
# question, or a word that asks to pick ("Rewrite these steps:\na. ...\nb. ..." offers none).
_CHOOSING = re.compile(
    r"\?|\b(?:choose|select|pick|answer|which|option|options|letter|correct|best)\b",
    re.IGNORECASE,
)
_YES_NO = re.compile(r"\byes\s+or\s+no\b|\byes/no\b", re.IGNORECASE)
_TRUE_FALSE = re.compile(r"\btrue\s+or\s+false\b|\btrue/false\b", re.IGNORECASE)
# What an answer may open with before the option it picks: emphasis, quotes, brackets, and "The
# correct answer is", "Answer:", "Option".
_LEAD_IN = re.compile(
    r"""^[\s*_"'`(\[]*
    (?:(?:the\s+)?(?:correct\s+|right\s+|best\s+|final\s+)?answer\b(?:\s+is\b)?[\s:*_-]*)?
    (?:option\b[\s:]*)?
    [\s*_"'`(\[]*""",
    re.IGNORECASE | re.VERBOSE,
)
_WORD = re.compile(r"[^\W_]+")


def closed_set(prompt: str) -> frozenset[str] | None:
    """The closed set of answers a prompt offers, lower-cased; None when it offers none.

    Two or more lettered options (A to H), each on its own line ("A) Paris", "(b) Rome",
    "c. Lyon", "D: Nice"), offer their letters when the prompt asks for a choice (a question
    mark, or "choose", "select", "pick", "answer", "which", "option", "letter", "correct",
    "best"): a lettered list to rewrite or summarise is no set.  Otherwise "yes or no"
    ("yes/no") offers yes and no, and "true or false" ("true/false") true and false.  A single
    lettered line is no set.
    """
    letters = _OPTION.findall(prompt)
    if len(letters) >= 2 and _CHOOSING.search(prompt):
        return frozenset(letter.lower() for letter in letters)
    if _YES_NO.search(prompt):
        return frozenset({"yes", "no"})
    if _TRUE_FALSE.search(prompt):
        return frozenset({"true", "false"})
    return None


def offered(messages: Sequence[Message]) -> frozenset[str] | None:
    """The closed set of answers a conversation's last turn offers (:func:`closed_set`); None
    when it offers none, or when the last turn is not the user's (the answer then goes on from
    another turn, and its opening is not the reply's)."""
    if not messages or messages[-1].role != "user":
        return None
    return closed_set(messages[-1].content)


def options_of(request: GenerationRequest) -> frozenset[str] | None:
    """The closed set of answers a request offers its answer (:func:`offered`), when that
    answer is free text: None for a raw completion, JSON output (``response_format``) or tools
    the model may call, whose answers are not read for it."""
    if (
        request.prompt is not None
        or request.params.response_format is not None
        or tool_needs(request.tools, request.tool_choice)
    ):
        return None
    return offered(request.messages)


def in_set(answer: str, options: frozenset[str]) -> bool:
    """Whether an answer opens with one of the options (:func:`closed_set`).

    Its first word after a lead-in ("**", "(", "Answer:", "The correct answer is", "Option")
    must be an option, whole: "B", "B)", "(b)", "B. Because ...", "The answer is D", "Yes, it
    is", "False." are in a set of letters, yes/no or true/false; "E" (of A to D), "Bananas",
    "I think it is B" and "Paris" are not.
    """
    word = _WORD.match(_LEAD_IN.sub("", answer, count=1))
    return word is not None and word.group().lower() in options


def outside(answer: str, options: frozenset[str] | None) -> bool:
    """Whether an answer, or a stream's opening, is none of the answers its prompt offered
    (``options``: :func:`options_of`; None: the prompt offered no closed set).  An answer of
    no word (nothing yet, a blank line, punctuation) is not read as choosing: it is not outside.
    """
    if options is None or _WORD.search(answer) is None:
        return False
    return not in_set(answer, options)


TWO_WAY = (frozenset({"yes", "no"}), frozenset({"true", "false"}))
"""The closed sets of two answers a prompt asks for in words: "yes or no", "true or false"."""


def guessed(score: float, options: frozenset[str] | None) -> float:
    """A difficulty score (the chance the local model gets a prompt wrong) for a prompt that
    asks for yes or no, or true or false (:data:`TWO_WAY`): a model that cannot tell the answer
    still gives one of the two, right half the time, so the chance it is wrong is half the
    score.  Unchanged for any other prompt, lettered options included: the same rule for them
    (``1 - 1/n`` of ``n`` options) ranked the router evaluation's development sets worse, where
    a multiple-choice item counts as right only when every ordering of its options is
    (``docs/router-eval.md``, *Yes or no: a guess is right half the time*).
    """
    if options not in TWO_WAY:
        return score
    return score / 2
