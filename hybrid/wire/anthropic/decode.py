"""Anthropic Messages requests from clients, translated into hybrid's generation requests.

Requests come in as :mod:`hybrid.wire.anthropic.schema` models and become a
:class:`~hybrid.generation.GenerationRequest`: ``system`` as a leading system message, each
turn's text blocks joined into one message, its ``tool_use`` blocks as the message's tool calls,
and each ``tool_result`` block as a ``tool`` message (:mod:`hybrid.wire.anthropic.tools`).

Prompt-cache markers (``cache_control``) are kept where they were, for a request that goes on to
Anthropic: a system prompt or turn whose blocks carry one keeps its blocks as parts (the joined
text is still what the local model reads).  So are the ``thinking`` setting and an assistant
turn's thinking blocks (:mod:`hybrid.wire.anthropic.thinking`), apart from the turn's text.
"""

from __future__ import annotations

import dataclasses

from hybrid.errors import InvalidRequestError
from hybrid.generation import GenerationRequest, Message, SamplingParams, ToolCall, tool_needs
from hybrid.wire.anthropic.schema import ContentBlockIn, MessagesRequest
from hybrid.wire.anthropic.thinking import THINKING_TYPES, history_block
from hybrid.wire.anthropic.tools import request_tools, tool_call, tool_result_message
from hybrid.wire.fields import MAX_STOP_SEQUENCES

# Separate blocks are separate paragraphs to the client (Claude Code sends a reminder block and
# the prompt as two blocks); gluing them with "" would run their sentences together.
_BLOCK_SEPARATOR = "\n\n"


def messages_request(body: MessagesRequest, request_id: str) -> GenerationRequest:
    """Translate a Messages request.

    Args:
        body: The validated request body.
        request_id: hybrid's id for the request.

    Returns:
        The request with ``system`` as a leading system message, each turn's text blocks
        joined into one message, its ``tool_use`` blocks as the message's tool calls, and
        each ``tool_result`` block as a ``tool`` message before the rest of its turn; an
        assistant turn's thinking blocks are kept verbatim beside its text.

    Raises:
        InvalidRequestError: The request holds a block hybrid cannot read (document, ...), a
            thinking block outside an assistant turn or without its signature, inconsistent
            tools (see :func:`~hybrid.wire.anthropic.tools.request_tools`), or too many stop
            sequences.  ``param`` names the field at fault.
    """
    tools, tool_choice, parallel_tool_calls = request_tools(body)
    messages: list[Message] = []
    if body.system is not None:
        system = _text(body.system, "system")
        if system:
            parts = () if isinstance(body.system, str) else _marked_parts(body.system, "system")
            messages.append(Message(role="system", content=system, parts=parts))
    needs: set[str] = set()
    names: dict[str, str] = {}  # tool names by call id, for the tool messages
    for index, message in enumerate(body.messages):
        where = f"messages[{index}].content"
        if isinstance(message.content, str):
            messages.append(Message(role=message.role, content=message.content))
            continue
        blocks: list[ContentBlockIn] = []
        calls: list[ToolCall] = []
        thinking: list[dict[str, object]] = []
        results = 0
        for position, block in enumerate(message.content):
            at = f"{where}[{position}]"
            if block.type == "tool_result" and message.role == "user":
                messages.append(tool_result_message(block, at, names))
                results += 1
            elif block.type == "tool_use" and message.role == "assistant":
                call = tool_call(block, at)
                names[call.id] = call.name
                calls.append(call)
            elif block.type in THINKING_TYPES and message.role == "assistant":
                thinking.append(history_block(block, at))
            elif block.type in ("text", "image"):
                blocks.append(block)
            else:
                raise InvalidRequestError(_block_refusal(block.type, message.role, at), param=at)
        if results and not blocks:
            continue  # a turn of tool results only: the tool messages are the turn
        if any(b.type == "image" for b in blocks):
            turn = _with_parts(message.role, blocks, where)
            needs.add("images")
        else:
            text = _text(blocks, where)
            turn = Message(message.role, text, parts=_marked_parts(blocks, where))
        messages.append(
            dataclasses.replace(turn, tool_calls=tuple(calls), thinking=tuple(thinking))
        )
    return GenerationRequest(
        request_id=request_id,
        stream=body.stream,
        messages=tuple(messages),
        needs=frozenset(needs) | tool_needs(tools, tool_choice),
        params=SamplingParams(
            max_tokens=body.max_tokens,
            temperature=body.temperature,
            top_p=body.top_p,
            top_k=body.top_k,
            stop=_stops(body.stop_sequences),
        ),
        tools=tools,
        tool_choice=tool_choice,
        parallel_tool_calls=parallel_tool_calls,
        cache_control=body.cache_control,
        thinking=body.thinking,
    )


def _block_refusal(kind: str, role: str, where: str) -> str:
    if kind in ("tool_use", "tool_result", *THINKING_TYPES):
        belongs = "user" if kind == "tool_result" else "assistant"
        return f"{where} is a {kind} block in a {role} turn; it belongs in {belongs} turns."
    return (
        f"{where} is a block of type {kind!r}; hybrid accepts text, image, tool_use, "
        f"tool_result, thinking and redacted_thinking blocks. Send the content as those blocks."
    )


def _with_parts(role: str, blocks: list[ContentBlockIn], param: str) -> Message:
    """A turn with images: its text for the local model, its parts for the cloud."""
    parts = _parts(blocks, param)
    text = _BLOCK_SEPARATOR.join(str(p["text"]) for p in parts if p["type"] == "text")
    return Message(role=role, content=text, parts=parts)


def _marked_parts(blocks: list[ContentBlockIn], param: str) -> tuple[dict[str, object], ...]:
    """Text blocks as parts when one carries a prompt-cache marker, so that the marker stays
    on its block; none otherwise (the joined text says it all)."""
    if all(block.cache_control is None for block in blocks):
        return ()
    return _parts(blocks, param)


def _parts(blocks: list[ContentBlockIn], param: str) -> tuple[dict[str, object], ...]:
    """Text and image blocks as OpenAI-style parts, each with its block's ``cache_control``."""
    parts: list[dict[str, object]] = []
    for index, block in enumerate(blocks):
        where = f"{param}[{index}]"
        part: dict[str, object]
        if block.type == "image":
            part = {"type": "image_url", "image_url": {"url": _image_url(block, where)}}
        else:
            part = {"type": "text", "text": _text([block], where)}
        if block.cache_control is not None:
            part["cache_control"] = block.cache_control
        parts.append(part)
    return tuple(parts)


def _image_url(block: ContentBlockIn, where: str) -> str:
    source = (block.model_extra or {}).get("source")
    if isinstance(source, dict):
        if source.get("type") == "base64" and source.get("media_type") and source.get("data"):
            return f"data:{source['media_type']};base64,{source['data']}"
        if source.get("type") == "url" and isinstance(source.get("url"), str):
            return str(source["url"])
    raise InvalidRequestError(f"{where} is an image without a base64 or url source", param=where)


def _text(content: str | list[ContentBlockIn], param: str) -> str:
    if isinstance(content, str):
        return content
    texts = []
    for index, block in enumerate(content):
        where = f"{param}[{index}]"
        if block.type != "text":
            raise InvalidRequestError(
                f"{where} is a block of type {block.type!r}; hybrid accepts text and image "
                f"blocks. Send the content as text or image blocks.",
                param=where,
            )
        if block.text is None:
            raise InvalidRequestError(f"{where} is a text block without 'text'", param=where)
        texts.append(block.text)
    return _BLOCK_SEPARATOR.join(texts)


def _stops(stop_sequences: list[str] | None) -> tuple[str, ...]:
    if not stop_sequences:
        return ()
    if len(stop_sequences) > MAX_STOP_SEQUENCES:
        raise InvalidRequestError(
            f"stop_sequences holds {len(stop_sequences)} sequences; at most "
            f"{MAX_STOP_SEQUENCES} are allowed",
            param="stop_sequences",
        )
    return tuple(s for s in stop_sequences if s)
