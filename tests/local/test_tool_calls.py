"""Local tool calling: tools rendered into a template that supports them, calls read back out of
the model's text (Hermes/Qwen tags and Llama's bare JSON), streamed text never leaking a call."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
from collections.abc import Callable
from typing import Any

import pytest

from hybrid.backend import collect
from hybrid.errors import InvalidRequestError
from hybrid.generation import (
    GenerationDone,
    GenerationEvent,
    GenerationRequest,
    Message,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    ToolSpec,
    Usage,
)
from hybrid.local.backend import LocalBackend
from hybrid.local.engine import EngineJob
from hybrid.local.prompt import ChatFormatter
from hybrid.local.queue import WorkQueue
from hybrid.local.tool_calls import ToolCallFilter, parse_tool_calls

NAMES = ("get_weather", "get_time")

# Qwen 2.5's tool section and turn format, cut down: tools as JSON lines, calls in tags.
QWEN_LIKE = (
    "{%- if tools %}<|im_start|>system\n# Tools\n<tools>"
    "{%- for tool in tools %}{{ '\\n' }}{{ tool | tojson }}{%- endfor %}{{ '\\n' }}</tools>\n"
    'Call a function as <tool_call>{"name": ..., "arguments": ...}</tool_call><|im_end|>\n'
    "{%- endif %}"
    "{%- for m in messages %}"
    "{%- if m.role == 'assistant' and m.tool_calls %}<|im_start|>assistant\n{{ m.content }}"
    "{%- for tc in m.tool_calls %}<tool_call>"
    '{"name": "{{ tc.function.name }}", "arguments": {{ tc.function.arguments | tojson }}}'
    "</tool_call>{%- endfor %}<|im_end|>\n"
    "{%- elif m.role == 'tool' %}<|im_start|>user\n<tool_response>{{ m.content }}"
    "</tool_response><|im_end|>\n"
    "{%- else %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{%- endif %}"
    "{%- endfor %}{%- if add_generation_prompt %}<|im_start|>assistant\n{%- endif %}"
)
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
WEATHER = ToolSpec(
    "get_weather",
    "Today's weather, in 'quotes' & <brackets>",
    {"type": "object", "properties": {"city": {"type": "string"}}},
)
CLOCK = ToolSpec("get_time")


def arguments_of(call: ToolCall) -> Any:
    return json.loads(call.arguments)


# -- parsing a whole answer ----------------------------------------------------------------------


def test_hermes_tags_after_some_text() -> None:
    parsed = parse_tool_calls(
        'Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n'
        '</tool_call>\n<tool_call>\n{"name": "get_time", "arguments": {}}\n</tool_call>',
        NAMES,
    )
    assert parsed.text == "Let me check."
    assert [(c.name, arguments_of(c)) for c in parsed.calls] == [
        ("get_weather", {"city": "Paris"}),
        ("get_time", {}),
    ]
    assert all(c.id.startswith("call_") for c in parsed.calls)
    assert parsed.calls[0].id != parsed.calls[1].id


def test_a_last_tag_left_open_when_the_model_stopped_still_counts() -> None:
    parsed = parse_tool_calls('<tool_call>{"name": "get_time", "arguments": "{}"}', NAMES)
    assert [(c.name, arguments_of(c)) for c in parsed.calls] == [("get_time", {})]


@pytest.mark.parametrize(
    "answer",
    [
        '{"name": "get_weather", "parameters": {"city": "Paris"}}',
        '<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris"}}',
        '  [{"name": "get_weather", "arguments": {"city": "Paris"}}]\n',
    ],
)
def test_llama_bare_json_calls(answer: str) -> None:
    parsed = parse_tool_calls(answer, NAMES)
    assert parsed.text == ""
    assert [(c.name, arguments_of(c)) for c in parsed.calls] == [("get_weather", {"city": "Paris"})]


def test_several_bare_calls_separated_by_semicolons() -> None:
    parsed = parse_tool_calls(
        '{"name": "get_time", "parameters": {}}; {"name": "get_weather", "parameters": {}}', NAMES
    )
    assert [c.name for c in parsed.calls] == ["get_time", "get_weather"]


@pytest.mark.parametrize(
    "answer",
    [
        '{"name": "Paris", "population": 2100000}',  # JSON data, not a call to a tool offered
        '{"name": "get_weather", "parameters": {"city": "Par',  # cut short
        "<tool_call>not json</tool_call>",
        "The weather is fine.",
    ],
)
def test_answers_that_are_not_calls_stay_text(answer: str) -> None:
    parsed = parse_tool_calls(answer, NAMES)
    assert parsed.calls == () and parsed.text == answer


# -- streaming ---------------------------------------------------------------------------------


def run_filter(pieces: list[str]) -> tuple[list[str], Any]:
    calls = ToolCallFilter(NAMES)
    released = [calls.feed(piece) for piece in pieces]
    return released, calls.finish()


def test_text_streams_until_a_tag_and_the_tag_never_leaks() -> None:
    released, end = run_filter(
        [
            "Let me",
            " check.",
            " <tool",
            '_call>{"name": "get_time",',
            ' "arguments": {}}</tool_call>',
        ]
    )
    assert released == ["Let me", " check.", " ", "", ""]
    assert end.text == "" and [c.name for c in end.calls] == ["get_time"]


def test_a_tail_that_only_looks_like_a_tag_is_released_once_it_is_not() -> None:
    released, end = run_filter(["a <to", "day> b"])
    assert "".join(released) + end.text == "a <today> b"
    assert released[0] == "a " and end.calls == ()


def test_an_answer_that_starts_as_json_is_held_whole() -> None:
    released, end = run_filter(['{"name": "get_', 'weather", "parameters": {"city": "Oslo"}}'])
    assert released == ["", ""]
    assert [(c.name, arguments_of(c)) for c in end.calls] == [("get_weather", {"city": "Oslo"})]
    released, end = run_filter(['{"temperature":', " 18}"])
    assert released == ["", ""] and end.text == '{"temperature": 18}' and end.calls == ()


# -- the prompt ------------------------------------------------------------------------------


def test_only_a_template_that_mentions_tools_supports_them() -> None:
    assert ChatFormatter(QWEN_LIKE).supports_tools
    assert not ChatFormatter(CHATML).supports_tools
    assert not ChatFormatter(None).supports_tools


def test_tools_and_tool_turns_are_rendered_as_hugging_face_does() -> None:
    prompt = ChatFormatter(QWEN_LIKE).format(
        [
            Message("user", "Weather?"),
            Message(
                "assistant", "", tool_calls=(ToolCall("c1", "get_weather", '{"city":"Oslo"}'),)
            ),
            Message("tool", "-3 C", tool_call_id="c1", name="get_weather"),
        ],
        tools=[WEATHER, CLOCK],
    )
    tool_lines = prompt.text.split("<tools>\n")[1].split("\n</tools>")[0].splitlines()
    assert [json.loads(line) for line in tool_lines] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Today's weather, in 'quotes' & <brackets>",
                "parameters": WEATHER.parameters,
            },
        },
        {
            "type": "function",
            "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}},
        },
    ]
    # Arguments are an object in the template, so tojson writes them as JSON, not a string.
    assert '<tool_call>{"name": "get_weather", "arguments": {"city": "Oslo"}}</tool_call>' in (
        prompt.text
    )
    assert "<tool_response>-3 C</tool_response>" in prompt.text
    without = ChatFormatter(QWEN_LIKE).format([Message("user", "Weather?")])
    assert "<tools>" not in without.text


def test_a_base_model_transcript_shows_earlier_calls() -> None:
    prompt = ChatFormatter(None).format(
        [
            Message("user", "Weather?"),
            Message("assistant", "", tool_calls=(ToolCall("c1", "get_weather", "{}"),)),
            Message("tool", "sunny", tool_call_id="c1"),
        ]
    )
    assert "Assistant: get_weather({})\nTool: sunny" in prompt.text


# -- the local backend -----------------------------------------------------------------------


class ScriptedEngine:
    """Answers every job with the given pieces of text; remembers each prompt it tokenized."""

    n_ctx = 4096

    def __init__(self, *pieces: str) -> None:
        self.pieces = pieces
        self.prompts: list[str] = []

    def tokenize(self, text: str, *, add_bos: bool) -> list[int]:
        self.prompts.append(text)
        return [1] * (len(text) // 4 + 1)

    def longest_token_bytes(self) -> int | None:
        return None  # no bound: every prompt is tokenized

    def run(
        self, job: EngineJob, cancel: threading.Event, emit: Callable[[GenerationEvent], None]
    ) -> None:
        for piece in self.pieces:
            emit(TextDelta(piece))
        emit(GenerationDone("stop", Usage(len(job.tokens), len(self.pieces))))


def backend(engine: ScriptedEngine, template: str | None = QWEN_LIKE) -> LocalBackend:
    return LocalBackend(
        engine,
        WorkQueue(max_waiting=4),
        ChatFormatter(template),
        model_id="m",
        default_max_tokens=64,
        default_temperature=0.0,
    )


def ask(
    choice: ToolChoice | None = None, *, tools: tuple[ToolSpec, ...] = (WEATHER, CLOCK)
) -> GenerationRequest:
    choice = choice or ToolChoice()
    needs = frozenset({"tools"}) if choice.mode != "none" else frozenset()
    return GenerationRequest(
        "r1",
        messages=(Message("user", "Weather in Paris?"),),
        tools=tools,
        tool_choice=choice,
        needs=needs,
    )


def events_of(local: LocalBackend, request: GenerationRequest) -> list[GenerationEvent]:
    async def scenario() -> list[GenerationEvent]:
        generation = await local.start(request)
        return [event async for event in generation]

    try:
        return asyncio.run(scenario())
    finally:
        local.queue.close()


def test_the_local_backend_turns_a_written_call_into_tool_call_events() -> None:
    engine = ScriptedEngine(
        "Checking.",
        "<tool_call>",
        '{"name": "get_weather", ',
        '"arguments": {"city": "Paris"}}',
        "</tool_call>",
    )
    local = backend(engine)
    assert local.supports == frozenset({"tools"})
    events = events_of(local, ask())
    assert "get_time" in engine.prompts[0] and "<tools>" in engine.prompts[0]
    text = [e.text for e in events if isinstance(e, TextDelta)]
    calls = [e for e in events if isinstance(e, ToolCallDelta)]
    assert "".join(text) == "Checking."
    assert len(calls) == 1 and calls[0].name == "get_weather" and calls[0].id
    assert json.loads(calls[0].arguments) == {"city": "Paris"}
    done = events[-1]
    assert isinstance(done, GenerationDone) and done.finish_reason == "tool_calls"


def test_a_named_choice_offers_only_that_tool_and_none_offers_none() -> None:
    engine = ScriptedEngine("It is noon.")
    events_of(backend(engine), ask(ToolChoice("named", "get_time")))
    assert "get_time" in engine.prompts[0] and "get_weather" not in engine.prompts[0]
    engine = ScriptedEngine('{"name": "get_time", "parameters": {}}')
    events = events_of(backend(engine), ask(ToolChoice("none")))
    assert "<tools>" not in engine.prompts[0]
    # Without tools offered, JSON that looks like a call is the answer's text.
    assert [e for e in events if isinstance(e, ToolCallDelta)] == []
    assert events[-1].finish_reason == "stop"  # type: ignore[union-attr]


def test_an_answer_without_calls_is_plain_text() -> None:
    local = backend(ScriptedEngine("It is ", "sunny."))

    async def scenario() -> Any:
        return await collect(await local.start(ask()))

    try:
        completion = asyncio.run(scenario())
    finally:
        local.queue.close()
    assert completion.text == "It is sunny." and completion.tool_calls == ()
    assert completion.done.finish_reason == "stop"


@pytest.mark.parametrize("template", [None, CHATML])
def test_a_model_without_tool_support_refuses_tools_and_says_what_to_do(
    template: str | None,
) -> None:
    local = backend(ScriptedEngine("hi"), template)
    assert local.supports == frozenset()
    with pytest.raises(InvalidRequestError, match="cannot call tools") as caught:
        asyncio.run(local.prepare(ask()))
    assert caught.value.param == "tools" and "X-Hybrid-Route: cloud" in str(caught.value)
    asyncio.run(local.prepare(ask(ToolChoice("none"))))  # tools it must not call: fine
    local.queue.close()


def test_deeply_nested_call_arguments_are_rendered_as_sent() -> None:
    nested = "[" * 20_000 + "]" * 20_000
    prompt = ChatFormatter(QWEN_LIKE).format(
        [
            Message("user", "Weather?"),
            Message("assistant", "", tool_calls=(ToolCall("c1", "get_weather", nested),)),
            Message("tool", "-3 C", tool_call_id="c1", name="get_weather"),
        ],
        tools=[WEATHER],
    )
    assert json.dumps(nested) in prompt.text


def test_parallel_tool_calls_false_passes_on_the_first_call_only() -> None:
    two_calls = (
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n',
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Rome"}}\n</tool_call>',
    )
    for parallel, cities in ((False, ["Paris"]), (None, ["Paris", "Rome"])):
        request = dataclasses.replace(ask(), parallel_tool_calls=parallel)
        events = events_of(backend(ScriptedEngine(*two_calls)), request)
        calls = [e for e in events if isinstance(e, ToolCallDelta)]
        assert [json.loads(call.arguments)["city"] for call in calls] == cities
        assert [call.index for call in calls] == list(range(len(cities)))
        assert events[-1].finish_reason == "tool_calls"  # type: ignore[union-attr]
