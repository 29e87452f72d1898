from __future__ import annotations

import pytest

from hybrid.errors import InvalidRequestError
from hybrid.generation import Message
from hybrid.local.prompt import (
    DEFAULT_TRANSCRIPT,
    TRANSCRIPT_PARAGRAPH_STOP,
    ChatFormatter,
    TranscriptFormat,
)
from hybrid.local.text import StopText
from hybrid.routing.calibration.items import calibration_set

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def test_base_model_gets_a_transcript_ending_with_the_assistant_turn() -> None:
    prompt = ChatFormatter(None).format(
        [
            Message("system", "Answer in French."),
            Message("user", "Hi"),
            Message("assistant", "Bonjour"),
            Message("user", "Capital of France?"),
        ]
    )
    assert prompt.text.endswith(
        "User: Hi\nAssistant: Bonjour\nUser: Capital of France?\nAssistant:"
    )
    assert "Answer in French." in prompt.text.split("User:")[0]
    assert "\nUser:" in prompt.stop and TRANSCRIPT_PARAGRAPH_STOP in prompt.stop
    assert prompt.add_bos and prompt.strip_output


def test_base_model_sees_example_exchanges_before_the_conversation() -> None:
    prompt = ChatFormatter(None).format(
        [Message("system", "Be terse."), Message("user", "Capital of France?")]
    )
    assert DEFAULT_TRANSCRIPT.examples
    examples = "".join(f"User: {q}\nAssistant: {a}\n" for q, a in DEFAULT_TRANSCRIPT.examples)
    assert prompt.text.startswith(f"{DEFAULT_TRANSCRIPT.preamble}\nBe terse.\n\n{examples}")
    assert prompt.text.endswith(f"{examples}User: Capital of France?\nAssistant:")


def test_a_model_that_goes_on_to_write_another_example_is_cut_after_its_answer() -> None:
    prompt = ChatFormatter(None).format([Message("user", "Capital of France?")])
    question, answer = DEFAULT_TRANSCRIPT.examples[0]
    # What a base model writes when it keeps imitating the examples after its answer.
    output = f" Paris.\nUser: {question}\nAssistant: {answer}"
    text = StopText(prompt.stop, strip=prompt.strip_output)
    assert text.feed(output) + ("" if text.stopped else text.flush()) == "Paris."
    assert text.stopped


def test_examples_are_one_line_each_and_no_calibration_item() -> None:
    asked = {item.prompt for seed in range(3) for item in calibration_set(seed, per_category=60)}
    for question, answer in DEFAULT_TRANSCRIPT.examples:
        assert "\n" not in question + answer
        assert question not in asked


def test_a_transcript_format_of_one_s_own_replaces_the_default() -> None:
    formatter = ChatFormatter(None, transcript=TranscriptFormat("Questions and answers."))
    prompt = formatter.format([Message("user", "Hi")])
    assert prompt.text == "Questions and answers.\n\nUser: Hi\nAssistant:"


def test_constrained_output_keeps_blank_lines_allowed() -> None:
    prompt = ChatFormatter(None).format([Message("user", "json please")], constrained=True)
    assert TRANSCRIPT_PARAGRAPH_STOP not in prompt.stop


def test_json_output_is_prompted_without_the_free_text_examples() -> None:
    prompt = ChatFormatter(None).format([Message("user", "json please")], constrained=True)
    assert prompt.text == f"{DEFAULT_TRANSCRIPT.preamble}\n\nUser: json please\nAssistant:"


def test_model_with_a_template_is_prompted_through_it() -> None:
    formatter = ChatFormatter(CHATML, bos_token="<s>", eos_token="</s>")
    prompt = formatter.format([Message("user", "Hello")])
    assert formatter.uses_template
    assert prompt.text == "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n"
    assert prompt.stop == () and not prompt.strip_output and prompt.add_bos


def test_template_that_writes_bos_itself_turns_off_the_tokenizer_bos() -> None:
    formatter = ChatFormatter("{{ bos_token }}{{ messages[0].content }}", bos_token="<bos>")
    prompt = formatter.format([Message("user", "x")])
    assert prompt.text == "<bos>x" and not prompt.add_bos


def test_template_raise_exception_becomes_a_clear_request_error() -> None:
    template = (
        "{% if messages[0].role != 'user' %}"
        "{{ raise_exception('must start with user') }}{% endif %}"
    )
    with pytest.raises(InvalidRequestError, match="must start with user"):
        ChatFormatter(template).format([Message("assistant", "x")])


def test_empty_conversation_is_refused() -> None:
    with pytest.raises(InvalidRequestError, match="at least one message"):
        ChatFormatter(None).format([])


PREFILL = [
    Message("user", "Describe a cat as JSON with keys name and colour."),
    Message("assistant", '{"name": "'),
]


def test_a_trailing_assistant_message_is_continued_in_the_transcript() -> None:
    prompt = ChatFormatter(None).format(PREFILL)
    assert prompt.text.endswith(
        'User: Describe a cat as JSON with keys name and colour.\nAssistant: {"name": "'
    )
    assert prompt.text.count("\nAssistant:") == 4  # three examples and the open turn
    # The continuation is the answer as written: "Paris is" + " the capital".
    assert not prompt.strip_output
    assert "\nUser:" in prompt.stop


def test_a_trailing_assistant_message_is_continued_in_the_template_s_open_turn() -> None:
    prompt = ChatFormatter(CHATML).format(PREFILL)
    assert prompt.text == (
        "<|im_start|>user\nDescribe a cat as JSON with keys name and colour.<|im_end|>\n"
        '<|im_start|>assistant\n{"name": "'
    )


def test_an_assistant_message_with_calls_or_alone_is_not_a_prefill() -> None:
    from hybrid.generation import ToolCall

    call = Message("assistant", "", tool_calls=(ToolCall("c1", "f", "{}"),))
    prompt = ChatFormatter(None).format([Message("user", "Go"), call])
    assert prompt.text.endswith("Assistant: f({})\nAssistant:") and prompt.strip_output
    alone = ChatFormatter(CHATML).format([Message("assistant", "Hi")])
    assert alone.text == "<|im_start|>assistant\nHi<|im_end|>\n<|im_start|>assistant\n"


# Gemma 3's rule: an optional system message first, then user and assistant in turn.
ALTERNATING = (
    "{% if messages[0]['role'] == 'system' %}{% set rest = messages[1:] %}"
    "[{{ messages[0]['content'] }}]{% else %}{% set rest = messages %}{% endif %}"
    "{% for m in rest %}{% if (m['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate') }}{% endif %}"
    "<{{ m['role'] }}>{{ m['content'] }}{% endfor %}<assistant>"
)


def test_a_developer_message_reaches_the_template_as_system() -> None:
    prompt = ChatFormatter(ALTERNATING).format(
        [Message("developer", "Answer in French."), Message("user", "Sky colour?")]
    )
    assert prompt.text == "[Answer in French.]<user>Sky colour?<assistant>"
