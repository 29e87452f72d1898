"""Tool calling on /v1/chat/completions: tools and tool turns in, tool calls out, framed as
OpenAI frames them, checked with the official SDK and on the raw SSE."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import openai
import pytest
from fastapi.testclient import TestClient
from scripted import scripted_app
from tool_scripted import ToolBackend, openai_sdk

from hybrid.generation import Message, ToolCall, ToolCallDelta, ToolChoice, ToolSpec
from hybrid.settings import Settings

WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
CLOCK_TOOL: dict[str, Any] = {"type": "function", "function": {"name": "get_time"}}
ASK: list[Any] = [{"role": "user", "content": "Weather in Paris, and the time?"}]


@pytest.fixture
def backend() -> ToolBackend:
    return ToolBackend()


def sse_payloads(text: str) -> list[Any]:
    events = text.split("\n\n")[:-1]
    assert all(event.startswith("data: ") for event in events), events
    return [
        event[len("data: ") :] if event == "data: [DONE]" else json.loads(event[len("data: ") :])
        for event in events
    ]


def test_tools_and_tool_turns_reach_the_backend(client: TestClient, backend: ToolBackend) -> None:
    openai_sdk(client).chat.completions.create(
        model="hybrid",
        messages=[
            *ASK,
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "21 C"},
        ],
        tools=[WEATHER_TOOL, CLOCK_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        parallel_tool_calls=False,
    )
    (sent,) = backend.requests
    assert sent.tools == (
        ToolSpec("get_weather", "The weather in a city", WEATHER_TOOL["function"]["parameters"]),
        ToolSpec("get_time"),
    )
    assert sent.tool_choice == ToolChoice("named", "get_weather")
    assert sent.parallel_tool_calls is False
    assert "tools" in sent.needs
    assert sent.messages[1:] == (
        Message(
            "assistant", "", tool_calls=(ToolCall("call_1", "get_weather", '{"city":"Rome"}'),)
        ),
        Message("tool", "21 C", tool_call_id="call_1"),
    )


def test_a_whole_answer_carries_tool_calls_and_finish_reason_tool_calls(
    client: TestClient, backend: ToolBackend
) -> None:
    backend.text = ""
    completion = openai_sdk(client).chat.completions.create(
        model="hybrid", messages=ASK, tools=[WEATHER_TOOL, CLOCK_TOOL]
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert [(c.id, c.function.name, c.function.arguments) for c in choice.message.tool_calls] == [  # type: ignore[union-attr]
        ("call_w1", "get_weather", '{"city": "Paris"}'),
        ("call_t2", "get_time", "{}"),
    ]


def test_the_stream_frames_calls_exactly_as_openai_does(client: TestClient) -> None:
    response = client.post(
        "/v1/chat/completions",
        json={
            "messages": ASK,
            "tools": [WEATHER_TOOL, CLOCK_TOOL],
            "stream": True,
        },
    )
    payloads = sse_payloads(response.text)
    deltas = [p["choices"][0]["delta"] for p in payloads[:-1]]
    assert deltas == [
        {"role": "assistant", "content": "", "refusal": None},
        {"content": "Let me check."},
        {
            "tool_calls": [
                {
                    "index": 0,
                    "id": "call_w1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": ""},
                }
            ]
        },
        {"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]},
        {
            "tool_calls": [
                {
                    "index": 1,
                    "id": "call_t2",
                    "type": "function",
                    "function": {"name": "get_time", "arguments": ""},
                }
            ]
        },
        {"tool_calls": [{"index": 1, "function": {"arguments": "{}"}}]},
        {},
    ]
    assert payloads[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert payloads[-1] == "[DONE]"


def test_the_sdks_stream_helper_assembles_the_calls(client: TestClient) -> None:
    with openai_sdk(client).chat.completions.stream(
        model="hybrid", messages=ASK, tools=[WEATHER_TOOL, CLOCK_TOOL]
    ) as stream:
        done = [event for event in stream if event.type == "tool_calls.function.arguments.done"]
        final = stream.get_final_completion()
    assert [(event.name, event.arguments) for event in done] == [
        ("get_weather", '{"city": "Paris"}'),
        ("get_time", "{}"),
    ]
    message = final.choices[0].message
    assert message.content == "Let me check."
    assert [call.id for call in message.tool_calls or []] == ["call_w1", "call_t2"]
    assert final.choices[0].finish_reason == "tool_calls"


@pytest.mark.parametrize(
    ("extra", "param", "words"),
    [
        ({"functions": [{"name": "f"}]}, "functions", "send tools instead"),
        ({"function_call": "auto"}, "function_call", "send tool_choice instead"),
        ({"tool_choice": "required"}, "tool_choice", "offers no tools"),
        ({"tools": [WEATHER_TOOL], "tool_choice": "sometimes"}, "tool_choice", "auto, none"),
        (
            {
                "tools": [WEATHER_TOOL],
                "tool_choice": {"type": "function", "function": {"name": "get_time"}},
            },
            "tool_choice",
            "not among the tools",
        ),
        ({"tools": [{"type": "custom", "custom": {"name": "x"}}]}, "tools[0]", "function tools"),
        ({"tools": [WEATHER_TOOL, WEATHER_TOOL]}, "tools", "distinct name"),
    ],
)
def test_tool_requests_hybrid_cannot_honour_are_400s_naming_the_field(
    client: TestClient, backend: ToolBackend, extra: dict[str, Any], param: str, words: str
) -> None:
    response = client.post("/v1/chat/completions", json={"messages": ASK, **extra})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == param and words in error["message"]
    assert backend.requests == []


def test_a_tool_message_must_name_its_call(client: TestClient) -> None:
    response = client.post(
        "/v1/chat/completions",
        json={"messages": [*ASK, {"role": "tool", "content": "21 C"}]},
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "messages[1].tool_call_id"


@pytest.fixture
def plain_client(settings_for: Callable[..., Settings]) -> Iterator[TestClient]:
    """No cloud provider, and a local model without tool support."""
    settings = settings_for(**{"probe.measure_bandwidth": False})
    app = scripted_app(settings)
    with TestClient(app) as test_client:
        yield test_client


def test_a_local_model_without_tool_support_says_how_to_get_tools(
    plain_client: TestClient,
) -> None:
    api = openai_sdk(plain_client)
    for headers in ({}, {"X-Hybrid-Route": "local"}):
        with pytest.raises(openai.BadRequestError) as caught:
            api.chat.completions.create(
                model="hybrid", messages=ASK, tools=[WEATHER_TOOL], extra_headers=headers
            )
        assert "cannot call tools" in caught.value.message
        assert "X-Hybrid-Route: cloud" in caught.value.message
    # Tools the model must not call need no tool support: the answer is text.
    answer = api.chat.completions.create(
        model="hybrid", messages=ASK, tools=[WEATHER_TOOL], tool_choice="none"
    )
    assert answer.choices[0].message.content == "Hello world"


def test_a_streamed_call_whose_arguments_never_came_gets_an_empty_object(
    client: TestClient, backend: ToolBackend
) -> None:
    backend.text = ""
    backend.calls = [ToolCallDelta(0, "call_t", "get_time", "")]
    with openai_sdk(client).chat.completions.stream(
        model="hybrid", messages=ASK, tools=[CLOCK_TOOL]
    ) as stream:
        final = stream.get_final_completion()
    (call,) = final.choices[0].message.tool_calls or []
    assert (call.function.name, call.function.arguments) == ("get_time", "{}")
