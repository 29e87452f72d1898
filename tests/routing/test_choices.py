"""The closed set of answers a prompt offers, and whether an answer is one of them."""

from __future__ import annotations

import pytest

from hybrid.generation import (
    GenerationRequest,
    Message,
    ResponseFormat,
    SamplingParams,
    ToolChoice,
    ToolSpec,
)
from hybrid.routing.choices import closed_set, in_set, offered, options_of, outside

LETTERS = frozenset("abcd")
YES_NO = frozenset({"yes", "no"})


@pytest.mark.parametrize(
    ("prompt", "options"),
    [
        ("Which planet is second from the Sun?\nA) Uranus\nB) Neptune\nC) Venus", "abc"),
        ("Pick one:\n(A) red\n(B) blue", "ab"),
        ("Pick one:\n  a. red\n  b. blue\n  c. green\n  d. grey", "abcd"),
        ("Pick one:\nA: red\nB: blue\nD: grey", "abd"),
    ],
    ids=["A)", "(A)", "a.", "A:"],
)
def test_lettered_options_on_their_own_lines_offer_their_letters(prompt: str, options: str) -> None:
    assert closed_set(prompt) == frozenset(options)


@pytest.mark.parametrize(
    ("prompt", "options"),
    [
        ("Is Paris in France? Answer yes or no.", YES_NO),
        ("Is Paris in France (Yes/No)?", YES_NO),
        ("True or false: the Moon is a planet.", frozenset({"true", "false"})),
        ("The Moon is a planet. True/false?", frozenset({"true", "false"})),
    ],
)
def test_yes_or_no_and_true_or_false_offer_those_words(
    prompt: str, options: frozenset[str]
) -> None:
    assert closed_set(prompt) == options


@pytest.mark.parametrize(
    "prompt",
    [
        "What is the capital of France?",
        "Read this:\nA) the first clause of the contract.",  # a single option is no set
        "Plan A) is cheaper, plan B) is faster. Which would you take?",  # not on their own lines
        "Write about yes-men and no-shows.",
        "e.g. a fruit",
        # A lettered list that nothing asks to choose from.
        "Rewrite these steps more formally:\na. Preheat the oven\nb. Mix the flour",
        "Summarise:\nA) The board met.\nB) The budget passed.",
    ],
)
def test_a_prompt_without_a_closed_set_offers_none(prompt: str) -> None:
    assert closed_set(prompt) is None


@pytest.mark.parametrize(
    "answer",
    [
        "A",
        "A)",
        "(a)",
        "B. because it is closest",
        "Answer: C",
        "The answer is D",
        "The correct answer is (C).",
        "**B) Neptune**",
        "Option B",
    ],
)
def test_an_answer_opening_with_an_offered_letter_is_in_the_set(answer: str) -> None:
    assert in_set(answer, LETTERS) and not outside(answer, LETTERS)


@pytest.mark.parametrize(
    "answer",
    ["E", "E) none of these", "Bananas", "Neptune", "I think it is B", "The answer depends."],
)
def test_an_answer_opening_with_anything_else_is_outside_the_letters(answer: str) -> None:
    assert not in_set(answer, LETTERS) and outside(answer, LETTERS)


@pytest.mark.parametrize("answer", ["yes, it is", "Yes.", "No", "The answer is no."])
def test_yes_or_no_answers_are_in_their_set(answer: str) -> None:
    assert in_set(answer, YES_NO) and not outside(answer, YES_NO)


@pytest.mark.parametrize("answer", ["I think the capital is Paris", "Nope.", "True."])
def test_other_answers_to_a_yes_or_no_question_are_outside(answer: str) -> None:
    assert outside(answer, YES_NO)


def test_an_answer_of_no_word_yet_or_to_no_set_is_not_outside() -> None:
    # Nothing read yet (a stream's opening so far), a blank line: not a choice, not outside.
    assert not outside("", LETTERS) and not outside("\n\n", YES_NO) and not outside("**", YES_NO)
    assert not outside("Paris", None)


def test_only_a_last_turn_of_the_user_offers_answers() -> None:
    question = Message("user", "Is Paris in France? Answer yes or no.")
    assert offered((question,)) == YES_NO
    assert offered((question, Message("assistant", "The answer is"))) is None
    assert offered(()) is None


def test_only_free_text_answers_to_chat_requests_are_read_for_the_options() -> None:
    messages = (Message("user", "Is Paris in France? Answer yes or no."),)
    chat = GenerationRequest("r", messages=messages)
    assert options_of(chat) == YES_NO
    json_mode = GenerationRequest(
        "r", messages=messages, params=SamplingParams(response_format=ResponseFormat("json_object"))
    )
    tool = ToolSpec("lookup", "Look a city up.", {"type": "object"})
    with_tools = GenerationRequest("r", messages=messages, tools=(tool,))
    completion = GenerationRequest("r", prompt="Is Paris in France? Answer yes or no.")
    assert options_of(json_mode) is None and options_of(with_tools) is None
    assert options_of(completion) is None
    # Tools the model must not call leave a text answer, read as any other.
    no_calls = GenerationRequest(
        "r", messages=messages, tools=(tool,), tool_choice=ToolChoice("none")
    )
    assert options_of(no_calls) == YES_NO
