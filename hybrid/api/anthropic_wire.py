"""Translation between Anthropic's Messages wire format and hybrid's generation types.

Requests come in as :mod:`hybrid.api.anthropic_schema` models and become a
:class:`~hybrid.generation.GenerationRequest`; answers go out as Anthropic's ``message`` object
or as its server-sent events, framed as Anthropic frames them::

    message_start, ping, content_block_start, content_block_delta*, content_block_stop,
    message_delta, message_stop

The content_block events of a text block appear only when there is text, as the whole
``message`` has no content block when nothing was generated; each tool call is a ``tool_use``
block of its own (:mod:`hybrid.api.anthropic_tools`), numbered after the blocks before it.
Each event is ``event: <type>`` plus ``data: <json>`` whose ``type`` repeats the event name.  A
failure after the stream began is an ``error`` event and nothing after it: no ``message_stop``,
so no client mistakes a cut answer for a whole one.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from hybrid.api.anthropic_schema import ContentBlockIn, MessagesRequest
from hybrid.api.anthropic_tools import (
    request_tools,
    tool_call,
    tool_result_message,
    tool_use_block,
)
from hybrid.api.errors import wire_error
from hybrid.api.schema import MAX_STOP_SEQUENCES
from hybrid.errors import HybridError, InvalidRequestError
from hybrid.generation import (
    GenerationDone,
    GenerationRequest,
    Message,
    SamplingParams,
    ToolCall,
    Usage,
    tool_needs,
)

# Separate blocks are separate paragraphs to the client (Claude Code sends a reminder block and
# the prompt as two blocks); gluing them with "" would run their sentences together.
_BLOCK_SEPARATOR = "\n\n"


@dataclass(frozen=True)
class MessageMeta:
    """Fields shared by every object of one response.

    Attributes:
        id: The message id, ``msg_<request id>``.
        model: What actually answers (the local model's id, or ``provider/model``).
    """

    id: str
    model: str


def messages_request(body: MessagesRequest, request_id: str) -> GenerationRequest:
    """Translate a Messages request.

    Args:
        body: The validated request body.
        request_id: hybrid's id for the request.

    Returns:
        The request with ``system`` as a leading system message, each turn's text blocks
        joined into one message, its ``tool_use`` blocks as the message's tool calls, and
        each ``tool_result`` block as a ``tool`` message before the rest of its turn.

    Raises:
        InvalidRequestError: The request holds a block hybrid cannot read (document,
            thinking, ...), inconsistent tools (see
            :func:`~hybrid.api.anthropic_tools.request_tools`), or too many stop sequences.
            ``param`` names the field at fault.
    """
    tools, tool_choice, parallel_tool_calls = request_tools(body)
    messages: list[Message] = []
    if body.system is not None:
        system = _text(body.system, "system")
        if system:
            messages.append(Message(role="system", content=system))
    needs: set[str] = set()
    names: dict[str, str] = {}  # tool names by call id, for the tool messages
    for index, message in enumerate(body.messages):
        where = f"messages[{index}].content"
        if isinstance(message.content, str):
            messages.append(Message(role=message.role, content=message.content))
            continue
        blocks: list[ContentBlockIn] = []
        calls: list[ToolCall] = []
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
            elif block.type in ("text", "image"):
                blocks.append(block)
            else:
                raise InvalidRequestError(_block_refusal(block.type, message.role, at), param=at)
        if results and not blocks:
            continue  # a turn of tool results only: the tool messages are the turn
        if any(b.type == "image" for b in blocks):
            turn = _with_images(message.role, blocks, where)
            needs.add("images")
        else:
            turn = Message(role=message.role, content=_text(blocks, where))
        messages.append(dataclasses.replace(turn, tool_calls=tuple(calls)))
    return GenerationRequest(
        request_id=request_id,
        stream=body.stream,
        messages=tuple(messages),
        needs=frozenset(needs) | tool_needs(tools, tool_choice),
        params=SamplingParams(
            max_tokens=body.max_tokens,
            temperature=body.temperature,
            top_p=body.top_p,
            stop=_stops(body.stop_sequences),
        ),
        tools=tools,
        tool_choice=tool_choice,
        parallel_tool_calls=parallel_tool_calls,
    )


def stop_reason(done: GenerationDone) -> str:
    """Anthropic's ``stop_reason`` for how a generation ended."""
    if done.finish_reason == "tool_calls":
        return "tool_use"
    if done.finish_reason == "length":
        return "max_tokens"
    if done.finish_reason == "content_filter":
        return "refusal"
    return "stop_sequence" if done.stop_sequence is not None else "end_turn"


def usage_json(usage: Usage) -> dict[str, int]:
    """Anthropic's ``usage`` object.

    The cache counts are always present, as in Anthropic's own responses: clients add them to
    ``input_tokens`` to size the context, and hybrid caches no prompt on the client's behalf.
    """
    return {
        "input_tokens": usage.prompt_tokens,
        "output_tokens": usage.completion_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }


def message_json(
    meta: MessageMeta, text: str, done: GenerationDone, tool_calls: tuple[ToolCall, ...] = ()
) -> dict[str, Any]:
    """A whole ``message`` object.

    Args:
        meta: The message's id and the model that answered.
        text: The generated text.
        done: How the generation ended.
        tool_calls: The tool calls the answer made.

    Returns:
        The message; its content is a text block, none when no text was generated (Anthropic
        refuses empty text blocks when a client sends the turn back), then a tool_use block
        per call.

    Raises:
        GenerationError: A call's arguments are not a JSON object.
    """
    content: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
    content.extend(tool_use_block(call) for call in tool_calls)
    return {
        **_message_head(meta),
        "content": content,
        "stop_reason": stop_reason(done),
        "stop_sequence": done.stop_sequence,
        "usage": usage_json(done.usage),
    }


def sse_event(payload: dict[str, Any]) -> bytes:
    """Frame one event, named after its payload's ``type``, as a server-sent event."""
    data = json.dumps(payload, separators=(",", ":"))
    return f"event: {payload['type']}\ndata: {data}\n\n".encode()


def message_start_event(meta: MessageMeta) -> dict[str, Any]:
    """The first event: the message without content; token counts come with message_delta."""
    return {
        "type": "message_start",
        "message": {
            **_message_head(meta),
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage_json(Usage(prompt_tokens=0, completion_tokens=0)),
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


def error_event(exc: HybridError) -> dict[str, Any]:
    """A failure after the stream began, in Anthropic's error shape."""
    return wire_error(exc).body("anthropic")


def _message_head(meta: MessageMeta) -> dict[str, Any]:
    return {"id": meta.id, "type": "message", "role": "assistant", "model": meta.model}


def _block_refusal(kind: str, role: str, where: str) -> str:
    if kind in ("tool_use", "tool_result"):
        belongs = "assistant" if kind == "tool_use" else "user"
        return f"{where} is a {kind} block in a {role} turn; it belongs in {belongs} turns."
    return (
        f"{where} is a block of type {kind!r}; hybrid accepts text, image, tool_use and "
        f"tool_result blocks. Send the content as those blocks."
    )


def _with_images(role: str, blocks: list[ContentBlockIn], param: str) -> Message:
    """A turn with images: its text for the local model, OpenAI-style parts for the cloud."""
    parts: list[dict[str, object]] = []
    for index, block in enumerate(blocks):
        where = f"{param}[{index}]"
        if block.type == "image":
            parts.append({"type": "image_url", "image_url": {"url": _image_url(block, where)}})
        else:
            parts.append({"type": "text", "text": _text([block], where)})
    text = _BLOCK_SEPARATOR.join(str(p["text"]) for p in parts if p["type"] == "text")
    return Message(role=role, content=text, parts=tuple(parts))


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
