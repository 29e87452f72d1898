"""Anthropic's extended thinking through ``/v1/messages``, with the real Anthropic SDK in front
of the fake cloud: the ``thinking`` setting and the thinking blocks of a conversation reach an
Anthropic upstream unchanged, its thinking blocks come back whole and streamed, and the local
model and OpenAI never see any of it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import pytest
from anthropic.types import Message, MessageParam, ToolParam
from fake_cloud import FakeCloud, ScriptedCall, Thinking, ToolScript, signature_of
from fake_cloud_faults import Fault
from fastapi.testclient import TestClient
from scripted import ScriptedBackend, scripted_app
from tool_scripted import anthropic_sdk

from hybrid.ledger.store import LedgerStore
from hybrid.settings import Settings, load_settings

TO_CLOUD = {"X-Hybrid-Route": "cloud"}
THINK = {"type": "enabled", "budget_tokens": 1024}
CLAUDE = "claude-sonnet-5-5"
TOOLS: list[ToolParam] = [
    {
        "name": "read_file",
        "description": "read a file",
        "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}},
    }
]
ASK: list[MessageParam] = [{"role": "user", "content": "Summarise main.py"}]


@pytest.fixture
def backend() -> ScriptedBackend:
    return ScriptedBackend()


@pytest.fixture
def settings(tmp_path: Path, cloud: FakeCloud) -> Settings:
    environ = {"HYBRID_HOME": str(tmp_path / "home"), **cloud.provider_env()}
    cli = {"probe.measure_bandwidth": False}
    return load_settings(environ=environ, dotenv_file=None, cli=cli).settings


@pytest.fixture
def client(settings: Settings, backend: ScriptedBackend) -> Iterator[TestClient]:
    with TestClient(scripted_app(settings, backend)) as test_client:
        yield test_client


@pytest.fixture
def to_anthropic(client: TestClient) -> anthropic.Anthropic:
    return anthropic_sdk(client).with_options(default_headers=TO_CLOUD)


def sent(cloud: FakeCloud) -> list[dict[str, Any]]:
    bodies = [received.body for received in cloud.requests]
    assert all(body is not None for body in bodies)
    return bodies  # type: ignore[return-value]


def blocks_of(message: Message) -> list[dict[str, Any]]:
    """A message's content as the params a client sends back in its next request."""
    return [block.model_dump(exclude_none=True) for block in message.content]


def both_ways(to_anthropic: anthropic.Anthropic, **ask: Any) -> tuple[Message, Message]:
    """The same request answered whole and streamed."""
    whole = to_anthropic.messages.create(**ask)
    with to_anthropic.messages.stream(**ask) as stream:
        streamed = stream.get_final_message()
    return whole, streamed


def sse(text: str) -> list[dict[str, Any]]:
    """The data of every event of an Anthropic stream, in order."""
    return [
        json.loads(line.removeprefix("data: "))
        for line in text.splitlines()
        if line.startswith("data: ")
    ]


# --- answers with thinking -----------------------------------------------------------------------


def test_thinking_reaches_anthropic_and_its_block_comes_back_whole_and_streamed(
    to_anthropic: anthropic.Anthropic, cloud: FakeCloud
) -> None:
    whole, streamed = both_ways(
        to_anthropic, model=CLAUDE, max_tokens=2048, thinking=THINK, messages=ASK
    )
    assert [body["thinking"] for body in sent(cloud)] == [THINK, THINK]
    thought = cloud.thinking.text
    for message in (whole, streamed):
        assert blocks_of(message) == [
            {"type": "thinking", "thinking": thought, "signature": signature_of(thought)},
            {"type": "text", "text": cloud.reply},
        ]
        # Thinking tokens are output tokens, as Anthropic counts them.
        assert message.usage.output_tokens == len(thought.split()) + len(cloud.reply.split())


def test_a_stream_frames_thinking_blocks_before_the_tool_use_blocks_in_order(
    client: TestClient, cloud: FakeCloud
) -> None:
    cloud.thinking = Thinking(text="I should read the file.", redacted="EncryptedThoughts==")
    cloud.tools = ToolScript(calls=(ScriptedCall("read_file", {"path": "main.py"}),))
    response = client.post(
        "/v1/messages",
        headers=TO_CLOUD,
        json={
            "model": CLAUDE,
            "max_tokens": 2048,
            "thinking": THINK,
            "tools": TOOLS,
            "messages": ASK,
            "stream": True,
        },
    )
    assert response.status_code == 200, response.text
    blocks = [
        (event["type"], event["index"], event.get("content_block", event.get("delta"))["type"])
        for event in sse(response.text)
        if event["type"] in ("content_block_start", "content_block_delta")
    ]
    thinking = [("content_block_delta", 0, "thinking_delta")] * 5
    assert blocks == [
        ("content_block_start", 0, "thinking"),
        *thinking,
        ("content_block_delta", 0, "signature_delta"),
        ("content_block_start", 1, "redacted_thinking"),
        ("content_block_start", 2, "tool_use"),
        *[("content_block_delta", 2, "input_json_delta")] * len(blocks[9:]),
    ]
    stops = [
        event["index"] for event in sse(response.text) if event["type"] == "content_block_stop"
    ]
    assert stops == [0, 1, 2]
    [redacted] = [
        event["content_block"]
        for event in sse(response.text)
        if event["type"] == "content_block_start" and event["index"] == 1
    ]
    assert redacted == {"type": "redacted_thinking", "data": "EncryptedThoughts=="}


def test_thinking_blocks_go_back_to_anthropic_unchanged_in_a_tool_loop(
    to_anthropic: anthropic.Anthropic, cloud: FakeCloud
) -> None:
    cloud.thinking = Thinking(text="I should read the file.", redacted="EncryptedThoughts==")
    cloud.tools = ToolScript(calls=(ScriptedCall("read_file", {"path": "main.py"}),))
    ask: dict[str, Any] = {"model": CLAUDE, "max_tokens": 2048, "thinking": THINK, "tools": TOOLS}
    whole, streamed = both_ways(to_anthropic, **ask, messages=ASK)
    for called in (whole, streamed):
        assert [block.type for block in called.content] == [
            "thinking",
            "redacted_thinking",
            "tool_use",
        ]
        assert called.stop_reason == "tool_use"
        call = called.content[2]
        assert call.type == "tool_use"
        turn: list[MessageParam] = [
            *ASK,
            {"role": "assistant", "content": blocks_of(called)},  # type: ignore[typeddict-item]
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "x = 1"}],
            },
        ]
        # The fake checks each signature, and that the turn starts with its thinking, as
        # Anthropic does: a 400 would raise here.
        answer = to_anthropic.messages.create(**ask, messages=turn)
        assert answer.content[-1].type == "text"
        assert sent(cloud)[-1]["messages"][1]["content"] == blocks_of(called)


def test_an_altered_thinking_block_is_refused_by_anthropic_not_passed_off(
    to_anthropic: anthropic.Anthropic,
) -> None:
    turn: list[MessageParam] = [
        *ASK,
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "edited", "signature": signature_of("original")},
                {"type": "text", "text": "It prints hi."},
            ],
        },
        {"role": "user", "content": "Thanks. And utils.py?"},
    ]
    with pytest.raises(anthropic.BadRequestError, match="signature"):
        to_anthropic.messages.create(model=CLAUDE, max_tokens=2048, thinking=THINK, messages=turn)


# --- requests hybrid refuses ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("turn", "says"),
    [
        (
            {"role": "user", "content": [{"type": "thinking", "thinking": "a", "signature": "s"}]},
            "messages[0].content[0] is a thinking block in a user turn",
        ),
        (
            {"role": "assistant", "content": [{"type": "thinking", "thinking": "a"}]},
            "messages[0].content[0] is a thinking block without 'thinking' or 'signature'",
        ),
        (
            {"role": "assistant", "content": [{"type": "redacted_thinking"}]},
            "messages[0].content[0] is a redacted_thinking block without 'data'",
        ),
    ],
)
def test_a_misplaced_or_incomplete_thinking_block_is_a_400_naming_it(
    client: TestClient, cloud: FakeCloud, turn: dict[str, Any], says: str
) -> None:
    response = client.post(
        "/v1/messages",
        headers=TO_CLOUD,
        json={"model": CLAUDE, "max_tokens": 100, "messages": [turn, *ASK]},
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert says in response.json()["error"]["message"]
    assert cloud.requests == []


# --- the local model and OpenAI ----------------------------------------------------------------

HISTORY: list[MessageParam] = [
    *ASK,
    {
        "role": "assistant",
        "content": [
            {
                "type": "thinking",
                "thinking": "Secret plan.",
                "signature": signature_of("Secret plan."),
            },
            {"type": "redacted_thinking", "data": "EncryptedThoughts=="},
            {"type": "text", "text": "It prints hi."},
        ],
    },
    {"role": "user", "content": "And utils.py?"},
]


def test_thinking_is_dropped_for_openai_and_the_local_model(
    to_anthropic: anthropic.Anthropic,
    cloud: FakeCloud,
    client: TestClient,
    backend: ScriptedBackend,
) -> None:
    ask: dict[str, Any] = {"max_tokens": 2048, "thinking": THINK, "messages": HISTORY}
    whole, streamed = both_ways(to_anthropic, model="gpt-4.1-mini", **ask)
    for message in (whole, streamed):
        assert blocks_of(message) == [{"type": "text", "text": cloud.reply}]
    for body in sent(cloud):
        assert "thinking" not in body
        assert "Secret plan" not in json.dumps(body) and "Encrypted" not in json.dumps(body)
        assert body["messages"][1] == {"role": "assistant", "content": "It prints hi."}

    local = anthropic_sdk(client).with_options(default_headers={"X-Hybrid-Route": "local"})
    whole, streamed = both_ways(local, model="local", **ask)
    for message in (whole, streamed):
        assert [block.type for block in message.content] == ["text"]
    for read in backend.requests:
        assert [(m.role, m.content) for m in read.messages] == [
            ("user", "Summarise main.py"),
            ("assistant", "It prints hi."),
            ("user", "And utils.py?"),
        ]


def test_an_assistant_turn_of_thinking_only_still_reaches_anthropic(
    to_anthropic: anthropic.Anthropic, cloud: FakeCloud
) -> None:
    thought = {"type": "thinking", "thinking": "Hmm.", "signature": signature_of("Hmm.")}
    turn: list[MessageParam] = [
        *ASK,
        {"role": "assistant", "content": [thought]},  # type: ignore[list-item]
        {"role": "user", "content": "Go on."},
    ]
    to_anthropic.messages.create(model=CLAUDE, max_tokens=2048, thinking=THINK, messages=turn)
    assert sent(cloud)[-1]["messages"][1] == {"role": "assistant", "content": [thought]}


# --- the ledger --------------------------------------------------------------------------------


def test_the_ledger_counts_thinking_tokens_as_output_tokens(
    to_anthropic: anthropic.Anthropic, cloud: FakeCloud, client: TestClient, settings: Settings
) -> None:
    both_ways(to_anthropic, model=CLAUDE, max_tokens=2048, thinking=THINK, messages=ASK)
    client.get("/v1/hybrid/stats")  # waits for the records of the requests answered so far
    store = LedgerStore.open(settings.ledger.resolved_path(settings.home))
    try:
        records = store.recent(10)
    finally:
        store.close()
    output = len(cloud.thinking.text.split()) + len(cloud.reply.split())
    assert [(r.route, r.completion_tokens) for r in records] == [("cloud", output)] * 2


def test_a_stream_cut_after_its_thinking_counts_the_thinking_as_output(
    to_anthropic: anthropic.Anthropic, cloud: FakeCloud, client: TestClient, settings: Settings
) -> None:
    words = len(cloud.thinking.text.split())
    # message_start, the thinking block's start, its words, its signature and its stop: the
    # connection is cut before the answer's text, once the client has had the thinking.
    cloud.push(Fault.reset(after_chunks=words + 4))
    with client.stream(
        "POST",
        "/v1/messages",
        headers={**TO_CLOUD, "x-api-key": "k", "anthropic-version": "2023-06-01"},
        json={
            "model": CLAUDE,
            "max_tokens": 2048,
            "thinking": THINK,
            "messages": ASK,
            "stream": True,
        },
    ) as stream:
        body = "".join(stream.iter_text())
    assert "thinking_delta" in body and "text_delta" not in body
    client.get("/v1/hybrid/stats")  # waits for the records of the requests answered so far
    store = LedgerStore.open(settings.ledger.resolved_path(settings.home))
    try:
        [record] = store.recent(10)
    finally:
        store.close()
    assert record.status == "error" and record.tokens_estimated
    assert record.completion_tokens >= words
