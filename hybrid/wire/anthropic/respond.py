"""hybrid's answers to Anthropic clients: the whole ``message`` and the events of a stream.

Answers go out as Anthropic's ``message`` object or as its server-sent events, framed as
Anthropic frames them::

    message_start, ping, content_block_start, content_block_delta*, content_block_stop,
    message_delta, message_stop

The content_block events of a text block appear only when there is text, as the whole
``message`` has no content block when nothing was generated; each tool call is a ``tool_use``
block of its own (:mod:`hybrid.wire.anthropic.tools`), and so is each thinking block
(:mod:`hybrid.wire.anthropic.thinking`), numbered after the blocks before it
(:class:`ContentBlocks`).  Each event goes out through :func:`hybrid.wire.sse.sse_event` as
``event: <type>`` plus ``data: <json>`` whose ``type`` repeats the event name (:func:`frame`).
A failure after the stream began is an ``error`` event and nothing after it: no
``message_stop``, so no client mistakes a cut answer for a whole one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hybrid.generation import (
    GenerationDone,
    GenerationEvent,
    TextDelta,
    ThinkingBlock,
    ThinkingDelta,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from hybrid.wire.anthropic.thinking import (
    signature_delta_event,
    thinking_block_json,
    thinking_delta_event,
    thinking_start_event,
)
from hybrid.wire.anthropic.tools import input_json_delta_event, tool_use_block, tool_use_start_event
from hybrid.wire.sse import sse_event


@dataclass(frozen=True)
class MessageMeta:
    """Fields shared by every object of one response.

    Attributes:
        id: The message id, ``msg_<request id>``.
        model: What actually answers (the local model's id, or ``provider/model``).
    """

    id: str
    model: str


def stop_reason(done: GenerationDone) -> str:
    """Anthropic's ``stop_reason`` for how a generation ended."""
    if done.finish_reason == "tool_calls":
        return "tool_use"
    if done.finish_reason == "length":
        return "max_tokens"
    if done.finish_reason == "content_filter" or done.refusal is not None:
        return "refusal"
    return "stop_sequence" if done.stop_sequence is not None else "end_turn"


def usage_json(usage: Usage) -> dict[str, int]:
    """Anthropic's ``usage`` object.

    The cache counts are always present, as in Anthropic's own responses, and ``input_tokens``
    excludes them: clients add the three to size the context.  A provider's prompt cache and a
    local slot's reused KV cache are both cache reads.
    """
    cached = usage.cache_read_tokens + usage.cache_write_tokens
    return {
        "input_tokens": max(usage.prompt_tokens - cached, 0),
        "output_tokens": usage.completion_tokens,
        "cache_creation_input_tokens": usage.cache_write_tokens,
        "cache_read_input_tokens": usage.cache_read_tokens,
    }


def message_json(
    meta: MessageMeta,
    text: str,
    done: GenerationDone,
    tool_calls: tuple[ToolCall, ...] = (),
    thinking: tuple[ThinkingBlock, ...] = (),
) -> dict[str, Any]:
    """A whole ``message`` object.

    Args:
        meta: The message's id and the model that answered.
        text: The generated text.
        done: How the generation ended.
        tool_calls: The tool calls the answer made.
        thinking: The thinking blocks the answer began with.

    Returns:
        The message; its content is the thinking blocks, then a text block, none when no text
        was generated (Anthropic
        refuses empty text blocks when a client sends the turn back), then a refusal's words
        as a text block of their own (with ``stop_reason: refusal``), then a tool_use block
        per call.

    Raises:
        GenerationError: A call's arguments are not a JSON object.
    """
    texts = (text, done.refusal or "")
    content = [thinking_block_json(block) for block in thinking]
    content.extend({"type": "text", "text": t} for t in texts if t)
    content.extend(tool_use_block(call) for call in tool_calls)
    return {
        **_message_head(meta),
        "content": content,
        "stop_reason": stop_reason(done),
        "stop_sequence": done.stop_sequence,
        "usage": usage_json(done.usage),
    }


def frame(payload: dict[str, Any]) -> bytes:
    """Frame one event, named after its payload's ``type``, as a server-sent event."""
    return sse_event(payload, payload["type"])


def message_start_event(meta: MessageMeta, prompt: Usage) -> dict[str, Any]:
    """The first event: the message without content, and the prompt's token counts as far as
    they are known when it starts (zeros when they are not); message_delta has the final
    counts, input ones included."""
    return {
        "type": "message_start",
        "message": {
            **_message_head(meta),
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage_json(prompt),
        },
    }


def ping_event() -> dict[str, Any]:
    """A keep-alive event; clients ignore it."""
    return {"type": "ping"}


def content_block_start_event(index: int = 0) -> dict[str, Any]:
    """Opens a text block (index 0 unless tool_use blocks came before it)."""
    return {
        "type": "content_block_start",
        "index": index,
        "content_block": {"type": "text", "text": ""},
    }


def text_delta_event(text: str, index: int = 0) -> dict[str, Any]:
    """A piece of a text block."""
    return {
        "type": "content_block_delta",
        "index": index,
        "delta": {"type": "text_delta", "text": text},
    }


def content_block_stop_event(index: int = 0) -> dict[str, Any]:
    """Closes a content block, text or tool_use."""
    return {"type": "content_block_stop", "index": index}


def message_delta_event(done: GenerationDone) -> dict[str, Any]:
    """Why the message ended, and its final token counts (input ones included)."""
    return {
        "type": "message_delta",
        "delta": {"stop_reason": stop_reason(done), "stop_sequence": done.stop_sequence},
        "usage": usage_json(done.usage),
    }


def message_stop_event() -> dict[str, Any]:
    """The last event of a whole answer."""
    return {"type": "message_stop"}


def _message_head(meta: MessageMeta) -> dict[str, Any]:
    return {"id": meta.id, "type": "message", "role": "assistant", "model": meta.model}


class ContentBlocks:
    """Numbers and frames the content blocks of a streamed answer.

    A text block opens with the first text, so that an empty answer has no empty block
    (Anthropic refuses one when the client sends the turn back), as message_json does; each
    tool call opens a tool_use block, and each thinking block a block of its own, its text
    in ``thinking_delta`` and its signature in ``signature_delta`` events.  A block closes when
    the next one opens, or at the end.
    """

    def __init__(self) -> None:
        self._count = 0
        self._open: int | None = None
        self._text_open = False
        self._tool_blocks: dict[int, int] = {}  # block index by tool call index
        self._thinking_blocks: dict[int, int] = {}  # block index by thinking block index

    def events(self, event: GenerationEvent) -> list[dict[str, object]]:
        """The Anthropic events that carry one text, thinking or tool call delta."""
        if isinstance(event, ThinkingDelta):
            return self._thinking(event)
        if isinstance(event, TextDelta):
            if not event.text:
                return []
            events = [] if self._text_open else self._start(content_block_start_event)
            self._text_open = True
            assert self._open is not None
            return [*events, text_delta_event(event.text, self._open)]
        if not isinstance(event, ToolCallDelta):
            return []
        events = []
        if event.id is not None and event.index not in self._tool_blocks:
            call_id, name = event.id, event.name or ""
            events = self._start(lambda index: tool_use_start_event(index, call_id, name))
            assert self._open is not None
            self._tool_blocks[event.index] = self._open
        block = self._tool_blocks.get(event.index)
        if block is not None and event.arguments:
            events.append(input_json_delta_event(block, event.arguments))
        return events

    def _thinking(self, event: ThinkingDelta) -> list[dict[str, object]]:
        events = []
        if event.index not in self._thinking_blocks:
            redacted = event.redacted
            events = self._start(lambda index: thinking_start_event(index, redacted))
            assert self._open is not None
            self._thinking_blocks[event.index] = self._open
        block = self._thinking_blocks[event.index]
        if event.thinking:
            events.append(thinking_delta_event(block, event.thinking))
        if event.signature:
            events.append(signature_delta_event(block, event.signature))
        return events

    def text_block(self, text: str) -> list[dict[str, object]]:
        """A whole text block of its own after the blocks before it (a refusal's words)."""
        events = self._start(content_block_start_event)
        self._text_open = True
        assert self._open is not None
        return [*events, text_delta_event(text, self._open)]

    def close(self) -> list[dict[str, object]]:
        """Closes the block still open, if any."""
        if self._open is None:
            return []
        index, self._open = self._open, None
        return [content_block_stop_event(index)]

    def _start(self, opening: Callable[[int], dict[str, object]]) -> list[dict[str, object]]:
        events = self.close()
        self._text_open = False
        self._open = self._count
        self._count += 1
        return [*events, opening(self._open)]
