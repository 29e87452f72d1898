"""Anthropic's extended thinking, both ways, between Anthropic clients and Anthropic upstreams.

From clients (``/v1/messages``): the ``thinking`` setting is kept as sent, and so is each
``thinking`` (text and ``signature``) or ``redacted_thinking`` (``data``) block of an assistant
turn: Anthropic checks the signatures, so a block goes back exactly as it came
(:attr:`~hybrid.generation.Message.thinking`).  Their text is not the conversation: the local
model and OpenAI-compatible providers never see the blocks, nor the setting.

To providers: the setting as ``thinking``, and a turn's blocks first in that turn, as Anthropic
answered them.  From providers: a whole answer's thinking blocks become one
:class:`~hybrid.generation.ThinkingDelta` each; in a stream a ``content_block_start`` of type
``thinking`` or ``redacted_thinking`` opens one and its ``thinking_delta`` and
``signature_delta`` events add to it (:class:`ThinkingReader`).  To clients: the blocks again,
whole or as those same events.
"""

from __future__ import annotations

from typing import Any

from hybrid.errors import InvalidRequestError, ProviderProtocolError
from hybrid.generation import ThinkingBlock, ThinkingDelta
from hybrid.wire.anthropic.schema import ContentBlockIn

THINKING_TYPES = ("thinking", "redacted_thinking")
"""The content block types that carry thinking."""


def history_block(block: ContentBlockIn, where: str) -> dict[str, Any]:
    """A thinking or redacted_thinking block of an assistant turn, as the client sent it.

    Raises:
        InvalidRequestError: A thinking block without its text or signature, or a redacted
            one without its data (Anthropic would refuse the turn).
    """
    if block.type == "thinking":
        if block.thinking is None or block.signature is None:
            raise InvalidRequestError(
                f"{where} is a thinking block without 'thinking' or 'signature'; send the "
                f"block back exactly as the answer gave it",
                param=where,
            )
    elif block.data is None:
        raise InvalidRequestError(
            f"{where} is a redacted_thinking block without 'data'; send the block back "
            f"exactly as the answer gave it",
            param=where,
        )
    return block.model_dump(mode="json", exclude_unset=True)


def thinking_events(provider: str, content: list[Any]) -> list[ThinkingDelta]:
    """The thinking blocks of a whole answer, one whole delta each, in order.

    Raises:
        ProviderProtocolError: A thinking block without its text, or a redacted one without
            its data.
    """
    events: list[ThinkingDelta] = []
    for block in content:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind not in THINKING_TYPES:
            continue
        events.append(_whole(provider, len(events), block))
    return events


def _whole(provider: str, index: int, block: dict[str, Any]) -> ThinkingDelta:
    if block["type"] == "redacted_thinking":
        data = block.get("data")
        if not isinstance(data, str):
            raise ProviderProtocolError(provider, "a redacted_thinking block has no data")
        return ThinkingDelta(index, redacted=data)
    text, signature = block.get("thinking"), block.get("signature")
    if not isinstance(text, str):
        raise ProviderProtocolError(provider, "a thinking block has no thinking text")
    return ThinkingDelta(index, text, signature if isinstance(signature, str) else "")


class ThinkingReader:
    """Reads the thinking blocks of one Messages API stream.

    Anthropic numbers blocks across thinking, text and tool_use blocks; thinking blocks are
    numbered from 0 in the order they start.

    Args:
        provider: The provider's name, for errors.
    """

    def __init__(self, provider: str) -> None:
        self._provider = provider
        self._blocks: dict[int, int] = {}  # content block index -> thinking block index

    def start(self, data: dict[str, Any]) -> list[ThinkingDelta]:
        """A ``content_block_start`` event: a thinking or redacted_thinking block opens."""
        block = data.get("content_block")
        if not isinstance(block, dict) or block.get("type") not in THINKING_TYPES:
            return []
        index = data.get("index")
        if not isinstance(index, int):
            raise ProviderProtocolError(
                self._provider,
                "a thinking block started without its index; the answer is incomplete, retry "
                "the request",
            )
        self._blocks[index] = len(self._blocks)
        return [_whole(self._provider, self._blocks[index], {"thinking": "", **block})]

    def delta(self, data: dict[str, Any], delta: dict[str, Any]) -> list[ThinkingDelta]:
        """A ``thinking_delta`` or ``signature_delta``: more of a thinking block."""
        index = data.get("index")
        block = self._blocks.get(index) if isinstance(index, int) else None
        if block is None:
            return []
        if delta.get("type") == "thinking_delta":
            text = delta.get("thinking")
            return [ThinkingDelta(block, thinking=text)] if isinstance(text, str) and text else []
        signature = delta.get("signature")
        if isinstance(signature, str) and signature:
            return [ThinkingDelta(block, signature=signature)]
        return []


def thinking_block_json(block: ThinkingBlock) -> dict[str, Any]:
    """A whole answer's thinking or redacted_thinking content block."""
    if block.redacted is not None:
        return {"type": "redacted_thinking", "data": block.redacted}
    return {"type": "thinking", "thinking": block.thinking, "signature": block.signature}


def thinking_start_event(index: int, redacted: str | None) -> dict[str, Any]:
    """Opens a thinking block (its text and signature follow as deltas), or a whole redacted
    one."""
    block: dict[str, Any] = {"type": "thinking", "thinking": "", "signature": ""}
    if redacted is not None:
        block = {"type": "redacted_thinking", "data": redacted}
    return {"type": "content_block_start", "index": index, "content_block": block}


def thinking_delta_event(index: int, text: str) -> dict[str, Any]:
    """A piece of a thinking block's text."""
    return {
        "type": "content_block_delta",
        "index": index,
        "delta": {"type": "thinking_delta", "thinking": text},
    }


def signature_delta_event(index: int, signature: str) -> dict[str, Any]:
    """A thinking block's signature, just before the block closes."""
    return {
        "type": "content_block_delta",
        "index": index,
        "delta": {"type": "signature_delta", "signature": signature},
    }
