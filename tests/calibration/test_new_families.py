"""The families beyond arithmetic and trivia: deterministic, one-line, gradable both ways."""

from __future__ import annotations

from random import Random

import pytest
from calibration_fakes import WRONG_ANSWER

from hybrid.routing.calibration.grading import grade, grade_all
from hybrid.routing.calibration.item import Code, example_answer
from hybrid.routing.calibration.items import CATEGORIES, calibration_set
from hybrid.routing.calibration.items_coding import coding

FAMILIES = ("instructions", "rewriting", "summarising", "extraction", "coding", "multiturn")
ITEMS = [item for item in calibration_set(2, per_category=25) if item.category in FAMILIES]


def test_the_families_are_registered_after_the_first_nine() -> None:
    assert tuple(CATEGORIES)[-len(FAMILIES) :] == FAMILIES


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_is_the_same_for_a_seed(family: str) -> None:
    generate = CATEGORIES[family]
    first = [generate(Random(3)) for _ in range(5)]
    again = [generate(Random(3)) for _ in range(5)]
    assert first == again


@pytest.mark.parametrize("item", ITEMS, ids=lambda item: item.id)
def test_an_item_takes_its_one_line_example_and_refuses_a_non_answer(item) -> None:  # type: ignore[no-untyped-def]
    example = example_answer(item)
    assert example and "\n" not in example
    assert grade_all(item, [example])
    assert not grade(item, WRONG_ANSWER)
    assert not grade(item, "")


def test_multi_turn_items_need_an_earlier_turn() -> None:
    for item in (i for i in ITEMS if i.category == "multiturn"):
        assert len(item.messages) >= 3, item.id
        example = example_answer(item).casefold()
        earlier = " ".join(m.content for m in item.messages[:-1]).casefold()
        last = item.messages[-1].content.casefold()
        # What answers it was said before the question, or is computed from what was.
        assert example not in last or example in earlier, item.id


def test_summaries_leave_the_detail_out() -> None:
    summaries = [i for i in ITEMS if i.category == "summarising"]
    assert all(i.rubric for i in summaries)
    with_detail = [i for i in summaries if i.answer.forbidden]  # type: ignore[union-attr]
    assert with_detail
    for item in with_detail:
        detail = item.answer.forbidden[0]  # type: ignore[union-attr]
        assert not grade(item, f"{example_answer(item)} Also: {detail}."), item.id


def test_coding_tests_come_from_reference_values_and_reject_a_wrong_line() -> None:
    rng = Random(0)
    for _ in range(12):
        item = coding(rng)
        answer = item.answer
        assert isinstance(answer, Code) and answer.tests
        if answer.form == "function":
            wrong = f"def {answer.name}({', '.join(answer.params)}): return None"
        else:
            wrong = "None"
        assert not grade(item, wrong), item.prompt
