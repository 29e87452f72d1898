"""scripts/shadow_grading.py: shadow labels of recorded local answers against stand-in cloud
answers, graded whole and against the question."""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType

import numpy as np
import pytest
from scripts_import import script

from hybrid.generation import Message
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

EXAMPLE = "def f(x): return x + 1"


@pytest.fixture(scope="module")
def grading() -> Iterator[ModuleType]:
    with script("shadow_grading") as module:
        yield module


def item(text: str, answer: object, index: int = 0) -> CalibrationItem:
    return CalibrationItem(f"facts-{index:03d}", "facts", (Message("user", text),), answer, "word")


@pytest.mark.parametrize(
    ("answer", "reference"),
    [
        (Words(("Madrid", "Madrid city")), "Madrid"),
        (Number(12.0), "12"),
        (Number(2.5), "2.5"),
        (Literal("'abc'", bare="abc"), "abc"),
        (Literal("[1, 2]"), "[1, 2]"),
        (Choice(("B", "A"), (("x", "y"), ("y", "x"))), "B"),
        (Text(("She walked home.",)), "She walked home."),
        (KeyFacts((("Paris",),), example="It is in Paris."), "It is in Paris."),
        (KeyFacts((("Paris",),)), None),
        (Code("function", "f", ("x",), (("(1,)", "2"),), EXAMPLE), EXAMPLE),
        (Constraint(()), None),
        (Constraint((), example="HELLO"), "HELLO"),
    ],
)
def test_the_reference_answer_of_each_kind(
    grading: ModuleType, answer: object, reference: str | None
) -> None:
    assert grading.reference(item("Q?", answer)) == reference


def test_an_answer_repeating_the_question_is_good_only_when_compared_whole(
    grading: ModuleType,
) -> None:
    items = [
        item("Tell me. What is the capital of Spain?", Words(("Madrid",)), 0),
        item("What is the capital of Spain?", Words(("Madrid",)), 1),
        item("Answer in capitals.", Constraint(()), 2),
    ]
    answers = ("The capital of Spain is a city.", "Madrid.", "OK")
    data = grading.Labelled(items, np.array([1.0, 0.0, 1.0]), np.zeros((3, 2)), answers)
    labels = grading.shadow_labels(data)
    restated = "the question restated, then the reference"
    whole, against = (labels[(restated, grader)] for grader in grading.GRADERS)
    assert whole[:2].tolist() == [1.0, 1.0] and against[:2].tolist() == [0.0, 1.0]
    assert np.isnan(whole[2]) and np.isnan(against[2])  # no single reference answer
    alone = labels[("the reference alone", grading.GRADERS[1])]
    assert alone[:2].tolist() == [0.0, 1.0]
    # n, labelled good, wrong among them, right found.
    assert grading.label_row(whole, data.wrong) == "2 | 100% | 50% | 100%"
    assert grading.label_row(against, data.wrong) == "2 | 50% | 0% | 100%"
