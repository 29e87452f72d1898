"""The fake cloud's Anthropic endpoint thinks when asked, as Anthropic does: signed thinking
blocks first, whole and streamed, counted as output; and it refuses what Anthropic refuses about
thinking."""

from __future__ import annotations

from typing import Any

import anthropic
import pytest
from anthropic.types import MessageParam
from fake_cloud import FakeCloud, ScriptedCall, Thinking, ToolScript, signature_of

MESSAGES: list[MessageParam] = [{"role": "user", "content": "say hello to me"}]
THINK = {"type": "enabled", "budget_tokens": 1024}
TOOLS: list[Any] = [{"name": "clock", "input_schema": {"type": "object", "properties": {}}}]


def test_an_answer_begins_with_signed_thinking_whole_and_streamed(
    anthropic_client: anthropic.Anthropic, cloud: FakeCloud
) -> None:
    cloud.thinking = Thinking(text="Greet them back.", redacted="Opaque==")
    ask: dict[str, Any] = {
        "model": "claude-x",
        "max_tokens": 2000,
        "thinking": THINK,
        "messages": MESSAGES,
    }
    whole = anthropic_client.messages.create(**ask)
    with anthropic_client.messages.stream(**ask) as stream:
        streamed = stream.get_final_message()
    for message in (whole, streamed):
        assert [block.model_dump() for block in message.content] == [
            {
                "type": "thinking",
                "thinking": "Greet them back.",
                "signature": signature_of("Greet them back."),
            },
            {"type": "redacted_thinking", "data": "Opaque=="},
            {"type": "text", "text": cloud.reply, "citations": None},
        ]
        assert message.usage.output_tokens == 3 + 5  # thinking words, then reply words


def test_a_tool_call_follows_the_thinking(
    anthropic_client: anthropic.Anthropic, cloud: FakeCloud
) -> None:
    cloud.tools = ToolScript(calls=(ScriptedCall("clock"),))
    ask: dict[str, Any] = {
        "model": "claude-x",
        "max_tokens": 2000,
        "thinking": THINK,
        "tools": TOOLS,
        "messages": MESSAGES,
    }
    with anthropic_client.messages.stream(**ask) as stream:
        message = stream.get_final_message()
    assert [block.type for block in message.content] == ["thinking", "tool_use"]


def test_no_thinking_unless_asked(anthropic_client: anthropic.Anthropic) -> None:
    message = anthropic_client.messages.create(model="claude-x", max_tokens=2000, messages=MESSAGES)
    assert [block.type for block in message.content] == ["text"]


CALLED: list[MessageParam] = [
    *MESSAGES,
    {
        "role": "assistant",
        "content": [{"type": "tool_use", "id": "toolu_1", "name": "clock", "input": {}}],
    },
    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1"}]},
]


@pytest.mark.parametrize(
    ("ask", "problem"),
    [
        ({"thinking": {"type": "enabled", "budget_tokens": 100}}, "greater than or equal to 1024"),
        ({"max_tokens": 1024}, "`max_tokens` must be greater than `thinking.budget_tokens`"),
        ({"tools": TOOLS, "messages": CALLED}, "must start with a thinking block"),
        (
            {
                "messages": [
                    *MESSAGES,
                    {
                        "role": "assistant",
                        "content": [{"type": "thinking", "thinking": "x", "signature": "forged"}],
                    },
                    {"role": "user", "content": "and?"},
                ]
            },
            "messages.1.content.0: Invalid `signature` in `thinking` block",
        ),
    ],
)
def test_it_refuses_what_anthropic_refuses_about_thinking(
    anthropic_client: anthropic.Anthropic, ask: dict[str, Any], problem: str
) -> None:
    base: dict[str, Any] = {
        "model": "claude-x",
        "max_tokens": 2000,
        "thinking": THINK,
        "messages": MESSAGES,
    }
    with pytest.raises(anthropic.BadRequestError) as caught:
        anthropic_client.messages.create(**(base | ask))
    assert problem in str(caught.value)
