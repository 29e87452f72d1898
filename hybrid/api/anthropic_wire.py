"""Translation between Anthropic's Messages wire format and hybrid's generation types.

Requests come in as :mod:`hybrid.api.anthropic_schema` models and become a
:class:`~hybrid.generation.GenerationRequest`; answers go out as Anthropic's ``message`` object
or as its server-sent events, framed as Anthropic frames them::

    message_start, ping, content_block_start, content_block_delta*, content_block_stop,
    message_delta, message_stop

The three content_block events appear only when there is text, as the whole ``message`` has
no content block when nothing was generated.  Each event is ``event: <type>`` plus
``data: <json>`` whose ``type`` repeats the event name.  A failure after the stream began is an
``error`` event and nothing after it: no ``message_stop``, so no client mistakes a cut answer
for a whole one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from hybrid.api.anthropic_schema import ContentBlockIn, MessagesRequest
from hybrid.api.errors import wire_error
from hybrid.api.schema import MAX_STOP_SEQUENCES
from hybrid.errors import HybridError, InvalidRequestError
from hybrid.generation import GenerationDone, GenerationRequest, Message, SamplingParams, Usage

# Separate blocks are separate paragraphs to the client (Claude Code sends a reminder block and
# the prompt as two blocks); gluing them with "" would run their sentences together.
_BLOCK_SEPARATOR = "\n\n"

# tool_choice values that make sense without tools: they leave the answer plain text.
_HARMLESS_TOOL_CHOICES = ("auto", "none")


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
        The request with ``system`` as a leading system message and each turn's text blocks
        joined into one message.

    Raises:
        InvalidRequestError: The request holds a block other than text (image, document,
            tool_use, tool_result, ...), asks for tools, or has too many stop sequences.
            ``param`` names the field at fault.
    """
    _check_tools(body)
    messages: list[Message] = []
    if body.system is not None:
        system = _text(body.system, "system")
        if system:
            messages.append(Message(role="system", content=system))
    needs: set[str] = set()
    for index, message in enumerate(body.messages):
        where = f"messages[{index}].content"
        if isinstance(message.content, list) and any(b.type == "image" for b in message.content):
            messages.append(_with_images(message.role, message.content, where))
            needs.add("images")
            continue
        content = _text(message.content, where)
        messages.append(Message(role=message.role, content=content))
    return GenerationRequest(
        request_id=request_id,
        stream=body.stream,
        messages=tuple(messages),
        needs=frozenset(needs),
        params=SamplingParams(
            max_tokens=body.max_tokens,
            temperature=body.temperature,
            top_p=body.top_p,
            stop=_stops(body.stop_sequences),
        ),
    )


def stop_reason(done: GenerationDone) -> str:
    """Anthropic's ``stop_reason`` for how a generation ended."""
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


def message_json(meta: MessageMeta, text: str, done: GenerationDone) -> dict[str, Any]:
    """A whole ``message`` object.

    Args:
        meta: The message's id and the model that answered.
        text: The generated text.
        done: How the generation ended.

    Returns:
        The message; its content is one text block, or none when nothing was generated
        (Anthropic refuses empty text blocks when a client sends the turn back).
    """
    return {
        **_message_head(meta),
        "content": [{"type": "text", "text": text}] if text else [],
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


def content_block_start_event() -> dict[str, Any]:
    """Opens the text block (always index 0: hybrid answers with one text block)."""
    return {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "text", "text": ""},
    }


def text_delta_event(text: str) -> dict[str, Any]:
    """A piece of the text block."""
    return {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "text_delta", "text": text},
    }


def content_block_stop_event() -> dict[str, Any]:
    """Closes the text block."""
    return {"type": "content_block_stop", "index": 0}


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


def _check_tools(body: MessagesRequest) -> None:
    if body.tools:
        raise InvalidRequestError(
            f"tools are not supported yet: this endpoint answers with text only (got "
            f"{len(body.tools)} tools). Send the request without tools.",
            param="tools",
        )
    choice = body.tool_choice
    if choice is not None and choice.type not in _HARMLESS_TOOL_CHOICES:
        raise InvalidRequestError(
            f"tool_choice {choice.type!r} asks for a tool call, and tools are not supported "
            f"yet. Omit tool_choice.",
            param="tool_choice",
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
