"""Graders of instructions, rewritings and summaries: odd phrasing passes, near misses fail."""

from __future__ import annotations

import pytest

from hybrid.generation import Message
from hybrid.routing.calibration.grading import grade
from hybrid.routing.calibration.grading_rules import check_holds, list_items
from hybrid.routing.calibration.item import (
    Answer,
    CalibrationItem,
    Check,
    Constraint,
    GraderKind,
    KeyFacts,
    Number,
    Text,
    Words,
)


def item(question: str, answer: Answer, kind: GraderKind) -> CalibrationItem:
    return CalibrationItem("t-000", "t", (Message("user", question),), answer, kind)


@pytest.mark.parametrize(
    ("check", "line", "holds"),
    [
        (Check("one_word"), "APPLE.", True),
        (Check("one_word"), '"Kiwi"', True),
        (Check("one_word"), "Apple pie", False),
        (Check("upper"), "PARIS!", True),
        (Check("upper"), "PARIs", False),
        (Check("upper"), "123", False),
        (Check("lower"), "paris, of course", True),
        (Check("lower"), "Paris", False),
        (Check("no_char", ","), "Cats sleep a lot.", True),
        (Check("no_char", ","), "Cats, however, sleep.", False),
        (Check("starts_with", "Today"), '"Today, the cat slept."', True),
        (Check("starts_with", "Today"), "today the cat slept", True),
        (Check("starts_with", "Today"), "Yesterday and today", False),
        (Check("ends_with", "!"), "Rome!", True),
        (Check("ends_with", "!"), "Rome! Yes.", False),
        (Check("max_words", number=3), "It is blue.", True),
        (Check("max_words", number=3), "It is light blue.", False),
        (Check("min_words", number=4), "A cat sat here.", True),
        (Check("items", number=3), "apple, pear and plum.", True),
        (Check("items", number=3), "apple, pear, and plum", True),
        (Check("items", number=3), "apple, pear, plum, fig", False),
        (Check("items", number=3), "apple, apple, plum", False),
        (Check("items", number=2, values=("cherry", "mango")), "Cherries, mangoes", True),
        (Check("items", number=2, values=("cherry", "mango")), "cherry, carrot", False),
        (Check("items", number=2, values=("cherry", "mango")), "cherry, cherries", False),
    ],
)
def test_format_rules(check: Check, line: str, holds: bool) -> None:
    assert check_holds(check, line) is holds


PERSON = Check("json", keys=("name", "age"), values=("Anna", "31"))


@pytest.mark.parametrize(
    ("line", "holds"),
    [
        ('{"name": "Anna", "age": 31}', True),
        ('```json {"age": "31", "name": "anna"} ```', True),
        ('Here it is: {"name": "Anna", "age": 31.0}', True),
        ('{"name": "Anna", "age": 13}', False),
        ('{"name": "Anna", "age": 31, "city": "Oslo"}', False),
        ("{'name': 'Anna', 'age': 31}", False),
        ('{"name": "Anna", "age": 31', False),
    ],
)
def test_a_json_rule_wants_exactly_the_keys_and_values(line: str, holds: bool) -> None:
    assert check_holds(PERSON, line) is holds


def test_list_items_reads_a_final_and() -> None:
    assert list_items("red, green and blue.") == ["red", "green", "blue"]
    assert list_items("") == []


CAPITAL_LOWER = item(
    "What is the capital of Italy? Answer in lowercase letters only.",
    Constraint((Check("lower"),), Words(("Rome", "Roma"), ("Paris", "Madrid"))),
    "constraint",
)


@pytest.mark.parametrize(
    ("answer", "right"),
    [
        ("rome", True),
        ("the capital is roma.", True),
        ("Rome", False),  # right city, wrong form
        ("paris", False),  # right form, wrong city
        ("rome or paris", False),  # a hedge names a rival
        ("", False),
    ],
)
def test_an_instruction_needs_the_form_and_the_content(answer: str, right: bool) -> None:
    assert grade(CAPITAL_LOWER, answer) is right


def test_an_instruction_with_a_number_reads_the_number() -> None:
    legs = item(
        "Answer with only a number: how many legs does a spider have?",
        Constraint((Check("one_word"),), Number(8)),
        "constraint",
    )
    assert grade(legs, "8")
    assert grade(legs, "eight.")
    assert not grade(legs, "8 legs")
    assert not grade(legs, "6")


def test_only_the_first_line_is_graded() -> None:
    assert grade(CAPITAL_LOWER, "\nrome\nRome is the capital")
    assert not grade(CAPITAL_LOWER, "Rome\nrome")


PAST = item(
    "Rewrite this sentence in the past tense: Anna walks to school.",
    Text(("Anna walked to school",), rejected=("walks",)),
    "text",
)


@pytest.mark.parametrize(
    ("answer", "right"),
    [
        ("Anna walked to school.", True),
        ('Answer: "anna walked to school"', True),
        ("**Anna  walked to school**", True),
        ("Anna walks to school.", False),
        ("Anna walked to the school.", False),
        ("Anna walks to school, or Anna walked to school.", False),  # a hedge
        ("walked", False),  # the right word, not the sentence
    ],
)
def test_a_rewriting_must_hold_the_target_and_not_the_old_form(answer: str, right: bool) -> None:
    assert grade(PAST, answer) is right


def test_a_spelling_fix_rejects_the_misspelling() -> None:
    fix = item("Fix the spelling: recieve", Text(("receive",), ("recieve",)), "text")
    assert grade(fix, "The correct spelling is receive.")
    assert grade(fix, "RECEIVE")
    assert not grade(fix, "recieve -> receive")
    assert not grade(fix, "receiver")


SUMMARY = item(
    "Summarise: the library is closed on Monday for repairs. The café sells apple cake.",
    KeyFacts((("library",), ("closed", "closes", "shut"), ("Monday",)), forbidden=("cake", "café")),
    "facts",
)


@pytest.mark.parametrize(
    ("answer", "right"),
    [
        ("The library is closed on Monday.", True),
        ("Library shut Mondays for repairs", True),
        ("On Monday, the LIBRARY closes.", True),
        ("The library is closed.", False),  # a fact missing
        ("The library is closed on Monday and the café sells cake.", False),  # the distractor
        ("Monday", False),
    ],
)
def test_a_summary_needs_every_key_fact_and_no_distractor(answer: str, right: bool) -> None:
    assert grade(SUMMARY, answer) is right
