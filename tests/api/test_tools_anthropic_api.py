"""Tool use on /v1/messages: tools, tool_use and tool_result blocks in, tool_use blocks out,
framed as Anthropic frames them, checked with the official SDK and on the raw SSE."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest
from fastapi.testclient import TestClient
from tool_scripted import ToolBackend, anthropic_sdk

from hybrid.generation import Message, ToolCall, ToolChoice, ToolSpec

WEATHER_TOOL: dict[str, Any] = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}
CLOCK_TOOL: dict[str, Any] = {"name": "get_time", "input_schema": {"type": "object"}}
ASK: list[Any] = [{"role": "user", "content": "Weather in Paris, and the time?"}]


@pytest.fixture
def backend() -> ToolBackend:
    return ToolBackend()


@pytest.fixture
def api(client: TestClient) -> Iterator[anthropic.Anthropic]:
    with anthropic_sdk(client) as sdk:
        yield sdk


def test_tool_blocks_become_tool_calls_and_tool_messages(
    api: anthropic.Anthropic, backend: ToolBackend
) -> None:
    api.messages.create(
        model="hybrid",
        max_tokens=64,
        tools=[WEATHER_TOOL, CLOCK_TOOL],
        tool_choice={"type": "any", "disable_parallel_tool_use": True},
        messages=[
            *ASK,
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Checking."},
                    {
                        "type": "tool_use",
                        "id": "toolu_1",
                        "name": "get_weather",
                        "input": {"city": "Paris"},
                    },
                    {"type": "tool_use", "id": "toolu_2", "name": "get_time", "input": {}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18 C"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_2",
                        "content": [{"type": "text", "text": "no clock"}],
                        "is_error": True,
                    },
                    {"type": "text", "text": "And tomorrow?"},
                ],
            },
        ],
    )
    (sent,) = backend.requests
    assert sent.tools == (
        ToolSpec("get_weather", "The weather in a city", WEATHER_TOOL["input_schema"]),
        ToolSpec("get_time", None, {"type": "object"}),
    )
    assert sent.tool_choice == ToolChoice("required")
    assert sent.parallel_tool_calls is False
    assert sent.messages[1:] == (
        Message(
            "assistant",
            "Checking.",
            tool_calls=(
                ToolCall("toolu_1", "get_weather", '{"city":"Paris"}'),
                ToolCall("toolu_2", "get_time", "{}"),
            ),
        ),
        Message("tool", "18 C", tool_call_id="toolu_1", name="get_weather"),
        Message("tool", "no clock", tool_call_id="toolu_2", name="get_time", is_error=True),
        Message("user", "And tomorrow?"),
    )


def test_a_whole_answer_has_tool_use_blocks_after_the_text(api: anthropic.Anthropic) -> None:
    message = api.messages.create(
        model="hybrid", max_tokens=64, messages=ASK, tools=[WEATHER_TOOL, CLOCK_TOOL]
    )
    assert message.stop_reason == "tool_use"
    text, weather, clock = message.content
    assert text.type == "text" and text.text == "Let me check."
    assert weather.type == "tool_use" and clock.type == "tool_use"
    assert (weather.id, weather.name, weather.input) == (
        "call_w1",
        "get_weather",
        {"city": "Paris"},
    )
    assert (clock.name, clock.input) == ("get_time", {})


def sse_events(text: str) -> list[dict[str, Any]]:
    events = []
    for block in text.split("\n\n")[:-1]:
        name_line, data_line = block.split("\n")
        data = json.loads(data_line[len("data: ") :])
        assert name_line == f"event: {data['type']}"
        events.append(data)
    return events


def test_the_stream_frames_tool_use_blocks_exactly_as_anthropic_does(
    client: TestClient,
) -> None:
    response = client.post(
        "/v1/messages",
        json={
            "model": "hybrid",
            "max_tokens": 64,
            "messages": ASK,
            "tools": [WEATHER_TOOL, CLOCK_TOOL],
            "stream": True,
        },
    )
    events = sse_events(response.text)
    assert [e["type"] for e in events[:2]] == ["message_start", "ping"]
    assert events[2:-2] == [
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": "Let me check."},
        },
        {"type": "content_block_stop", "index": 0},
        {
            "type": "content_block_start",
            "index": 1,
            "content_block": {
                "type": "tool_use",
                "id": "call_w1",
                "name": "get_weather",
                "input": {},
            },
        },
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": '{"city": '},
        },
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": '"Paris"}'},
        },
        {"type": "content_block_stop", "index": 1},
        {
            "type": "content_block_start",
            "index": 2,
            "content_block": {"type": "tool_use", "id": "call_t2", "name": "get_time", "input": {}},
        },
        {
            "type": "content_block_delta",
            "index": 2,
            "delta": {"type": "input_json_delta", "partial_json": "{}"},
        },
        {"type": "content_block_stop", "index": 2},
    ]
    assert events[-2]["delta"]["stop_reason"] == "tool_use"
    assert events[-1]["type"] == "message_stop"


def test_the_sdks_stream_helper_parses_the_tool_input(
    api: anthropic.Anthropic, backend: ToolBackend
) -> None:
    backend.text = ""
    with api.messages.stream(
        model="hybrid", max_tokens=64, messages=ASK, tools=[WEATHER_TOOL, CLOCK_TOOL]
    ) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    assert [(b.type, getattr(b, "input", None)) for b in final.content] == [
        ("tool_use", {"city": "Paris"}),
        ("tool_use", {}),
    ]


@pytest.mark.parametrize(
    ("extra", "param", "words"),
    [
        (
            {"tools": [{"type": "web_search_20250305", "name": "web_search"}]},
            "tools[0]",
            "server tool",
        ),
        ({"tool_choice": {"type": "any"}}, "tool_choice", "offers no tools"),
        (
            {"tools": [WEATHER_TOOL], "tool_choice": {"type": "tool", "name": "get_time"}},
            "tool_choice.name",
            "not among the tools",
        ),
        ({"tools": [WEATHER_TOOL], "tool_choice": {"type": "maybe"}}, "tool_choice", "auto, any"),
    ],
)
def test_tool_requests_hybrid_cannot_honour_are_400s(
    client: TestClient, backend: ToolBackend, extra: dict[str, Any], param: str, words: str
) -> None:
    response = client.post(
        "/v1/messages", json={"model": "hybrid", "max_tokens": 8, "messages": ASK, **extra}
    )
    assert response.status_code == 400
    message = response.json()["error"]["message"]
    assert words in message and param.split(".")[0] in message
    assert backend.requests == []


def test_a_tool_result_with_an_image_is_refused(client: TestClient) -> None:
    result = {
        "type": "tool_result",
        "tool_use_id": "toolu_1",
        "content": [{"type": "image", "source": {"type": "url", "url": "https://x/y.png"}}],
    }
    response = client.post(
        "/v1/messages",
        json={
            "model": "hybrid",
            "max_tokens": 8,
            "messages": [{"role": "user", "content": [result]}],
        },
    )
    assert response.status_code == 400
    assert "messages[0].content[0].content[0]" in response.json()["error"]["message"]
