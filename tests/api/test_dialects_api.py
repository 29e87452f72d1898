"""Requests and answers that cross from one API's dialect to a provider's and back, over HTTP in
front of the fake cloud: what each provider is sent (Structured Outputs, turns Anthropic takes,
prompt-cache markers) and what each client gets back (refusals, message_start's counts)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
from anthropic.types import MessageParam, TextBlockParam, ToolParam
from fake_cloud import FakeCloud, PromptCache, Received
from fastapi.testclient import TestClient
from pydantic import BaseModel
from scripted import ScriptedBackend, scripted_app
from tool_scripted import anthropic_sdk, openai_sdk

from hybrid.backend import Generation
from hybrid.generation import GenerationRequest
from hybrid.settings import load_settings

TO_CLOUD = {"X-Hybrid-Route": "cloud"}
REFUSAL = "I'm sorry, I can't help with that."
EPHEMERAL = {"type": "ephemeral"}


class CountingBackend(ScriptedBackend):
    """The scripted local model, whose generations know their prompt's length up front as the
    real local model's do (``LocalGeneration.prompt_tokens``)."""

    async def start(
        self, request: GenerationRequest, *, prepared: Any = None, running: Any = None
    ) -> Generation:
        generation = await super().start(request, prepared=prepared, running=running)
        generation.prompt_tokens = 7  # type: ignore[attr-defined]
        return generation


@pytest.fixture
def backend() -> CountingBackend:
    return CountingBackend()


@pytest.fixture
def client(tmp_path: Path, cloud: FakeCloud, backend: CountingBackend) -> Iterator[TestClient]:
    environ = {"HYBRID_HOME": str(tmp_path / "home"), **cloud.provider_env()}
    cli = {"probe.measure_bandwidth": False}
    settings = load_settings(environ=environ, dotenv_file=None, cli=cli).settings
    with TestClient(scripted_app(settings, backend)) as test_client:
        yield test_client


@pytest.fixture
def to_openai(client: TestClient) -> openai.OpenAI:
    return openai_sdk(client).with_options(default_headers=TO_CLOUD)


@pytest.fixture
def to_anthropic(client: TestClient) -> anthropic.Anthropic:
    return anthropic_sdk(client).with_options(default_headers=TO_CLOUD)


def only_request(cloud: FakeCloud) -> Received:
    [sent] = cloud.requests
    assert sent.body is not None
    return sent


def sse_data(text: str, name: str) -> list[dict[str, Any]]:
    """The data of every ``event: name`` of an Anthropic stream."""
    found = []
    for block in text.split("\n\n"):
        lines = block.splitlines()
        if lines and lines[0] == f"event: {name}":
            found.append(json.loads(lines[1].removeprefix("data: ")))
    return found


# --- Structured Outputs ------------------------------------------------------------------------


class Invoice(BaseModel):
    total: float


def test_structured_outputs_reach_openai_with_their_name_description_and_strict(
    client: TestClient, cloud: FakeCloud
) -> None:
    asked = {
        "type": "json_schema",
        "json_schema": {
            "name": "invoice",
            "description": "an invoice extracted from the text",
            "strict": True,
            "schema": Invoice.model_json_schema(),
        },
    }
    response = client.post(
        "/v1/chat/completions",
        headers=TO_CLOUD,
        json={"model": "gpt-4.1-mini", "messages": [{"role": "user", "content": "3 at $2"}]}
        | {"response_format": asked},
    )
    assert response.status_code == 200, response.text
    assert only_request(cloud).body["response_format"] == asked  # type: ignore[index]


# --- refusals ----------------------------------------------------------------------------------


def test_an_openai_refusal_reaches_an_openai_client_as_its_refusal(
    to_openai: openai.OpenAI, cloud: FakeCloud
) -> None:
    cloud.refusal = REFUSAL
    ask: dict[str, Any] = {
        "model": "gpt-4.1-mini",
        "messages": [{"role": "user", "content": "extract"}],
        "response_format": Invoice,
    }

    parsed = to_openai.chat.completions.parse(**ask)
    with to_openai.chat.completions.stream(**ask) as stream:
        streamed = stream.get_final_completion()
    for completion in (parsed, streamed):
        choice = completion.choices[0]
        assert choice.finish_reason == "stop"
        assert choice.message.refusal == REFUSAL
        assert choice.message.content in (None, "")  # never the refusal passed off as JSON
        assert choice.message.parsed is None


def test_an_openai_refusal_reaches_an_anthropic_client_as_stop_reason_refusal(
    to_anthropic: anthropic.Anthropic, cloud: FakeCloud
) -> None:
    cloud.refusal = REFUSAL
    ask: dict[str, Any] = {
        "model": "gpt-4.1-mini",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "extract"}],
    }

    whole = to_anthropic.messages.create(**ask)
    with to_anthropic.messages.stream(**ask) as stream:
        streamed = stream.get_final_message()
    for message in (whole, streamed):
        assert message.stop_reason == "refusal"
        assert [(block.type, getattr(block, "text", None)) for block in message.content] == [
            ("text", REFUSAL)
        ]


# --- turns Anthropic takes ---------------------------------------------------------------------


def test_a_system_only_conversation_reaches_anthropic_as_the_users_turn(
    client: TestClient, cloud: FakeCloud
) -> None:
    response = client.post(
        "/v1/chat/completions",
        headers=TO_CLOUD,
        json={
            "model": "claude-sonnet-5-5",
            "messages": [{"role": "system", "content": "Write a haiku about autumn."}],
        },
    )
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == cloud.reply
    body = only_request(cloud).body
    assert body is not None and "system" not in body
    assert body["messages"] == [{"role": "user", "content": "Write a haiku about autumn."}]


def test_an_empty_assistant_turn_is_left_out_of_an_anthropic_request(
    client: TestClient, cloud: FakeCloud
) -> None:
    # What hybrid's own OpenAI answer holds when the model wrote nothing, sent back.
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Say nothing."},
        {"role": "assistant", "content": ""},
        {"role": "user", "content": "Now say hi."},
        {"role": "assistant", "content": None},
    ]
    response = client.post(
        "/v1/chat/completions",
        headers=TO_CLOUD,
        json={"model": "claude-sonnet-5-5", "messages": messages},
    )
    assert response.status_code == 200, response.text
    body = only_request(cloud).body
    assert body is not None and body["system"] == "Be brief."
    assert body["messages"] == [{"role": "user", "content": "Say nothing.\n\nNow say hi."}]


# --- message_start's counts --------------------------------------------------------------------


def test_message_start_has_the_prompt_counts_anthropic_sent_in_its_own(
    client: TestClient, cloud: FakeCloud
) -> None:
    cloud.prompt_cache = PromptCache(read=1200, write=300)
    response = client.post(
        "/v1/messages",
        headers=TO_CLOUD,
        json={
            "model": "claude-sonnet-5-5",
            "max_tokens": 50,
            "stream": True,
            "messages": [{"role": "user", "content": "one two three four five six seven eight"}],
        },
    )
    assert response.status_code == 200, response.text
    [start] = sse_data(response.text, "message_start")
    [delta] = sse_data(response.text, "message_delta")
    counts = {
        "input_tokens": 8,
        "cache_creation_input_tokens": 300,
        "cache_read_input_tokens": 1200,
    }
    assert start["message"]["usage"] == counts | {"output_tokens": 0}
    assert delta["usage"] == counts | {"output_tokens": 5}


def test_message_start_has_the_local_models_prompt_length(client: TestClient) -> None:
    response = client.post(
        "/v1/messages",
        headers={"X-Hybrid-Route": "local"},
        json={
            "model": "local",
            "max_tokens": 50,
            "stream": True,
            "messages": [{"role": "user", "content": "hi"}],
        },
    )
    assert response.status_code == 200, response.text
    [start] = sse_data(response.text, "message_start")
    assert start["message"]["usage"]["input_tokens"] == 7


# --- prompt-cache markers ----------------------------------------------------------------------

SYSTEM: list[TextBlockParam] = [
    {"type": "text", "text": "You are a code assistant."},
    {"type": "text", "text": "Long project context. " * 50, "cache_control": EPHEMERAL},
]
TOOLS: list[ToolParam] = [
    {
        "name": "read_file",
        "description": "read a file",
        "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}},
        "cache_control": EPHEMERAL,
    }
]
CONVERSATION: list[MessageParam] = [
    {"role": "user", "content": [{"type": "text", "text": "Summarise main.py"}]},
    {
        "role": "assistant",
        "content": [
            {"type": "text", "text": "Reading it."},
            {
                "type": "tool_use",
                "id": "toolu_1",
                "name": "read_file",
                "input": {"path": "main.py"},
                "cache_control": EPHEMERAL,
            },
        ],
    },
    {
        "role": "user",
        "content": [
            {
                "type": "tool_result",
                "tool_use_id": "toolu_1",
                "content": "print('hi')",
                "cache_control": EPHEMERAL,
            }
        ],
    },
]


def test_an_anthropic_clients_cache_markers_reach_anthropic_where_it_put_them(
    to_anthropic: anthropic.Anthropic, cloud: FakeCloud
) -> None:
    to_anthropic.messages.create(
        model="claude-sonnet-5-5",
        max_tokens=100,
        system=SYSTEM,
        tools=TOOLS,
        messages=CONVERSATION,
        cache_control={"type": "ephemeral", "ttl": "1h"},
    )
    body = only_request(cloud).body
    assert body is not None
    assert body["system"] == SYSTEM
    assert body["tools"][0]["cache_control"] == EPHEMERAL
    assert body["messages"][1]["content"][1]["cache_control"] == EPHEMERAL
    assert body["messages"][2]["content"][0]["cache_control"] == EPHEMERAL
    assert body["cache_control"] == {"type": "ephemeral", "ttl": "1h"}


def test_a_cache_marker_on_a_text_block_keeps_its_place_among_the_blocks(
    to_anthropic: anthropic.Anthropic, cloud: FakeCloud
) -> None:
    blocks: list[TextBlockParam] = [
        {"type": "text", "text": "A long document. " * 20, "cache_control": EPHEMERAL},
        {"type": "text", "text": "What is it about?"},
    ]
    to_anthropic.messages.create(
        model="claude-sonnet-5-5", max_tokens=100, messages=[{"role": "user", "content": blocks}]
    )
    body = only_request(cloud).body
    assert body is not None and body["messages"] == [{"role": "user", "content": blocks}]


def test_cache_markers_are_left_out_for_openai_and_the_local_model(
    to_anthropic: anthropic.Anthropic,
    cloud: FakeCloud,
    client: TestClient,
    backend: CountingBackend,
) -> None:
    system = "You are a code assistant.\n\n" + "Long project context. " * 50
    ask: dict[str, Any] = {
        "max_tokens": 100,
        "system": SYSTEM,
        "messages": [
            {
                "role": "user",
                "content": [{"type": "text", "text": "Hi", "cache_control": EPHEMERAL}],
            }
        ],
        "cache_control": EPHEMERAL,
    }
    to_anthropic.messages.create(model="gpt-4.1-mini", **ask)
    to_anthropic.messages.create(
        model="gpt-4.1-mini", max_tokens=100, system=SYSTEM, tools=TOOLS, messages=CONVERSATION
    )
    image: MessageParam = {
        "role": "user",
        "content": [
            {
                "type": "image",
                "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
                "cache_control": EPHEMERAL,
            },
            {"type": "text", "text": "What is this?"},
        ],
    }
    to_anthropic.messages.create(model="gpt-4.1-mini", max_tokens=100, messages=[image])
    plain, with_tools, with_image = (sent.body for sent in cloud.requests)
    assert "cache_control" not in json.dumps([plain, with_tools, with_image])
    assert with_image is not None and with_image["messages"][0]["content"][0] == {
        "type": "image_url",
        "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="},
    }
    assert plain is not None and plain["messages"] == [
        {"role": "system", "content": system},
        {"role": "user", "content": "Hi"},
    ]

    local = anthropic_sdk(client).with_options(default_headers={"X-Hybrid-Route": "local"})
    message = local.messages.create(model="local", **ask)
    assert message.content[0].type == "text" and message.content[0].text == "Hello world"
    [read] = backend.requests
    assert [(m.role, m.content) for m in read.messages] == [("system", system), ("user", "Hi")]


def test_top_k_reaches_anthropic_and_the_local_model(
    to_anthropic: anthropic.Anthropic,
    client: TestClient,
    cloud: FakeCloud,
    backend: CountingBackend,
) -> None:
    ask: list[MessageParam] = [{"role": "user", "content": "Hi"}]
    to_anthropic.messages.create(
        model="claude-sonnet-5-5", max_tokens=16, messages=ask, extra_body={"top_k": 1}
    )
    assert only_request(cloud).body["top_k"] == 1  # type: ignore[index]
    local = anthropic_sdk(client).with_options(default_headers={"X-Hybrid-Route": "local"})
    local.messages.create(model="local", max_tokens=16, messages=ask, extra_body={"top_k": 3})
    assert backend.requests[-1].params.top_k == 3


def test_an_openai_clients_top_k_reaches_anthropic_and_the_local_model_not_openai(
    client: TestClient, cloud: FakeCloud, backend: CountingBackend
) -> None:
    ask = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 16, "top_k": 2}
    for model in ("claude-sonnet-5-5", "gpt-4.1-mini"):
        response = client.post(
            "/v1/chat/completions", headers=TO_CLOUD, json={"model": model, **ask}
        )
        assert response.status_code == 200, response.text
    to_anthropic, to_openai = (sent.body for sent in cloud.requests)
    assert to_anthropic is not None and to_anthropic["top_k"] == 2
    assert to_openai is not None and "top_k" not in to_openai  # OpenAI's API has none
    local = client.post(
        "/v1/chat/completions",
        headers={"X-Hybrid-Route": "local"},
        json={"model": "local", **ask, "top_k": 0},
    )
    assert local.status_code == 200, local.text
    assert backend.requests[-1].params.top_k == 0
    bad = client.post("/v1/chat/completions", json={"model": "local", **ask, "top_k": -1})
    assert bad.status_code == 400 and "top_k" in bad.text
