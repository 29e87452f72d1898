"""Requests with tools: the capability policy reads what the local backend supports, so tools go
to the cloud only when the local model cannot call them."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from hybrid.backend import Generation, ReplayGeneration
from hybrid.errors import InvalidRequestError, NoRouteError, ProviderUnavailableError
from hybrid.generation import (
    GenerationDone,
    GenerationRequest,
    Message,
    TextDelta,
    TokenLogprob,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    ToolSpec,
    Usage,
    tool_needs,
)
from hybrid.local.preparation import unsupported_error
from hybrid.local.speed import SpeedMeter
from hybrid.routing import cascade
from hybrid.routing.chain import build_router
from hybrid.routing.dispatcher import Dispatcher
from hybrid.routing.names import ModelNames, ProviderModels
from hybrid.settings.routing import RoutingSettings

TOOLS = (ToolSpec("get_weather", None, {"type": "object"}),)


def with_tools(choice: ToolChoice | None = None) -> GenerationRequest:
    choice = choice or ToolChoice()
    return GenerationRequest(
        "r1",
        messages=(Message("user", "Weather in Paris?"),),
        tools=TOOLS,
        tool_choice=choice,
        needs=tool_needs(TOOLS, choice),
    )


def answer() -> Generation:
    return ReplayGeneration([TextDelta("ok"), GenerationDone("stop", Usage(1, 1))])


class Local:
    """A ready local model that supports what it is told, and refuses the rest as the real
    backend does."""

    model_id = "local-model"
    context_length = 8192
    queue = SimpleNamespace(depth=0, slots=1, running=0, expected_wait_s=lambda: 0.0)
    speed = SpeedMeter()
    state = "ready"
    embedding_size = 4

    def __init__(self, supports: frozenset[str]) -> None:
        self.supports = supports
        self.started = 0

    def backend(self) -> Local:
        return self

    async def prepare(self, request: GenerationRequest) -> Any:
        if request.needs - self.supports:
            raise unsupported_error(request.needs - self.supports)
        return SimpleNamespace(tokens=[0] * 10, max_tokens=100)

    async def start(self, request: GenerationRequest, *, prepared: Any = None) -> Generation:
        await self.prepare(request)
        self.started += 1
        return answer()

    async def prompt_embedding(self, request: GenerationRequest, *, prepared: Any = None) -> Any:
        raise AssertionError("no probe in these tests: the model stage never asks")

    def release_hand_off(self) -> None:
        raise AssertionError("no probe in these tests: nothing to release")


class Cloud:
    name = "openai"

    def __init__(self) -> None:
        self.requests: list[GenerationRequest] = []

    async def start(self, request: GenerationRequest) -> Generation:
        self.requests.append(request)
        return answer()


def dispatcher(local: Local, cloud: Cloud) -> Dispatcher:
    names = ModelNames([ProviderModels("openai", ("gpt-4.1-mini",), usable=True)], None)
    return Dispatcher(
        local,
        {"openai": cloud},  # type: ignore[dict-item]
        names,
        router=build_router(RoutingSettings()),
    )


def start(local: Local, cloud: Cloud, request: GenerationRequest, **kwargs: Any) -> Any:
    return asyncio.run(dispatcher(local, cloud).start(request, model="hybrid", **kwargs))


def test_tools_go_to_the_cloud_when_the_local_model_cannot_call_them() -> None:
    local, cloud = Local(frozenset()), Cloud()
    routed = start(local, cloud, with_tools())
    assert (routed.route, routed.reason) == ("cloud", "capability:tools")
    assert cloud.requests[0].tools == TOOLS and local.started == 0


def test_tools_stay_local_when_its_template_supports_them() -> None:
    local, cloud = Local(frozenset({"tools"})), Cloud()
    routed = start(local, cloud, with_tools())
    assert routed.route == "local" and local.started == 1 and cloud.requests == []


def test_tools_the_model_must_not_call_need_no_tool_support() -> None:
    local, cloud = Local(frozenset()), Cloud()
    routed = start(local, cloud, with_tools(ToolChoice("none")))
    assert routed.route == "local" and cloud.requests == []


def test_an_explicit_local_route_with_tools_is_refused_with_the_way_out() -> None:
    with pytest.raises(InvalidRequestError, match="cannot call tools") as caught:
        start(Local(frozenset()), Cloud(), with_tools(), override="local")
    assert "X-Hybrid-Route: cloud" in str(caught.value)


def test_private_data_in_tool_call_arguments_keeps_the_request_on_this_machine() -> None:
    local, cloud = Local(frozenset({"tools"})), Cloud()
    history = (
        Message("user", "Email my landlord"),
        Message(
            "assistant",
            "",
            tool_calls=(ToolCall("call_1", "send_mail", '{"to": "jane.doe@example.com"}'),),
        ),
        Message("tool", "sent", tool_call_id="call_1"),
    )
    request = GenerationRequest(
        "r2", messages=history, tools=TOOLS, needs=tool_needs(TOOLS, ToolChoice())
    )
    routed = start(local, cloud, request, override="cloud")
    assert (routed.route, routed.reason) == ("local", "privacy:email")
    assert cloud.requests == []


def test_when_the_cloud_fails_and_the_local_model_cannot_call_tools_both_are_reported() -> None:
    class Down(Cloud):
        async def start(self, request: GenerationRequest) -> Generation:
            raise ProviderUnavailableError("openai", "could not connect to api.openai.com")

    with pytest.raises(NoRouteError) as caught:
        start(Local(frozenset()), Down(), with_tools())
    message = str(caught.value)
    assert "could not connect" in message and "cannot call tools" in message


def test_a_cascade_keeps_the_tool_calls_of_a_local_answer_it_keeps() -> None:
    events = [
        TextDelta("", (TokenLogprob("x", -0.01, (120,)),)),
        ToolCallDelta(0, "call_1", "get_weather", '{"city": "Paris"}'),
        GenerationDone("tool_calls", Usage(5, 3)),
    ]
    tried = asyncio.run(cascade.attempt(ReplayGeneration(events), keep_logprobs=False))
    assert tried.confidence > 0.98
    assert [e for e in tried.events if isinstance(e, ToolCallDelta)] == [events[1]]
    assert isinstance(tried.events[-1], GenerationDone)
    assert tried.events[-1].finish_reason == "tool_calls"
