"""Anthropic's extended thinking in the fake cloud: thinking blocks in answers, checks on requests.

A Messages request with ``thinking: {"type": "enabled", "budget_tokens": N}`` gets an answer
that begins with a ``thinking`` block (`Thinking.text`, signed with `signature_of`) and, when
`Thinking.redacted` is set, a ``redacted_thinking`` block after it, before the answer's text
and tool_use blocks: whole, or streamed as Anthropic streams them (``content_block_start`` of
type thinking, ``thinking_delta`` word by word, one ``signature_delta``, ``content_block_stop``;
a redacted block whole in its start).  The thinking's words count as output tokens, as
Anthropic counts them.

Requests are checked as Anthropic checks them (`thinking_problem`): ``budget_tokens`` at least
1024 and below ``max_tokens``; every thinking block sent back signed with its own signature;
and with thinking on, an assistant turn with tool calls that the request answers (the last
assistant turn) must start with its thinking block.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fake_cloud_answers import Answer

Json = dict[str, Any]

_THINKING_TYPES = ("thinking", "redacted_thinking")
_OPENING = {"type": "thinking", "thinking": "", "signature": ""}


@dataclass(frozen=True)
class Thinking:
    """What an Anthropic answer thinks when its request turns thinking on.

    Attributes:
        text: The thinking block's text.
        redacted: The ``data`` of a redacted_thinking block after it; None for none.
    """

    text: str = "The user wants a short answer, so I will keep it brief."
    redacted: str | None = None


def signature_of(text: str) -> str:
    """The signature the fake gives a thinking block's text (and checks when it comes back)."""
    return "sig-" + hashlib.sha256(text.encode()).hexdigest()[:32]


def asks_for_thinking(body: Json) -> bool:
    thinking = body.get("thinking")
    return isinstance(thinking, dict) and thinking.get("type") == "enabled"


def thinking_problem(body: Json) -> str | None:
    """What Anthropic answers 400 about in a request's thinking, or None."""
    on = asks_for_thinking(body)
    if on:
        budget = body["thinking"].get("budget_tokens")
        if not isinstance(budget, int) or budget < 1024:
            return "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"
        if budget >= body.get("max_tokens", 0):
            return "`max_tokens` must be greater than `thinking.budget_tokens`."
    messages = [m for m in body.get("messages", []) if isinstance(m, dict)]
    for i, message in enumerate(messages):
        content = message.get("content")
        blocks = content if isinstance(content, list) else []
        for j, block in enumerate(blocks):
            if not isinstance(block, dict) or block.get("type") != "thinking":
                continue
            if block.get("signature") != signature_of(str(block.get("thinking"))):
                return f"messages.{i}.content.{j}: Invalid `signature` in `thinking` block"
    last = next((m for m in reversed(messages) if m.get("role") == "assistant"), None)
    if on and last is not None and isinstance(last.get("content"), list):
        blocks = [b for b in last["content"] if isinstance(b, dict)]
        calls = any(b.get("type") == "tool_use" for b in blocks)
        if calls and blocks[0].get("type") not in _THINKING_TYPES:
            return (
                f"Expected `thinking` or `redacted_thinking`, but found "
                f"`{blocks[0].get('type')}`. When `thinking` is enabled, a final `assistant` "
                f"message must start with a thinking block. Include the thinking blocks from "
                f"previous turns, or disable `thinking`."
            )
    return None


def with_thinking(answer: Answer, thinking: Thinking) -> Answer:
    """`answer` (a 200 Messages answer, whole or streamed) with the thinking blocks first."""
    words = _words(thinking.text)
    blocks: list[Json] = [
        {"type": "thinking", "thinking": thinking.text, "signature": signature_of(thinking.text)}
    ]
    if thinking.redacted is not None:
        blocks.append({"type": "redacted_thinking", "data": thinking.redacted})
    if answer.events is None:
        message = json.loads(answer.body)
        message["content"] = [*blocks, *message["content"]]
        message["usage"]["output_tokens"] += len(words)
        return dataclasses.replace(answer, body=_compact(message).encode())
    events: list[tuple[str | None, str]] = []
    for name, data in answer.events:
        payload = json.loads(data)
        if isinstance(payload.get("index"), int):
            payload["index"] += len(blocks)  # after the thinking blocks
        if name == "message_delta":
            payload["usage"]["output_tokens"] += len(words)
        events.append((name, _compact(payload)))
        if name == "message_start":
            events += _streamed(blocks, words)
    return dataclasses.replace(answer, events=tuple(events))


def _streamed(blocks: list[Json], words: list[str]) -> list[tuple[str | None, str]]:
    def event(name: str, **data: Any) -> tuple[str | None, str]:
        return name, _compact({"type": name, **data})

    signed = blocks[0]
    events = [
        event("content_block_start", index=0, content_block=_OPENING),
        *(
            event("content_block_delta", index=0, delta={"type": "thinking_delta", "thinking": w})
            for w in words
        ),
        event(
            "content_block_delta",
            index=0,
            delta={"type": "signature_delta", "signature": signed["signature"]},
        ),
        event("content_block_stop", index=0),
    ]
    for index, block in enumerate(blocks[1:], start=1):
        events += [
            event("content_block_start", index=index, content_block=block),
            event("content_block_stop", index=index),
        ]
    return events


def _words(text: str) -> list[str]:
    """Words, each with the space before it, so that they join back into `text`."""
    words = text.split(" ")
    return [word if i == 0 else " " + word for i, word in enumerate(words)] if text else []


def _compact(payload: object) -> str:
    return json.dumps(payload, separators=(",", ":"))
