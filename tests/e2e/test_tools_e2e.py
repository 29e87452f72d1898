"""Tool calls end to end over real HTTP: both official SDKs -> hybrid (uvicorn on loopback) ->
the fake cloud speaking OpenAI's and Anthropic's wire formats, streamed and not, with the second
turn sending the tool's result back.

The local model here reads text only, so a request with tools escalates on the capability
policy (``capability:tools``); the SDKs' own stream helpers assemble the calls, which proves the
framing.  The fake cloud refuses tool turns the real APIs refuse, so a translation that loses a
call id or a result fails here.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import openai
import pytest
from fake_cloud import FakeCloud
from fake_cloud_tools import ScriptedCall, ToolScript
from live_app import serving
from scripted import scripted_app
from server_process import RunningServer

from hybrid.settings import load_settings

WEATHER = {"city": "Paris"}
OPENAI_TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]
ANTHROPIC_TOOLS: list[Any] = [
    {
        "name": "get_weather",
        "description": "The weather in a city",
        "input_schema": OPENAI_TOOLS[0]["function"]["parameters"],
    }
]
ASK: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]
# Which upstream each model name reaches, and the id style its calls carry (passed through).
UPSTREAMS = {"hybrid": ("openai", "call_"), "claude-haiku-4-5": ("anthropic", "toolu_")}


@pytest.fixture(scope="module")
def cloud() -> Iterator[FakeCloud]:
    with FakeCloud(reply="It is 18 degrees and sunny in Paris.") as fake:
        yield fake


@pytest.fixture
def fake(cloud: FakeCloud) -> FakeCloud:
    cloud.reset()
    cloud.tools = ToolScript((ScriptedCall("get_weather", WEATHER),))
    return cloud


@pytest.fixture(scope="module")
def hybrid_url(cloud: FakeCloud, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    environ = {
        "HYBRID_HOME": str(tmp_path_factory.mktemp("home")),
        **cloud.provider_env(),
    }
    cli = {"probe.measure_bandwidth": False}
    settings = load_settings(environ=environ, dotenv_file=None, cli=cli).settings
    with serving(scripted_app(settings)) as base_url:
        yield base_url


@pytest.fixture
def openai_api(hybrid_url: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{hybrid_url}/v1", api_key="unused", max_retries=0) as client:
        yield client


@pytest.fixture
def anthropic_api(hybrid_url: str) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=hybrid_url, api_key="unused", max_retries=0) as client:
        yield client


def last_body(fake: FakeCloud, api: str) -> dict[str, Any]:
    sent = fake.requests[-1]
    assert sent.api == api and sent.body is not None
    return sent.body


def assert_result_reached(fake: FakeCloud, api: str, call_id: str) -> None:
    """The second turn arrived upstream with the result answering that call, in its format."""
    body = last_body(fake, api)
    if api == "openai":
        assert body["messages"][-1] == {"role": "tool", "content": "18 C", "tool_call_id": call_id}
        assert body["messages"][-2]["tool_calls"][0]["id"] == call_id
    else:
        (result,) = body["messages"][-1]["content"]
        assert result == {"type": "tool_result", "tool_use_id": call_id, "content": "18 C"}
        assert body["messages"][-2]["content"][0]["id"] == call_id


@pytest.mark.parametrize("model", list(UPSTREAMS))
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_openai_sdk_calls_a_tool_through_hybrid_and_sends_the_result_back(
    openai_api: openai.OpenAI, fake: FakeCloud, model: str, stream: bool
) -> None:
    upstream, id_prefix = UPSTREAMS[model]
    if stream:
        with openai_api.chat.completions.stream(
            model=model, messages=ASK, tools=OPENAI_TOOLS
        ) as events:
            first = events.get_final_completion()
    else:
        raw = openai_api.chat.completions.with_raw_response.create(
            model=model, messages=ASK, tools=OPENAI_TOOLS
        )
        assert raw.headers["x-hybrid-route"] == "cloud"
        assert raw.headers["x-hybrid-reason"] == "capability:tools"
        first = raw.parse()
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls or []
    assert call.id.startswith(id_prefix)
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    assert json.loads(call.function.arguments) == WEATHER  # type: ignore[union-attr]
    assert last_body(fake, upstream)["tools"]  # the tools went upstream

    second = openai_api.chat.completions.create(
        model=model,
        tools=OPENAI_TOOLS,
        stream=False,
        messages=[
            *ASK,
            choice.message.model_dump(exclude_none=True, exclude={"parsed"}),  # type: ignore[list-item]
            {"role": "tool", "tool_call_id": call.id, "content": "18 C"},
        ],
    )
    assert second.choices[0].message.content == fake.reply
    assert second.choices[0].finish_reason == "stop"
    assert_result_reached(fake, upstream, call.id)


@pytest.mark.parametrize("model", list(UPSTREAMS))
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_anthropic_sdk_calls_a_tool_through_hybrid_and_sends_the_result_back(
    anthropic_api: anthropic.Anthropic, fake: FakeCloud, model: str, stream: bool
) -> None:
    upstream, id_prefix = UPSTREAMS[model]
    if stream:
        with anthropic_api.messages.stream(
            model=model, max_tokens=200, messages=ASK, tools=ANTHROPIC_TOOLS
        ) as events:
            first = events.get_final_message()
    else:
        first = anthropic_api.messages.create(
            model=model, max_tokens=200, messages=ASK, tools=ANTHROPIC_TOOLS
        )
    assert first.stop_reason == "tool_use"
    (use,) = [block for block in first.content if block.type == "tool_use"]
    assert use.id.startswith(id_prefix)
    assert (use.name, use.input) == ("get_weather", WEATHER)

    second = anthropic_api.messages.create(
        model=model,
        max_tokens=200,
        tools=ANTHROPIC_TOOLS,
        messages=[
            *ASK,
            {"role": "assistant", "content": first.content},  # type: ignore[typeddict-item]
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "18 C"}],
            },
        ],
    )
    assert second.stop_reason == "end_turn"
    assert second.content[0].text == fake.reply  # type: ignore[union-attr]
    assert_result_reached(fake, upstream, use.id)


def test_a_tool_call_with_text_before_it_keeps_both_across_apis(
    anthropic_api: anthropic.Anthropic, fake: FakeCloud
) -> None:
    fake.tools = ToolScript((ScriptedCall("get_weather", WEATHER),), text="Let me look that up.")
    # Anthropic's SDK, hybrid, OpenAI upstream: the text block comes first, then the call.
    with anthropic_api.messages.stream(
        model="hybrid", max_tokens=200, messages=ASK, tools=ANTHROPIC_TOOLS
    ) as events:
        final = events.get_final_message()
    assert [block.type for block in final.content] == ["text", "tool_use"]
    assert final.content[0].text == "Let me look that up."  # type: ignore[union-attr]


@pytest.mark.slow
def test_the_real_server_sends_tools_to_the_cloud_and_refuses_them_locally(
    start_server: Callable[..., RunningServer], fake: FakeCloud
) -> None:
    """``hybrid serve`` on the embedded model, which has no chat template and so no tools."""
    env = {
        "OPENAI_API_KEY": fake.openai_key,
        "OPENAI_BASE_URL": f"{fake.base_url}/v1",
    }
    running = start_server("--ctx", "1024", env=env)
    try:
        with openai.OpenAI(
            base_url=f"{running.base_url}/v1", api_key="unused", max_retries=0
        ) as api:
            raw = api.chat.completions.with_raw_response.create(
                model="hybrid", messages=ASK, tools=OPENAI_TOOLS
            )
            assert raw.headers["x-hybrid-route"] == "cloud"
            assert raw.headers["x-hybrid-reason"] == "capability:tools"
            (call,) = raw.parse().choices[0].message.tool_calls or []
            assert json.loads(call.function.arguments) == WEATHER  # type: ignore[union-attr]
            with pytest.raises(openai.BadRequestError, match="cannot call tools"):
                api.chat.completions.create(model="local", messages=ASK, tools=OPENAI_TOOLS)
    finally:
        assert running.stop() == 0, running.log.read_text()
