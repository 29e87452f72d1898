"""Grading instructions, rewritings and summaries: format rules, target texts, key facts.

Each grader reads the answer's first non-empty line (calibration answers end at their first
line break) and is fair to odd phrasing: quotes, a label ("Answer: ..."), other capitals and
punctuation do not matter where the task did not ask for them.  They are strict where a cheap
answer could pass by accident: a hedge that names the old form beside the new one, a summary
that states the distractor, a list with one item too many.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable

from hybrid.routing.calibration.item import Check, KeyFacts, Text

_WORD = re.compile(r"[\w'-]+")
_TOKEN = re.compile(r"\w+(?:'\w+)*")
_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"'})
_EDGES = "\"'`*_.,;:!?()[]{}<> \t"


def first_line(text: str) -> str:
    """The first line of ``text`` that holds anything, stripped; empty when there is none."""
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def check_holds(check: Check, line: str) -> bool:
    """Whether one format rule holds on an answer line (see :class:`Check` for the rules).

    Args:
        check: The rule.
        line: The answer's first line, stripped.

    Returns:
        True when the line satisfies the rule.
    """
    return _RULES[check.rule](check, line.translate(_QUOTES))


def _one_word(check: Check, line: str) -> bool:
    return _WORD.fullmatch(line.strip(_EDGES)) is not None


def _letters(line: str) -> list[str]:
    return [c for c in line if c.isalpha()]


def _upper(check: Check, line: str) -> bool:
    letters = _letters(line)
    return bool(letters) and all(c.isupper() for c in letters)


def _lower(check: Check, line: str) -> bool:
    letters = _letters(line)
    return bool(letters) and all(c.islower() for c in letters)


def _no_char(check: Check, line: str) -> bool:
    return bool(line) and check.text not in line


def _starts_with(check: Check, line: str) -> bool:
    match = _WORD.search(line)
    return match is not None and match.group().casefold() == check.text.casefold()


def _ends_with(check: Check, line: str) -> bool:
    return line.rstrip().rstrip("\"'`*").endswith(check.text)


def _max_words(check: Check, line: str) -> bool:
    return 0 < len(_WORD.findall(line)) <= check.number


def _min_words(check: Check, line: str) -> bool:
    return len(_WORD.findall(line)) >= check.number


def list_items(line: str) -> list[str]:
    """The items of a comma-separated list: "a, b and c" has three, "a, b, and c" too."""
    body = line.strip().rstrip(".").strip()
    if not body:
        return []
    parts = re.split(r",|\s+(?:and|&)\s+", body)
    items = [re.sub(r"^(?:and|&)\s+", "", part.strip()).strip(_EDGES) for part in parts]
    return [item for item in items if item]


def _forms(word: str) -> set[str]:
    word = word.casefold()
    return {word, word + "s", word + "es", word[:-1] + "ies"}


def _items(check: Check, line: str) -> bool:
    items = [item.casefold() for item in list_items(line)]
    if len(items) != check.number:
        return False
    if check.values:
        # Each item names one allowed value (a plural too); two items naming one are one.
        named = [next((v for v in check.values if item in _forms(v)), None) for item in items]
        return None not in named and len(set(named)) == len(named)
    return len(set(items)) == len(items)


def _json_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return str(int(value))
    return str(value)


def _json(check: Check, line: str) -> bool:
    start, end = line.find("{"), line.rfind("}")
    if start < 0 or end < start:
        return False
    try:
        value = json.loads(line[start : end + 1])
    except ValueError:
        return False
    if not isinstance(value, dict) or set(value) != set(check.keys):
        return False
    return all(
        not expected or _json_text(value[key]).strip().casefold() == expected.casefold()
        for key, expected in zip(check.keys, check.values, strict=False)
    )


_RULES: dict[str, Callable[[Check, str], bool]] = {
    "one_word": _one_word,
    "upper": _upper,
    "lower": _lower,
    "no_char": _no_char,
    "starts_with": _starts_with,
    "ends_with": _ends_with,
    "max_words": _max_words,
    "min_words": _min_words,
    "items": _items,
    "json": _json,
}


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.translate(_QUOTES).casefold())


def _contains_run(tokens: list[str], run: list[str]) -> bool:
    n = len(run)
    return n > 0 and any(tokens[i : i + n] == run for i in range(len(tokens) - n + 1))


def grade_text(answer: Text, text: str) -> bool:
    """Whether a rewriting is right.

    Args:
        answer: The targets and the rejected forms.
        text: The model's answer.

    Returns:
        True when the first line holds an accepted text as a run of whole words (case, quotes
        and punctuation aside) and none of the rejected ones.
    """
    tokens = _tokens(first_line(text))
    if not any(_contains_run(tokens, _tokens(target)) for target in answer.accepted):
        return False
    return not any(_contains_run(tokens, _tokens(wrong)) for wrong in answer.rejected)


def mentions(word: str, text: str) -> bool:
    """Whether ``text`` mentions ``word`` as a whole word or phrase (case aside, a plural
    ``s`` allowed; spaces inside a phrase may be any whitespace)."""
    body = r"\s+".join(re.escape(part) for part in word.split())
    return re.search(rf"(?<!\w){body}(?:e?s)?(?!\w)", text, re.IGNORECASE) is not None


def grade_facts(answer: KeyFacts, text: str) -> bool:
    """Whether a summary is right.

    Args:
        answer: The facts it must state and the distractors it must not.
        text: The model's answer.

    Returns:
        True when the first line mentions a spelling of every required fact and no
        forbidden word.
    """
    line = first_line(text).translate(_QUOTES)
    if not all(any(mentions(word, line) for word in group) for group in answer.required):
        return False
    return not any(mentions(word, line) for word in answer.forbidden)
