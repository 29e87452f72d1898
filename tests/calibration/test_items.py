"""The calibration set: deterministic per seed, balanced, gradable; the split is stratified."""

from __future__ import annotations

from collections import Counter

import pytest

from hybrid.errors import ConfigError
from hybrid.routing.calibration.grading import grade_all
from hybrid.routing.calibration.item import (
    Choice,
    Code,
    Constraint,
    KeyFacts,
    Literal,
    Number,
    Text,
    Words,
    example_answer,
)
from hybrid.routing.calibration.items import CATEGORIES, calibration_set, split


def test_the_same_seed_gives_the_same_items_and_another_seed_other_items() -> None:
    first = calibration_set(7, per_category=20)
    again = calibration_set(7, per_category=20)
    other = calibration_set(8, per_category=20)
    assert [(i.id, i.messages, i.answer) for i in first] == [
        (i.id, i.messages, i.answer) for i in again
    ]
    assert [i.messages for i in first] != [i.messages for i in other]


def test_every_category_gets_the_same_number_of_distinct_items() -> None:
    items = calibration_set(0, per_category=60)
    counts = Counter(item.category for item in items)
    assert counts == dict.fromkeys(CATEGORIES, 60)
    for category in CATEGORIES:
        prompts = [i.messages for i in items if i.category == category]
        assert len(set(prompts)) == len(prompts), f"{category} repeats a prompt"
    assert len({item.id for item in items}) == len(items)


def test_each_item_s_answer_matches_its_grader_kind() -> None:
    expected = {
        "number": Number,
        "word": Words,
        "literal": Literal,
        "choice": Choice,
        "constraint": Constraint,
        "text": Text,
        "facts": KeyFacts,
        "code": Code,
    }
    for item in calibration_set(3, per_category=40):
        assert isinstance(item.answer, expected[item.kind]), item.id
        assert item.messages[-1].role == "user"


def test_every_item_can_be_answered_right() -> None:
    """A grader that no answer satisfies would label the item wrong whatever the model says."""
    for item in calibration_set(5, per_category=30):
        texts = [example_answer(item, i) for i in range(len(item.presentations))]
        assert grade_all(item, texts), f"{item.id}: {item.prompt!r} rejects {texts}"


def test_multiple_choice_items_are_asked_in_four_orders() -> None:
    items = [i for i in calibration_set(0, per_category=10) if i.category == "choice"]
    for item in items:
        assert len(item.presentations) == 4
        assert item.presentations[0] == item.messages
        assert len({p[0].content for p in item.presentations}) == 4


def test_asking_for_more_items_than_a_category_can_make_says_so() -> None:
    with pytest.raises(ConfigError, match="per-category"):
        calibration_set(0, per_category=1000)
    with pytest.raises(ConfigError, match="at least 1"):
        calibration_set(0, per_category=0)


def test_the_split_holds_out_the_same_share_of_each_category_and_is_reproducible() -> None:
    items = calibration_set(0, per_category=20)
    train, held = split(items, seed=1, held_out=0.3)
    assert Counter(i.category for i in held) == dict.fromkeys(CATEGORIES, 6)
    assert {i.id for i in train}.isdisjoint(i.id for i in held)
    assert len(train) + len(held) == len(items)
    _, again_held = split(items, seed=1, held_out=0.3)
    assert [i.id for i in again_held] == [i.id for i in held]
    _, other_held = split(items, seed=2, held_out=0.3)
    assert [i.id for i in other_held] != [i.id for i in held]


def test_a_tiny_set_keeps_an_item_on_each_side() -> None:
    items = calibration_set(0, per_category=2)
    train, held = split(items, seed=0, held_out=0.3)
    assert Counter(i.category for i in held) == dict.fromkeys(CATEGORIES, 1)
    assert Counter(i.category for i in train) == dict.fromkeys(CATEGORIES, 1)


@pytest.mark.parametrize("share", [0.0, 1.0, -0.1])
def test_a_held_out_share_outside_zero_and_one_is_refused(share: float) -> None:
    with pytest.raises(ConfigError, match="between 0 and 1"):
        split(calibration_set(0, per_category=2), seed=0, held_out=share)
