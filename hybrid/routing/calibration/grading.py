"""Grading a model's answer to a calibration item: right or wrong, fairly to a terse model.

A small base model answers "12", "7 + 5 = 12", "The answer is twelve." or "B) Mercury"; all of
those are right.  The graders therefore extract what matters (a number, a word, an option
letter) instead of comparing whole strings, and they guard against the cheap ways of being
"right" by accident: an echo of the question, a list of every candidate, always the same
option letter.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from hybrid.routing.calibration.grading_rules import (
    check_holds,
    first_line,
    grade_facts,
    grade_text,
)
from hybrid.routing.calibration.item import (
    CalibrationItem,
    Choice,
    Code,
    Constraint,
    KeyFacts,
    Literal,
    Number,
    Text,
    Words,
)
from hybrid.routing.calibration.sandbox import passes

_SMALL = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen twenty"
).split()
_TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()
_WORD_VALUES = {word: value for value, word in enumerate(_SMALL)} | {
    word: 20 + 10 * index for index, word in enumerate(_TENS)
}
# A digit run with optional thousands separators and decimals, or an English number word
# ("twelve", "forty-two").  A minus sign counts only where it cannot be a subtraction.
_NUMBER = re.compile(
    r"(?<![\w)])(?P<digits>-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?)"
    r"|\b(?P<word>(?:" + "|".join(_TENS) + r")(?:[- ](?:one|two|three|four|five|six|seven|"
    r"eight|nine))?|" + "|".join(_SMALL) + r")\b",
    re.IGNORECASE,
)
# An option letter: leading a line ("B", "B)", "(b)", "B Mercury"; not the article in "A
# planet"), or after "answer", "option" or "choice" ("The answer is C").
_OPTION_LETTER = re.compile(
    r"^\W*\(?(?P<lead>[A-D])(?:[).:\]]|[ \t]*$|[ \t]+(?=[A-Z0-9]))"
    r"|^\W*\(?(?P<paren>[a-d])\)"
    r"|\b(?i:answer|option|choice)\s*(?i:is|:)?\s*\(?(?P<said>[A-D])\b",
    re.MULTILINE,
)
_FENCE = re.compile(r"```[a-z]*|`")


def grade(item: CalibrationItem, answer_text: str, *, presentation: int = 0) -> bool:
    """Whether ``answer_text`` answers one presentation of ``item`` correctly.

    Args:
        item: The item asked.
        answer_text: The model's whole answer.
        presentation: Which of :attr:`CalibrationItem.presentations` was asked (only multiple
            choice has more than one).

    Returns:
        True when the answer is right:

        - ``number``: the last number of the first line that has one (the first number for
          comparisons) equals the value, exactly or within the item's relative tolerance;
          English number words count ("twelve"); a line that only repeats two or more of the
          question's numbers in order ("4 / 2") is an echo, not an answer.
        - ``word``: an accepted word is mentioned (whole word, a plural ``s`` allowed) and no
          rival the question did not name; or, for ``first_mention`` items, the first
          candidate mentioned is an accepted one.
        - ``literal``: the value's ``repr`` appears, ignoring whitespace and quote style, or a
          string value appears bare as a whole token.
        - ``choice``: the option chosen (its letter, or else its text) is the right one.
        - ``constraint``: every format rule holds on the first line, and its content (a word
          or number, graded as above) is right.
        - ``text``: the first line holds an accepted rewriting and no rejected form
          (:func:`~hybrid.routing.calibration.grading_rules.grade_text`).
        - ``facts``: the first line states every key fact and no distractor.
        - ``code``: the first line, run in a confined interpreter of its own
          (:mod:`~hybrid.routing.calibration.sandbox`; this call blocks until it ends, a few
          seconds at most), passes every test.

    Raises:
        IndexError: ``presentation`` is not one of the item's presentations.
    """
    answer = item.answer
    question = "\n".join(m.content for m in item.messages)
    if isinstance(answer, Number):
        return _grade_number(answer, answer_text, question)
    if isinstance(answer, Words):
        return _grade_words(answer, answer_text, question)
    if isinstance(answer, Literal):
        return _grade_literal(answer, answer_text)
    if isinstance(answer, Choice):
        return _grade_choice(answer, answer_text, presentation)
    if isinstance(answer, Constraint):
        return _grade_constraint(answer, answer_text, question)
    if isinstance(answer, Text):
        return grade_text(answer, answer_text)
    if isinstance(answer, KeyFacts):
        return grade_facts(answer, answer_text)
    return _grade_code(answer, answer_text)


def _grade_constraint(answer: Constraint, text: str, question: str) -> bool:
    line = first_line(text)
    if not line or not all(check_holds(check, line) for check in answer.checks):
        return False
    if isinstance(answer.content, Number):
        return _grade_number(answer.content, line, question)
    if isinstance(answer.content, Words):
        return _grade_words(answer.content, line, question)
    return True


def _grade_code(answer: Code, text: str) -> bool:
    line = first_line(text)
    return bool(line) and passes(answer, line)


def grade_all(item: CalibrationItem, answers: Sequence[str]) -> bool:
    """Whether every presentation of ``item`` was answered correctly.

    Multiple-choice items are asked once per rotation of their options; requiring all of
    them right means a model with a favourite letter earns nothing from it.

    Args:
        item: The item asked.
        answers: One answer per presentation, in :attr:`CalibrationItem.presentations` order.

    Returns:
        True when each answer is right.

    Raises:
        ValueError: ``answers`` does not hold one answer per presentation.
    """
    if len(answers) != len(item.presentations):
        raise ValueError(
            f"item {item.id} has {len(item.presentations)} presentations, "
            f"got {len(answers)} answers"
        )
    return all(grade(item, text, presentation=i) for i, text in enumerate(answers))


def numbers_in(text: str) -> list[float]:
    """The numbers of ``text`` in order: digits (``1,081``, ``-3``, ``2.5``) and number words."""
    values = []
    for match in _NUMBER.finditer(text):
        digits = match.group("digits")
        if digits is not None:
            values.append(float(digits.replace(",", "")))
        else:
            values.append(_word_value(match.group("word")))
    return values


def _word_value(word: str) -> float:
    parts = re.split(r"[- ]", word.lower())
    return float(sum(_WORD_VALUES[part] for part in parts))


def _grade_number(answer: Number, text: str, question: str) -> bool:
    for line in text.replace("\u2212", "-").splitlines():
        values = numbers_in(line)
        if values:
            if _is_echo(values, numbers_in(question)):
                return False
            found = values[-1] if answer.position == "last" else values[0]
            return _close(found, answer.value, answer.tolerance)
    return False


def _is_echo(values: list[float], asked: list[float]) -> bool:
    """Whether the answer's numbers (two or more) are a run of the question's, in order.

    "4 / 2" in answer to "What is 4 / 2?" ends in the right number without computing
    anything; so does "[3, 6, 9]" to "what is [3, 6, 9][-1]?".
    """
    n = len(values)
    return n >= 2 and any(asked[i : i + n] == values for i in range(len(asked) - n + 1))


def _close(found: float, expected: float, tolerance: float) -> bool:
    if tolerance == 0.0:
        return math.isclose(found, expected, rel_tol=0.0, abs_tol=1e-9)
    return math.isclose(found, expected, rel_tol=tolerance)


def _word_pattern(word: str, case_sensitive: bool) -> re.Pattern[str]:
    """A whole-word pattern; text in scripts without spaces (東京) matches as a substring.

    Compiled patterns come from ``re``'s own cache, so grading a set recompiles nothing.
    """
    if not word.isascii():
        return re.compile(re.escape(word), 0 if case_sensitive else re.IGNORECASE)
    body = r"\s+".join(re.escape(part) for part in word.split())
    plural = "" if case_sensitive else "(?:e?s)?"
    flags = 0 if case_sensitive else re.IGNORECASE
    return re.compile(rf"(?<![\w]){body}{plural}(?![\w])", flags)


def _first_position(words: Sequence[str], text: str, case_sensitive: bool) -> int | None:
    positions = [
        match.start()
        for word in words
        if (match := _word_pattern(word, case_sensitive).search(text)) is not None
    ]
    return min(positions) if positions else None


def _grade_words(answer: Words, text: str, question: str) -> bool:
    accepted_keys = {word.casefold() for word in answer.accepted}
    rivals = [word for word in answer.rivals if word.casefold() not in accepted_keys]
    sensitive = answer.case_sensitive
    right = _first_position(answer.accepted, text, sensitive)
    if right is None:
        return False
    if answer.first_mention:
        wrong = _first_position(rivals, text, sensitive)
        return wrong is None or right < wrong
    # Rivals the question itself names ("today is Monday") may be repeated in a right answer.
    fresh = [word for word in rivals if _first_position((word,), question, sensitive) is None]
    return _first_position(fresh, text, sensitive) is None


def _normalised(text: str) -> str:
    return re.sub(r"\s+", "", _FENCE.sub("", text)).replace('"', "'")


def _grade_literal(answer: Literal, text: str) -> bool:
    expected, written = _normalised(answer.text), _normalised(text)
    if expected in written:
        return True
    if expected.startswith("[") and len(expected) > 2:
        # A list written without its brackets ("2, 4, 8") is the same answer.
        inner = re.escape(expected[1:-1])
        compact = re.sub(r"\s*,\s*", ",", _FENCE.sub(" ", text)).replace('"', "'")
        if re.search(rf"(?<![\w,.]){inner}(?![\w,]|\.\d)", compact):
            return True
    if answer.bare is not None:
        bare = re.compile(rf"(?<![\w]){re.escape(answer.bare)}(?![\w])")
        return bare.search(_FENCE.sub(" ", text)) is not None
    return False


def chosen_option(text: str, options: Sequence[str]) -> int | None:
    """The index of the option an answer chooses, or None when it chooses none or several.

    A letter decides when there is one ("B", "(B)", "B) Mercury", "The answer is B"); an
    article such as "A planet ..." is not a letter.  Otherwise the answer must name exactly one
    option's text.

    Args:
        text: The model's answer.
        options: The option texts in the order shown, ``options[0]`` being option A.

    Returns:
        0 for A, 1 for B, ...; None when no single option can be read from the answer.
    """
    match = _OPTION_LETTER.search(text)
    if match is not None:
        letter = (match.group("lead") or match.group("paren") or match.group("said")).upper()
        index = "ABCD".index(letter)
        return index if index < len(options) else None
    # Short options are chemical symbols, where case tells "Co" from "CO".
    named = [
        i
        for i, option in enumerate(options)
        if _first_position((option,), text, len(option) <= 2) is not None
    ]
    return named[0] if len(named) == 1 else None


def _grade_choice(answer: Choice, text: str, presentation: int) -> bool:
    options = answer.options[presentation]
    chosen = chosen_option(text, options)
    return chosen is not None and "ABCD"[chosen] == answer.letters[presentation]
