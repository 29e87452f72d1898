"""What the cascade reads in a whole local answer: whether it declines, and the verdict."""

from __future__ import annotations

import pytest

from hybrid.routing.cascade import Cascade, LocalAttempt, declined


@pytest.mark.parametrize(
    "text",
    [
        "I'm sorry, I can't answer this question.",
        "I\u2019m sorry, but I don\u2019t know.",
        "I am sorry. I cannot help with that.",
        "Sorry, I don't understand.",
        "I don't know.",
        "I do not have access to the internet.",
        "I'm not sure.",
        "Unfortunately, I am unable to do that.",
        "As an AI, I have no opinions.",
        '"I can\'t answer that."',
    ],
)
def test_an_answer_that_declines_is_recognised(text: str) -> None:
    assert declined(text)


@pytest.mark.parametrize(
    "text",
    [
        "Paris.",
        "I'm sorry to hear that. Here are some things that might help.",
        "I can't wait to see it!",
        "I can play the guitar.",
        "I think the answer is 42.",
        "Yes, I know the answer: 12.",
        "The author says he doesn't know the way.",
        "",
    ],
)
def test_an_answer_is_not_taken_for_a_refusal(text: str) -> None:
    assert not declined(text)


def test_the_verdict_discards_a_declined_answer_before_reading_its_confidence() -> None:
    tried = LocalAttempt((), 0.97, declined=True)
    assert Cascade(0.5).verdict(tried) == (False, "cascade:declined")
    assert Cascade(0.5, escalate_declined=False).verdict(tried) == (True, "cascade:0.97>=0.5")


def test_the_verdict_weighs_the_confidence_against_the_minimum() -> None:
    assert Cascade(0.6).verdict(LocalAttempt((), 0.41)) == (False, "cascade:0.41<0.6")
    assert Cascade(0.6).verdict(LocalAttempt((), 0.6)) == (True, "cascade:0.60>=0.6")
