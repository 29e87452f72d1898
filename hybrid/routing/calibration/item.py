"""One calibration item: a prompt, what a correct answer is, and how to recognise it.

The expected answers are small frozen dataclasses, one per grader kind, so that the grader
(:mod:`hybrid.routing.calibration.grading`) can check each by type:

``number``   :class:`Number`: a numeric answer, exact or within a relative tolerance.
``word``     :class:`Words`: a word or name, among rival words that would be wrong.
``literal``  :class:`Literal`: a Python value as the interpreter prints it (``'ABC'``, ``[1, 2]``).
``choice``   :class:`Choice`: an option letter, checked under several option orders.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal as TypingLiteral

from hybrid.generation import Message

GraderKind = TypingLiteral["number", "word", "literal", "choice"]


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


Answer = Number | Words | Literal | Choice


@dataclass(frozen=True)
class CalibrationItem:
    """A prompt with an automatically checkable answer.

    Attributes:
        id: Stable id, ``"<category>-<nnn>"``.
        category: The generator that made it (``arithmetic``, ``facts``, ...).
        messages: The conversation to answer (its first presentation, for multiple choice); the
            difficulty features are computed from it.
        answer: What a right answer is; its type matches ``kind``.
        kind: The grader kind: ``number``, ``word``, ``literal`` or ``choice``.
        alternates: Further presentations of the same question (a multiple-choice item with its
            options reordered); the item is right only when every presentation is.
    """

    id: str
    category: str
    messages: tuple[Message, ...]
    answer: Answer
    kind: GraderKind
    alternates: tuple[tuple[Message, ...], ...] = ()

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
) -> CalibrationItem:
    """An item without its id and category, which the set assigns when it collects it."""
    return CalibrationItem("", "", messages, answer, kind, alternates)
