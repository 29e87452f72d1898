"""Grading a local answer against a cloud answer without a judge: normalised words, the
question both answer, which answers can grade, and the agreement."""

from __future__ import annotations

from typing import Any

import pytest

from hybrid.routing.agreement import gradable, grade_overlap, question_of, words


@pytest.mark.parametrize(
    ("local", "cloud", "good", "method"),
    [
        ("Paris.", "paris", True, "match"),
        ("Paris", "The capital of France is Paris.", True, "match"),
        ("7 + 5 = 12", "12", True, "match"),
        ("The answer is 12.", "The answer is 13.", False, "overlap"),
        ("12", "It is 13, not 12 or 14, and that settles it for good.", True, "match"),
        ("Lyon", "The capital of France is Paris.", False, "overlap"),
        ("", "Paris", False, "overlap"),
        (
            "The Eiffel Tower is in Paris and was built in the nineteenth century for a fair",
            "The Eiffel Tower, in Paris, was built in the nineteenth century for a world fair",
            True,
            "overlap",
        ),
    ],
)
def test_grading_without_a_judge(local: str, cloud: str, good: bool, method: str) -> None:
    grade = grade_overlap(local, cloud, threshold=0.5)
    assert (grade.good, grade.method) == (good, method)


CAPITAL = "What is the capital of Spain?"
IS_IT = "Is Madrid the capital of Spain?"


@pytest.mark.parametrize(
    ("question", "local", "cloud", "good"),
    [
        # The cloud restates the question: a local answer that only repeats it does not agree.
        (CAPITAL, "The capital of Spain is a city.", "The capital of Spain is Madrid.", False),
        (CAPITAL, "Madrid.", "The capital of Spain is Madrid.", True),
        (CAPITAL, "Spain's capital is Madrid, of course.", "The capital of Spain is Madrid.", True),
        (CAPITAL, "The capital of Spain is Barcelona.", "The capital of Spain is Madrid.", False),
        (CAPITAL, "Madrid", "Madrid", True),
        (IS_IT, "Yes.", "Yes, Madrid is the capital of Spain.", True),
        (IS_IT, "Madrid is the capital of Spain.", "Yes, Madrid is the capital of Spain.", False),
        # The cloud's answer is made of the question's words: the whole answers are compared.
        (IS_IT, "Yes, it is.", "Madrid is the capital.", False),
        (IS_IT, "Madrid.", "Madrid is the capital.", True),
    ],
)
def test_grading_against_the_question(question: str, local: str, cloud: str, good: bool) -> None:
    assert grade_overlap(local, cloud, threshold=0.5, question=question).good is good


def test_an_echo_agreed_when_the_whole_answers_were_compared() -> None:
    echo, cloud = "The capital of Spain is a city.", "The capital of Spain is Madrid."
    assert grade_overlap(echo, cloud, threshold=0.5).good
    assert not grade_overlap(
        echo, cloud, threshold=0.5, question="What is the capital of Spain?"
    ).good


@pytest.mark.parametrize(
    ("text", "question"),
    [
        ("What is 2 + 2?", "What is 2 + 2?"),
        ("Some context here. Is it true? Answer yes or no.", "Is it true?"),
        ("Translate this into German: good morning", "Translate this into German: good morning"),
        ("First line.\nSecond line without an end", "Second line without an end"),
        ("東京は日本の首都ですか\uff1f はい。", "東京は日本の首都ですか\uff1f"),
        ("", ""),
    ],
)
def test_the_question_of_a_request(text: str, question: str) -> None:
    assert question_of(text) == question


def test_normalised_words_drop_case_punctuation_and_articles() -> None:
    assert words("The  Answer: an ÉLAN, a 3.5!") == ["answer", "élan", "3.5"]


@pytest.mark.parametrize(
    ("text", "finish_reason", "can_grade"),
    [
        ("Paris.", "stop", True),
        ("The capital of France is", "length", True),
        ("", "stop", False),
        ("  \n", "length", False),
        ("", "content_filter", False),
        ("I will look it up.", "tool_calls", False),
        ("", None, False),
    ],
)
def test_only_an_answer_that_ended_normally_with_text_can_grade(
    text: str, finish_reason: Any, can_grade: bool
) -> None:
    assert gradable(text, finish_reason) is can_grade
