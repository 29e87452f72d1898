"""The fake cloud's tool calls are the APIs' own: the official SDKs and their stream helpers
assemble them, and the fake refuses tool conversations the real APIs refuse."""

from __future__ import annotations

from typing import Any

import anthropic
import openai
import pytest
from fake_cloud import FakeCloud
from fake_cloud_tools import ScriptedCall, ToolScript

WEATHER = {"city": "Paris", "unit": "celsius"}
OPENAI_TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]
ANTHROPIC_TOOLS: list[Any] = [
    {
        "name": "get_weather",
        "description": "The weather in a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
]
ASK: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]


@pytest.fixture(autouse=True)
def scripted(cloud: FakeCloud) -> None:
    cloud.tools = ToolScript((ScriptedCall("get_weather", WEATHER),))


def test_openai_whole_answer_calls_the_tool(openai_client: openai.OpenAI) -> None:
    completion = openai_client.chat.completions.create(
        model="gpt-4.1", messages=ASK, tools=OPENAI_TOOLS
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert choice.message.tool_calls is not None
    (call,) = choice.message.tool_calls
    assert call.id.startswith("call_") and call.type == "function"
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    assert call.function.arguments == '{"city":"Paris","unit":"celsius"}'  # type: ignore[union-attr]


def test_openai_stream_is_assembled_by_the_sdks_stream_helper(
    openai_client: openai.OpenAI,
) -> None:
    with openai_client.chat.completions.stream(
        model="gpt-4.1", messages=ASK, tools=OPENAI_TOOLS
    ) as stream:
        chunks = [event.chunk for event in stream if event.type == "chunk"]
        final = stream.get_final_completion()
    call = final.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert final.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather"
    assert call.function.arguments == '{"city":"Paris","unit":"celsius"}'
    announce = chunks[1].choices[0].delta.tool_calls[0]  # type: ignore[index]
    assert (announce.index, announce.type, announce.function.arguments) == (0, "function", "")  # type: ignore[union-attr]
    later = chunks[2].choices[0].delta.tool_calls[0]  # type: ignore[index]
    assert later.id is None and later.function.name is None  # type: ignore[union-attr]


def test_anthropic_whole_and_streamed_answers_call_the_tool(
    anthropic_client: anthropic.Anthropic,
) -> None:
    message = anthropic_client.messages.create(
        model="claude-x", max_tokens=100, messages=ASK, tools=ANTHROPIC_TOOLS
    )
    assert message.stop_reason == "tool_use"
    (block,) = message.content
    assert block.type == "tool_use" and block.id.startswith("toolu_")
    assert (block.name, block.input) == ("get_weather", WEATHER)
    with anthropic_client.messages.stream(
        model="claude-x", max_tokens=100, messages=ASK, tools=ANTHROPIC_TOOLS
    ) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    assert final.content[0].type == "tool_use" and final.content[0].input == WEATHER


def test_text_before_the_calls_comes_first(
    cloud: FakeCloud, openai_client: openai.OpenAI, anthropic_client: anthropic.Anthropic
) -> None:
    cloud.tools = ToolScript((ScriptedCall("get_weather", WEATHER),), text="Let me check.")
    message = (
        openai_client.chat.completions.create(model="gpt-4.1", messages=ASK, tools=OPENAI_TOOLS)
        .choices[0]
        .message
    )
    assert message.content == "Let me check." and message.tool_calls
    with anthropic_client.messages.stream(
        model="claude-x", max_tokens=100, messages=ASK, tools=ANTHROPIC_TOOLS
    ) as stream:
        final = stream.get_final_message()
    assert [block.type for block in final.content] == ["text", "tool_use"]


def test_the_turn_with_the_results_gets_the_plain_reply(
    cloud: FakeCloud, openai_client: openai.OpenAI, anthropic_client: anthropic.Anthropic
) -> None:
    first = (
        openai_client.chat.completions.create(model="gpt-4.1", messages=ASK, tools=OPENAI_TOOLS)
        .choices[0]
        .message
    )
    call = first.tool_calls[0]  # type: ignore[index]
    second = openai_client.chat.completions.create(
        model="gpt-4.1",
        tools=OPENAI_TOOLS,
        messages=[
            *ASK,
            first.model_dump(exclude_none=True),  # type: ignore[list-item]
            {"role": "tool", "tool_call_id": call.id, "content": "18 C"},
        ],
    )
    assert second.choices[0].message.content == cloud.reply
    assert second.choices[0].finish_reason == "stop"
    turn = anthropic_client.messages.create(
        model="claude-x", max_tokens=100, messages=ASK, tools=ANTHROPIC_TOOLS
    )
    use = turn.content[0]
    answer = anthropic_client.messages.create(
        model="claude-x",
        max_tokens=100,
        tools=ANTHROPIC_TOOLS,
        messages=[
            *ASK,
            {"role": "assistant", "content": turn.content},  # type: ignore[typeddict-item]
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "18 C"}],  # type: ignore[union-attr]
            },
        ],
    )
    assert answer.content[0].text == cloud.reply  # type: ignore[union-attr]


def test_tool_choice_none_and_unknown_tools_get_text(
    cloud: FakeCloud, openai_client: openai.OpenAI
) -> None:
    none = openai_client.chat.completions.create(
        model="gpt-4.1", messages=ASK, tools=OPENAI_TOOLS, tool_choice="none"
    )
    assert none.choices[0].message.content == cloud.reply
    cloud.tools = ToolScript((ScriptedCall("book_flight"),))
    other = openai_client.chat.completions.create(model="gpt-4.1", messages=ASK, tools=OPENAI_TOOLS)
    assert other.choices[0].message.tool_calls is None


def test_results_that_do_not_answer_a_call_are_refused_as_the_apis_do(
    openai_client: openai.OpenAI, anthropic_client: anthropic.Anthropic
) -> None:
    with pytest.raises(openai.BadRequestError, match="must be a response to a preceeding"):
        openai_client.chat.completions.create(
            model="gpt-4.1",
            messages=[*ASK, {"role": "tool", "tool_call_id": "call_x", "content": "18 C"}],
        )
    unanswered = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
        ],
    }
    with pytest.raises(openai.BadRequestError, match="did not have response messages: call_1"):
        openai_client.chat.completions.create(model="gpt-4.1", messages=[*ASK, unanswered, *ASK])
    with pytest.raises(anthropic.BadRequestError, match="unexpected `tool_use_id`"):
        anthropic_client.messages.create(
            model="claude-x",
            max_tokens=10,
            messages=[
                {
                    "role": "user",
                    "content": [{"type": "tool_result", "tool_use_id": "toolu_x", "content": "1"}],
                }
            ],
        )
    with pytest.raises(anthropic.BadRequestError, match="input_schema: Field required"):
        anthropic_client.messages.create(
            model="claude-x",
            max_tokens=10,
            messages=ASK,
            tools=[{"name": "get_weather"}],  # type: ignore[list-item]
        )
