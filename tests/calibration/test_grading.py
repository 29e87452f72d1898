"""Graders: a terse or chatty right answer passes, echoes and hedges fail."""

from __future__ import annotations

from random import Random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hybrid.generation import Message
from hybrid.routing.calibration.grading import chosen_option, grade, grade_all, numbers_in
from hybrid.routing.calibration.item import (
    Answer,
    CalibrationItem,
    Choice,
    GraderKind,
    Literal,
    Number,
    Words,
)
from hybrid.routing.calibration.items_verbal import choice


def item(question: str, answer: Answer, kind: GraderKind) -> CalibrationItem:
    return CalibrationItem("t-000", "test", (Message("user", question),), answer, kind)


SUM = item("What is 7 + 5?", Number(12), "number")


@pytest.mark.parametrize(
    "text",
    [
        "12",
        "12.",
        "7 + 5 = 12",
        "The answer is 12.",
        "twelve",
        "It is Twelve!",
        "12\nUser: next question 7",
        "Sure.\n7 plus 5 makes 12",
    ],
)
def test_a_right_number_is_right_however_it_is_phrased(text: str) -> None:
    assert grade(SUM, text)


@pytest.mark.parametrize(
    "text",
    ["13", "7 + 5 = 13", "", "I don't know.", "12 or 13", "7 + 5", "The sum of 7 and 5 is 1,200"],
)
def test_a_wrong_or_missing_number_is_wrong(text: str) -> None:
    assert not grade(SUM, text)


def test_echoing_the_question_numbers_is_not_an_answer() -> None:
    # "4 / 2" ends in 2, the right quotient, without computing anything.
    division = item("What is 4 / 2?", Number(2), "number")
    last = item("In Python, what is the value of [3, 6, 9][-1]?", Number(9), "number")
    assert not grade(division, "4 / 2")
    assert not grade(last, "[3, 6, 9]")
    assert grade(division, "4 / 2 = 2")
    assert grade(last, "9")


def test_thousands_separators_and_negative_numbers_are_read() -> None:
    assert numbers_in("1,081 and -3, then 5-2 and 2.5") == [1081, -3, 5, 2, 2.5]
    assert grade(item("What is 23 * 47?", Number(1081), "number"), "23 * 47 = 1,081")


def test_a_rounded_conversion_is_right_within_its_tolerance() -> None:
    miles = item("Convert 2 miles to kilometers.", Number(3.218688, tolerance=0.02), "number")
    assert grade(miles, "About 3.2 km")
    assert not grade(miles, "3 km")


def test_a_comparison_is_decided_by_the_first_number_named() -> None:
    larger = item("Which is larger, 47 or 74?", Number(74, position="first"), "number")
    assert grade(larger, "74 is larger than 47.")
    assert not grade(larger, "47 or 74")
    assert not grade(larger, "47")


CAPITAL = item(
    "What is the capital of Italy?", Words(("Rome", "Roma"), ("Paris", "Madrid")), "word"
)


@pytest.mark.parametrize(
    "text", ["Rome", "rome.", "The capital of Italy is Rome.", "Roma", "ROME!"]
)
def test_a_right_word_is_right_in_any_case_and_sentence(text: str) -> None:
    assert grade(CAPITAL, text)


@pytest.mark.parametrize(
    "text", ["Paris", "Rome or Paris", "Romeo", "Italy", "Madrid, not Rome", ""]
)
def test_a_wrong_word_or_a_hedge_between_candidates_is_wrong(text: str) -> None:
    assert not grade(CAPITAL, text)


def test_rivals_named_by_the_question_may_be_repeated() -> None:
    days = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
    offset = item(
        "If today is Monday, what day of the week will it be in 3 days?",
        Words(("Thursday",), days),
        "word",
    )
    assert grade(offset, "Today is Monday, so in 3 days it is Thursday.")
    assert not grade(offset, "Monday")
    assert not grade(offset, "Tuesday, Wednesday, Thursday, Friday")


def test_first_mention_items_are_decided_by_the_first_name() -> None:
    tallest = item(
        "Ann is taller than Bob. Who is the tallest?",
        Words(("Ann",), ("Bob",), first_mention=True),
        "word",
    )
    assert grade(tallest, "Ann is taller than Bob, so Ann.")
    assert not grade(tallest, "Bob is shorter than Ann.")


def test_case_sensitive_words_tell_symbols_apart_and_other_scripts_match_inside_text() -> None:
    cobalt = item(
        "What is the chemical symbol for cobalt?", Words(("Co",), case_sensitive=True), "word"
    )
    tokyo = item("日本の首都はどこですか", Words(("東京", "Tokyo")), "word")
    assert grade(cobalt, "Its symbol is Co.")
    assert not grade(cobalt, "CO")
    assert grade(tokyo, "東京です")


@pytest.mark.parametrize(
    ("answer", "right", "wrong"),
    [
        (
            Literal("'ABC'", bare="ABC"),
            ["'ABC'", '"ABC"', "ABC", "The result is `ABC`."],
            ["abc", "'AB'"],
        ),
        (
            Literal("[2, 4, 8]"),
            ["[2, 4, 8]", "[2,4,8]", "It prints 2, 4, 8."],
            ["[2, 4]", "[8, 4, 2]"],
        ),
    ],
)
def test_literals_ignore_spacing_and_quote_style(
    answer: Literal, right: list[str], wrong: list[str]
) -> None:
    question = item("What does it evaluate to?", answer, "literal")
    assert all(grade(question, text) for text in right)
    assert not any(grade(question, text) for text in wrong)


OPTIONS = ("Venus", "Mercury", "Mars", "Earth")


@pytest.mark.parametrize(
    "text",
    [
        "B",
        "B)",
        "(B)",
        "b)",
        "B) Mercury",
        "B Mercury",
        "The answer is B.",
        "Answer: (B)",
        "Mercury",
    ],
)
def test_an_option_is_read_from_its_letter_or_its_text(text: str) -> None:
    assert chosen_option(text, OPTIONS) == 1


@pytest.mark.parametrize(
    "text", ["A planet close to the Sun.", "Venus or Mercury", "I am not sure.", ""]
)
def test_an_article_a_hedge_or_no_option_chooses_nothing(text: str) -> None:
    assert chosen_option(text, OPTIONS) is None


def test_multiple_choice_needs_every_order_right_so_a_favourite_letter_earns_nothing() -> None:
    question = choice(Random(3))
    answer = question.answer
    assert isinstance(answer, Choice)
    assert len(question.presentations) == 4
    # Each rotation puts the right option under a different letter.
    assert sorted(answer.letters) == ["A", "B", "C", "D"]
    for letter in "ABCD":
        assert not grade_all(question, [letter] * 4)
    assert grade_all(question, list(answer.letters))
    right_text = answer.options[0][ord(answer.letters[0]) - ord("A")]
    assert grade_all(question, [f"It is {right_text}."] * 4)


def test_grade_all_wants_one_answer_per_presentation() -> None:
    with pytest.raises(ValueError, match="4 presentations"):
        grade_all(choice(Random(1)), ["A"])


@given(st.integers(min_value=-(10**9), max_value=10**9))
def test_any_integer_answer_is_recognised_and_its_neighbour_is_not(value: int) -> None:
    question = item("What is the number?", Number(value), "number")
    assert grade(question, f"The answer is {value:,}.")
    assert not grade(question, f"The answer is {value + 1}.")
