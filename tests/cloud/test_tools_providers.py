"""Tool calling through the cloud providers: tools and tool turns go out in each API's format,
and tool calls come back, whole and streamed, as hybrid's tool call events."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from cloud_fakes import (
    Upstream,
    anthropic,
    anthropic_end,
    anthropic_event,
    anthropic_message,
    anthropic_start,
    anthropic_text,
    json_response,
    mock_client,
    openai,
    openai_chunk,
    openai_completion,
    sse_response,
)

from hybrid.backend import Completion
from hybrid.cloud.provider import CloudProvider
from hybrid.errors import InvalidRequestError, ProviderProtocolError
from hybrid.generation import (
    GenerationEvent,
    GenerationRequest,
    Message,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    ToolSpec,
)

WEATHER = ToolSpec(
    "get_weather",
    "The weather in a city",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
CLOCK = ToolSpec("get_time")  # no parameters
CALL = ToolCall("call_abc123", "get_weather", '{"city":"Paris"}')
CONVERSATION = (
    Message("system", "Be brief."),
    Message("user", "Weather in Paris and Rome?"),
    Message("assistant", "Checking.", tool_calls=(CALL, ToolCall("call_def", "get_time", "{}"))),
    Message("tool", "18 C", tool_call_id="call_abc123", name="get_weather"),
    Message("tool", "clock broken", tool_call_id="call_def", is_error=True),
    Message("user", "And tomorrow?"),
)


def request(
    *messages: Message,
    stream: bool = False,
    choice: ToolChoice | None = None,
    parallel: bool | None = None,
) -> GenerationRequest:
    return GenerationRequest(
        "req-1",
        messages=messages or (Message("user", "Weather in Paris?"),),
        stream=stream,
        tools=(WEATHER, CLOCK),
        tool_choice=choice or ToolChoice(),
        parallel_tool_calls=parallel,
    )


def run(make: Any, upstream: Upstream, generation_request: GenerationRequest) -> Completion:
    async def scenario() -> Completion:
        async with mock_client(upstream) as client:
            provider: CloudProvider = make(client)
            return await provider.complete(generation_request)

    return asyncio.run(scenario())


def events_of(make: Any, upstream: Upstream, generation_request: GenerationRequest) -> list[Any]:
    async def scenario() -> list[GenerationEvent]:
        async with mock_client(upstream) as client:
            generation = await make(client).start(generation_request)
            return [event async for event in generation]

    return asyncio.run(scenario())


# -- OpenAI ------------------------------------------------------------------------------------


def test_openai_gets_tools_choice_and_the_tool_turns_in_its_format() -> None:
    upstream = Upstream(json_response(openai_completion("Sunny.")))
    run(openai, upstream, request(*CONVERSATION, choice=ToolChoice("named", "get_weather")))
    body = upstream.body()
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "The weather in a city",
                "parameters": WEATHER.parameters,
            },
        },
        {"type": "function", "function": {"name": "get_time"}},
    ]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert "parallel_tool_calls" not in body
    assert body["messages"][2:5] == [
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {
                    "id": "call_abc123",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                },
                {
                    "id": "call_def",
                    "type": "function",
                    "function": {"name": "get_time", "arguments": "{}"},
                },
            ],
        },
        {"role": "tool", "content": "18 C", "tool_call_id": "call_abc123"},
        {"role": "tool", "content": "Error: clock broken", "tool_call_id": "call_def"},
    ]


@pytest.mark.parametrize(
    ("choice", "parallel", "sent"),
    [
        (ToolChoice("required"), False, {"tool_choice": "required", "parallel_tool_calls": False}),
        (ToolChoice("none"), None, {"tool_choice": "none"}),
        (ToolChoice(), True, {"parallel_tool_calls": True}),
    ],
)
def test_openai_tool_choice_and_parallel_calls(
    choice: ToolChoice, parallel: bool | None, sent: dict[str, Any]
) -> None:
    upstream = Upstream(json_response(openai_completion("ok")))
    run(openai, upstream, request(choice=choice, parallel=parallel))
    body = upstream.body()
    assert {k: body[k] for k in ("tool_choice", "parallel_tool_calls") if k in body} == sent


def test_an_assistant_turn_of_calls_only_has_null_content() -> None:
    upstream = Upstream(json_response(openai_completion("ok")))
    turn = Message("assistant", "", tool_calls=(CALL,))
    run(
        openai,
        upstream,
        request(Message("user", "hi"), turn, Message("tool", "18", tool_call_id=CALL.id)),
    )
    assert upstream.body()["messages"][1]["content"] is None


def openai_tool_answer(*calls: dict[str, Any], finish: str = "tool_calls") -> dict[str, Any]:
    answer = openai_completion("", finish=finish)
    answer["choices"][0]["message"].update(content=None, tool_calls=list(calls))
    return answer


def test_openai_whole_answer_with_tool_calls() -> None:
    upstream = Upstream(
        json_response(
            openai_tool_answer(
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                },
                {"type": "function", "function": {"name": "get_time", "arguments": "{}"}},
            )
        )
    )
    completion = run(openai, upstream, request())
    assert completion.text == ""
    assert completion.done.finish_reason == "tool_calls"
    first, second = completion.tool_calls
    assert first == ToolCall("call_1", "get_weather", '{"city":"Paris"}')
    assert second.name == "get_time" and second.id.startswith("call_")  # invented: none sent


def test_a_compatible_server_that_says_stop_after_calls_ends_with_tool_calls() -> None:
    call = {"id": "c", "type": "function", "function": {"name": "get_time", "arguments": {}}}
    upstream = Upstream(json_response(openai_tool_answer(call, finish="stop")))
    completion = run(openai, upstream, request())
    assert completion.done.finish_reason == "tool_calls"
    assert completion.tool_calls == (ToolCall("c", "get_time", "{}"),)  # an object, as text


def test_a_tool_call_without_a_name_is_a_protocol_error() -> None:
    bad = openai_tool_answer({"id": "c", "type": "function", "function": {"arguments": "{}"}})
    upstream = Upstream(*[json_response(bad)] * 3)
    with pytest.raises(ProviderProtocolError, match="no function name"):
        run(openai, upstream, request())


def stream_body(*deltas: dict[str, Any], finish: str = "tool_calls") -> bytes:
    events = [openai_chunk({"role": "assistant", "content": None, "refusal": None})]
    events += [openai_chunk(delta) for delta in deltas]
    events += [openai_chunk({}, finish=finish), b"data: [DONE]\n\n"]
    return b"".join(events)


def announce(index: int, call_id: str, name: str) -> dict[str, Any]:
    return {
        "tool_calls": [
            {
                "index": index,
                "id": call_id,
                "type": "function",
                "function": {"name": name, "arguments": ""},
            }
        ]
    }


def arguments(index: int, piece: str) -> dict[str, Any]:
    return {"tool_calls": [{"index": index, "function": {"arguments": piece}}]}


def test_openai_streamed_calls_arrive_as_deltas_and_assemble() -> None:
    body = stream_body(
        announce(0, "call_1", "get_weather"),
        arguments(0, '{"ci'),
        arguments(0, 'ty":"Paris"}'),
        announce(1, "call_2", "get_time"),
        arguments(1, "{}"),
    )
    events = events_of(openai, Upstream(sse_response(body)), request(stream=True))
    deltas = [event for event in events if isinstance(event, ToolCallDelta)]
    assert deltas[0] == ToolCallDelta(0, "call_1", "get_weather", "")
    assert deltas[1] == ToolCallDelta(0, arguments='{"ci')
    assert events[-1].finish_reason == "tool_calls"
    completion = run(openai, Upstream(sse_response(body)), request(stream=True))
    assert completion.tool_calls == (
        ToolCall("call_1", "get_weather", '{"city":"Paris"}'),
        ToolCall("call_2", "get_time", "{}"),
    )


def test_a_server_that_numbers_every_call_zero_still_yields_separate_calls() -> None:
    body = stream_body(
        announce(0, "call_1", "get_weather"),
        arguments(0, '{"city":"Rome"}'),
        announce(0, "call_2", "get_weather"),
        arguments(0, '{"city":"Oslo"}'),
    )
    completion = run(openai, Upstream(sse_response(body)), request(stream=True))
    assert [(c.id, json.loads(c.arguments)["city"]) for c in completion.tool_calls] == [
        ("call_1", "Rome"),
        ("call_2", "Oslo"),
    ]


# -- Anthropic ---------------------------------------------------------------------------------


def test_anthropic_gets_tools_choice_and_the_tool_turns_as_blocks() -> None:
    upstream = Upstream(json_response(anthropic_message("Sunny.")))
    run(anthropic, upstream, request(*CONVERSATION, choice=ToolChoice("required"), parallel=False))
    body = upstream.body()
    assert body["tools"] == [
        {
            "name": "get_weather",
            "description": "The weather in a city",
            "input_schema": WEATHER.parameters,
        },
        {"name": "get_time", "input_schema": {"type": "object", "properties": {}}},
    ]
    assert body["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert body["system"] == "Be brief."
    assert body["messages"][1:] == [
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking."},
                {
                    "type": "tool_use",
                    "id": "call_abc123",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
                {"type": "tool_use", "id": "call_def", "name": "get_time", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "call_abc123", "content": "18 C"},
                {
                    "type": "tool_result",
                    "tool_use_id": "call_def",
                    "content": "clock broken",
                    "is_error": True,
                },
                {"type": "text", "text": "And tomorrow?"},
            ],
        },
    ]


@pytest.mark.parametrize(
    ("choice", "sent"),
    [
        (ToolChoice(), None),
        (ToolChoice("none"), {"type": "none"}),
        (ToolChoice("named", "get_time"), {"type": "tool", "name": "get_time"}),
    ],
)
def test_anthropic_tool_choice(choice: ToolChoice, sent: dict[str, Any] | None) -> None:
    upstream = Upstream(json_response(anthropic_message("ok")))
    run(anthropic, upstream, request(choice=choice))
    assert upstream.body().get("tool_choice") == sent


def test_arguments_that_are_not_an_object_cannot_go_to_anthropic() -> None:
    broken = Message("assistant", "", tool_calls=(ToolCall("c1", "get_time", "not json"),))
    with pytest.raises(InvalidRequestError, match="not a JSON object"):
        run(anthropic, Upstream(), request(Message("user", "hi"), broken))


def test_anthropic_whole_answer_with_tool_use_blocks() -> None:
    message = anthropic_message("Let me look.", stop_reason="tool_use")
    message["content"].append(
        {"type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {"city": "Paris"}}
    )
    completion = run(anthropic, Upstream(json_response(message)), request())
    assert completion.text == "Let me look."
    assert completion.tool_calls == (ToolCall("toolu_01A", "get_weather", '{"city":"Paris"}'),)
    assert completion.done.finish_reason == "tool_calls"


def tool_use_events(index: int, call_id: str, name: str, *partials: str) -> list[bytes]:
    block = {"type": "tool_use", "id": call_id, "name": name, "input": {}}
    events = [anthropic_event("content_block_start", {"index": index, "content_block": block})]
    events += [
        anthropic_event(
            "content_block_delta",
            {"index": index, "delta": {"type": "input_json_delta", "partial_json": partial}},
        )
        for partial in partials
    ]
    return [*events, anthropic_event("content_block_stop", {"index": index})]


def test_anthropic_streamed_tool_use_becomes_deltas_and_assembles() -> None:
    body = b"".join(
        [
            anthropic_start(),
            *anthropic_text("Checking."),
            *tool_use_events(1, "toolu_01A", "get_weather", "", '{"city": ', '"Paris"}'),
            *tool_use_events(2, "toolu_01B", "get_time", ""),
            *anthropic_end(stop_reason="tool_use"),
        ]
    )
    events = events_of(anthropic, Upstream(sse_response(body)), request(stream=True))
    deltas = [event for event in events if isinstance(event, ToolCallDelta)]
    assert deltas[0] == ToolCallDelta(0, "toolu_01A", "get_weather", "")
    assert deltas[1] == ToolCallDelta(0, arguments='{"city": ')
    completion = run(anthropic, Upstream(sse_response(body)), request(stream=True))
    assert completion.text == "Checking."
    assert completion.tool_calls == (
        ToolCall("toolu_01A", "get_weather", '{"city": "Paris"}'),
        ToolCall("toolu_01B", "get_time", "{}"),  # no input arrived: an empty object
    )
    assert completion.done.finish_reason == "tool_calls"
