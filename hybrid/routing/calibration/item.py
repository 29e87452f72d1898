"""One calibration item: a prompt, what a correct answer is, and how to recognise it.

The expected answers are small frozen dataclasses, one per grader kind, so that the grader
(:mod:`hybrid.routing.calibration.grading`) can check each by type:

``number``   :class:`Number`: a numeric answer, exact or within a relative tolerance.
``word``     :class:`Words`: a word or name, among rival words that would be wrong.
``literal``  :class:`Literal`: a Python value as the interpreter prints it (``'ABC'``, ``[1, 2]``).
``choice``   :class:`Choice`: an option letter, checked under several option orders.
``constraint`` :class:`Constraint`: format rules of an instruction (:class:`Check`), and the
             content the answer must carry.
``text``     :class:`Text`: a rewritten sentence or phrase, among forms that would be wrong.
``facts``    :class:`KeyFacts`: a summary that must state some facts and not a distractor.
``code``     :class:`Code`: a line of Python, run against tests in an isolated interpreter.

Every answer is read from one line: calibration answers end at their first line break.  An
item may also carry a rubric, for a cloud judge to grade it by (``hybrid calibrate --judge``)
where the automatic grader only approximates what a right answer is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal as TypingLiteral

from hybrid.generation import Message

GraderKind = TypingLiteral[
    "number", "word", "literal", "choice", "constraint", "text", "facts", "code"
]
CheckRule = TypingLiteral[
    "one_word",
    "upper",
    "lower",
    "no_char",
    "starts_with",
    "ends_with",
    "max_words",
    "min_words",
    "items",
    "json",
]


@dataclass(frozen=True)
class Number:
    """A numeric answer.

    Attributes:
        value: The right value.
        tolerance: Relative tolerance; 0 asks for the exact value.
        position: Which number of the answer counts: ``"last"`` suits "7 + 5 = 12" and "there
            are 3"; ``"first"`` suits comparisons, where the loser is often named after the
            winner ("74 is larger than 47").
    """

    value: float
    tolerance: float = 0.0
    position: TypingLiteral["first", "last"] = "last"


@dataclass(frozen=True)
class Words:
    """A word answer (a capital, a day, a name).

    Attributes:
        accepted: Spellings that are right (``"Rome"``, ``"Roma"``).
        rivals: Words that would be wrong answers to the same question.
        first_mention: When True the first accepted or rival word in the answer decides (suits
            "who is tallest" questions, whose answers repeat the other names).  When False the
            answer must mention an accepted word and no rival that the question did not already
            name (suits "today is Monday, so it is Thursday").
        case_sensitive: Match case exactly (chemical symbols: ``Co`` is not ``CO``).
    """

    accepted: tuple[str, ...]
    rivals: tuple[str, ...] = ()
    first_mention: bool = False
    case_sensitive: bool = False


@dataclass(frozen=True)
class Literal:
    """A Python value as ``repr`` writes it.

    Attributes:
        text: The ``repr`` of the value (``'ABC'``, ``[1, 2, 3]``).
        bare: For a string, the string itself, accepted unquoted as a whole token.
    """

    text: str
    bare: str | None = None


@dataclass(frozen=True)
class Choice:
    """The right option letter for each presentation of a multiple-choice item.

    Attributes:
        letters: ``letters[i]`` is the right letter in presentation ``i``.
        options: Each presentation's option texts, in the order shown (``options[i][0]`` is
            option A of presentation ``i``); an answer that names an option's text instead of
            its letter counts as choosing it.
    """

    letters: tuple[str, ...]
    options: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class Check:
    """One format rule of an instruction, checked on the answer's first line.

    ``one_word``     one word, punctuation at its ends aside.
    ``upper``        letters only in capitals (at least one letter).
    ``lower``        letters only in lower case (at least one letter).
    ``no_char``      ``text`` does not occur (``","`` for "no commas").
    ``starts_with``  the first word is ``text`` (case and punctuation aside).
    ``ends_with``    the line ends with ``text`` (trailing spaces aside).
    ``max_words``    at most ``number`` words.
    ``min_words``    at least ``number`` words.
    ``items``        exactly ``number`` distinct items separated by commas (a final "and" too).
    ``json``         a JSON object with exactly the keys ``keys``; ``values[i]``, when not
                     empty, is what ``keys[i]`` must hold (compared as text, case aside).

    Attributes:
        rule: Which rule.
        text: The rule's text argument.
        number: The rule's count.
        keys: The JSON keys, for ``json``.
        values: The JSON values, for ``json``.
    """

    rule: CheckRule
    text: str = ""
    number: int = 0
    keys: tuple[str, ...] = ()
    values: tuple[str, ...] = ()


@dataclass(frozen=True)
class Constraint:
    """An instruction's answer: every format rule holds, and the content is right.

    Attributes:
        checks: The format rules.
        content: What the answer must say, graded as its own kind on the same line (a word
            among rivals, a number); None when any content will do.
        example: A right answer.
    """

    checks: tuple[Check, ...]
    content: Number | Words | None = None
    example: str = ""


@dataclass(frozen=True)
class Text:
    """A rewriting's answer: the target text, and forms that show it was not rewritten.

    Attributes:
        accepted: Right results; the answer must contain one as a run of whole words (case,
            quotes and punctuation aside), so "She walked home." and "Answer: she walked
            home" both count.
        rejected: Words or phrases whose presence makes the answer wrong (the tense, word or
            spelling that was to be replaced).
    """

    accepted: tuple[str, ...]
    rejected: tuple[str, ...] = ()


@dataclass(frozen=True)
class KeyFacts:
    """A summary's answer: facts it must state, and a distractor it must not.

    Attributes:
        required: Each group lists the spellings of one fact; every group must be mentioned.
        forbidden: Words that are wrong in any faithful summary (an outdated value, a rival).
        example: A right summary.
    """

    required: tuple[tuple[str, ...], ...]
    forbidden: tuple[str, ...] = ()
    example: str = ""


@dataclass(frozen=True)
class Code:
    """A line of Python to write, and the tests it must pass.

    Attributes:
        form: ``function``: the line defines ``name`` (``def name(x): return ...``,
            ``name = lambda x: ...``) or is a bare ``lambda``; ``expression``: the line is an
            expression over ``params``.
        name: The function's name, for ``function``.
        params: The parameters: of the function, or the variables the expression uses.
        tests: ``(arguments, expected)`` pairs, each the ``repr`` of a tuple of arguments and of
            the value the call must return (Python literals only).
        example: A right answer.
    """

    form: TypingLiteral["function", "expression"]
    name: str
    params: tuple[str, ...]
    tests: tuple[tuple[str, str], ...]
    example: str


Answer = Number | Words | Literal | Choice | Constraint | Text | KeyFacts | Code


@dataclass(frozen=True)
class CalibrationItem:
    """A prompt with an automatically checkable answer.

    Attributes:
        id: Stable id, ``"<category>-<nnn>"``.
        category: The generator that made it (``arithmetic``, ``facts``, ...).
        messages: The conversation to answer (its first presentation, for multiple choice); the
            difficulty features are computed from it.
        answer: What a right answer is; its type matches ``kind``.
        kind: The grader kind (see the module docstring).
        alternates: Further presentations of the same question (a multiple-choice item with its
            options reordered); the item is right only when every presentation is.
        rubric: What a right answer must do, in words, for a cloud judge; set where the
            automatic grader only approximates it (summaries, free writing).  None: the
            automatic grade stands.
    """

    id: str
    category: str
    messages: tuple[Message, ...]
    answer: Answer
    kind: GraderKind
    alternates: tuple[tuple[Message, ...], ...] = ()
    rubric: str | None = None

    @property
    def presentations(self) -> tuple[tuple[Message, ...], ...]:
        """Every conversation to run for this item, :attr:`messages` first."""
        return (self.messages, *self.alternates)

    @property
    def prompt(self) -> str:
        """The last user message: the question itself."""
        return next((m.content for m in reversed(self.messages) if m.role == "user"), "")


def ask(text: str, *, history: tuple[Message, ...] = ()) -> tuple[Message, ...]:
    """A conversation that ends with the user asking ``text``."""
    return (*history, Message("user", text))


def draft(
    messages: tuple[Message, ...],
    answer: Answer,
    kind: GraderKind,
    alternates: tuple[tuple[Message, ...], ...] = (),
    *,
    rubric: str | None = None,
) -> CalibrationItem:
    """An item without its id and category, which the set assigns when it collects it."""
    return CalibrationItem("", "", messages, answer, kind, alternates, rubric)


def example_answer(item: CalibrationItem, presentation: int = 0) -> str:
    """A one-line answer the grader accepts for one presentation of ``item``.

    Args:
        item: Any calibration item.
        presentation: Which of its presentations (only multiple choice has more than one).

    Returns:
        The answer text: the value, the first accepted word, the option letter, or the
        example the item carries.
    """
    answer = item.answer
    if isinstance(answer, Number):
        value = answer.value
        return str(int(value)) if float(value).is_integer() else repr(value)
    if isinstance(answer, Words | Text):
        return answer.accepted[0]
    if isinstance(answer, Literal):
        return answer.text
    if isinstance(answer, Choice):
        return answer.letters[presentation]
    return answer.example
