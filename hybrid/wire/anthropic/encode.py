"""hybrid's requests to Anthropic's Messages API.

The differences bridged here:

- System prompts are a top-level ``system`` string (text blocks when the client marked some for
  prompt caching), not messages.
- There must be at least one message: a conversation of system messages only, which OpenAI's
  API and the local model answer, sends its system prompt as the user's turn.
- Every message but a final assistant one needs content: an assistant turn with no text and no
  tool calls (hybrid's own answer when the model wrote nothing, sent back) is left out.
- Messages must alternate user/assistant, so consecutive same-role messages are merged.
- ``max_tokens`` is required; ``stop`` is ``stop_sequences``; ``temperature`` stops at 1.
- There is no JSON mode: a JSON ``response_format`` becomes a system instruction, which the
  model follows well but which, unlike OpenAI's constrained decoding, guarantees nothing.
- There are no log-probabilities.
- Tool calls are content blocks (``tool_use``) and their results blocks of a user turn
  (``tool_result``), not messages of their own (:mod:`hybrid.wire.anthropic.tools`).
- Prompt-cache markers (``cache_control``) an Anthropic client sent go back where they were:
  on the request, system and content blocks, tools, ``tool_use`` and ``tool_result`` blocks.
- An Anthropic client's ``thinking`` setting goes back as it came, and so do the thinking
  blocks of its assistant turns, first in their turn (:mod:`hybrid.wire.anthropic.thinking`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from hybrid.errors import InvalidRequestError
from hybrid.generation import GenerationRequest, Message, ResponseFormat
from hybrid.wire.anthropic.tools import assistant_blocks, tool_fields, tool_result_block


def messages_body(
    request: GenerationRequest, model: str, *, default_max_tokens: int
) -> dict[str, Any]:
    """The JSON body of a Messages API request.

    Anthropic has no JSON mode: a JSON ``response_format`` is asked for in the system prompt
    (with the schema, when there is one), which the model follows but nothing enforces.

    Args:
        request: What to generate; a raw ``prompt`` becomes a single user message.
        model: Anthropic's model id.
        default_max_tokens: ``max_tokens`` when the request sets none (the API requires it).

    Returns:
        The body, with only the optional parameters the request sets.

    Raises:
        InvalidRequestError: The request asks for log-probabilities, which Anthropic does not
            return, or holds a tool call whose arguments are not a JSON object.
    """
    params = request.params
    if params.top_logprobs is not None:
        raise InvalidRequestError(
            "Anthropic models do not return log-probabilities; drop logprobs or ask an OpenAI "
            "model",
            param="logprobs",
        )
    if request.prompt is not None:
        system: list[dict[str, Any]] = []
        turns: list[dict[str, Any]] = [{"role": "user", "content": request.prompt}]
    else:
        system, turns = split_system(request.messages)
    if params.response_format is not None:
        system.append(_text_block(json_instruction(params.response_format)))
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": params.max_tokens if params.max_tokens is not None else default_max_tokens,
        "messages": turns,
    }
    if system:
        body["system"] = _text_content(system)
    if request.cache_control is not None:
        body["cache_control"] = dict(request.cache_control)
    if request.thinking is not None:
        body["thinking"] = dict(request.thinking)
    body.update(tool_fields(request))
    if params.stop:
        body["stop_sequences"] = list(params.stop)
    if params.temperature is not None:
        # OpenAI's scale runs to 2, Anthropic's to 1; beyond 1 means "as random as it gets".
        body["temperature"] = min(max(params.temperature, 0.0), 1.0)
    if params.top_p is not None:
        body["top_p"] = params.top_p
    if params.top_k is not None:
        body["top_k"] = params.top_k
    if request.stream:
        body["stream"] = True
    return body


def split_system(
    messages: tuple[Message, ...],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Separate the system prompt from the conversation, merging same-role neighbours.

    ``system`` and ``developer`` messages (wherever they appear) become the system prompt's
    text blocks, in order.  Every other role but ``assistant`` (``user``, ``tool``, ...) speaks
    as the user; a ``tool`` message naming its call as a ``tool_result`` block, and an
    assistant's tool calls as ``tool_use`` blocks after its text, and its thinking blocks
    before both.  An assistant message with neither text, tool calls nor thinking is left out:
    Anthropic refuses an empty turn, and an empty one says nothing.  Consecutive messages of one
    role are then joined (text with a blank line), since the API requires turns to alternate.
    A conversation left with no turn at all (system messages only) has its system prompt as the
    user's turn, since the API needs one.

    Raises:
        InvalidRequestError: A part or a tool call Anthropic cannot take.

    Returns:
        The system prompt's text blocks and the alternating turns.
    """
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for message in messages:
        if message.role in ("system", "developer"):
            system.extend(_system_blocks(message))
            continue
        role = "assistant" if message.role == "assistant" else "user"
        if role == "assistant" and not (
            message.tool_calls or message.thinking or _has_content(message)
        ):
            continue
        content: str | list[dict[str, Any]] = (
            content_blocks(message.parts) if message.parts else message.content
        )
        if message.role == "tool" and message.tool_call_id:
            content = [tool_result_block(message)]
        elif (message.tool_calls or message.thinking) and role == "assistant":
            # Anthropic wants a turn's thinking blocks back first, exactly as they came.
            thinking = [dict(block) for block in message.thinking]
            content = [*thinking, *assistant_blocks(message, content)]
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"] = _joined(turns[-1]["content"], content)
        else:
            turns.append({"role": role, "content": content})
    if not turns and system:
        return [], [{"role": "user", "content": _text_content(system)}]
    return system, turns


def _has_content(message: Message) -> bool:
    """Whether a message says anything (text beyond white space, or a part that is not text)."""
    if message.content.strip():
        return True
    return any(part.get("type") != "text" for part in message.parts)


def _system_blocks(message: Message) -> list[dict[str, Any]]:
    """A system message as text blocks: its marked parts, or its text; none when it is empty
    (Anthropic refuses empty text blocks)."""
    if message.parts:
        blocks = content_blocks(tuple(p for p in message.parts if p.get("type") == "text"))
    else:
        blocks = [_text_block(message.content)]
    return [block for block in blocks if block["text"]]


def _text_block(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def _text_content(blocks: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """Text blocks as the API takes them: one string, or the blocks themselves when one
    carries a prompt-cache marker, which only a block can."""
    if any("cache_control" in block for block in blocks):
        return blocks
    return "\n\n".join(block["text"] for block in blocks)


def content_blocks(parts: tuple[Any, ...]) -> list[dict[str, Any]]:
    """OpenAI content parts as Anthropic content blocks: text, and images by URL or base64,
    each with the ``cache_control`` marker its part carries.

    Raises:
        InvalidRequestError: A part Anthropic cannot take (audio) or an image URL it cannot
            read.
    """
    blocks: list[dict[str, Any]] = []
    for part in parts:
        kind = part.get("type")
        if kind == "text":
            block = _text_block(part.get("text", ""))
        elif kind == "image_url":
            block = _image_block(part.get("image_url"))
        else:
            raise InvalidRequestError(
                f"Anthropic's API does not take {kind!r} content; send it to an OpenAI model",
                param="messages",
            )
        if isinstance(part.get("cache_control"), Mapping):
            block["cache_control"] = dict(part["cache_control"])
        blocks.append(block)
    return blocks


def _image_block(image: Any) -> dict[str, Any]:
    url = image.get("url") if isinstance(image, dict) else None
    if not isinstance(url, str):
        raise InvalidRequestError("an image_url part needs image_url.url", param="messages")
    if url.startswith("data:"):
        header, _, data = url.partition(",")
        media_type = header[len("data:") :].split(";")[0]
        if ";base64" not in header or not media_type or not data:
            raise InvalidRequestError(
                "an image data URL must look like data:image/png;base64,<data>", param="messages"
            )
        return {
            "type": "image",
            "source": {"type": "base64", "media_type": media_type, "data": data},
        }
    return {"type": "image", "source": {"type": "url", "url": url}}


def _joined(
    first: str | list[dict[str, Any]], second: str | list[dict[str, Any]]
) -> str | list[dict[str, Any]]:
    """Two same-role turns as one, since the API requires turns to alternate."""
    if isinstance(first, str) and isinstance(second, str):
        return first + "\n\n" + second
    as_blocks = [
        [{"type": "text", "text": item}] if isinstance(item, str) else item
        for item in (first, second)
    ]
    return [*as_blocks[0], *as_blocks[1]]


def json_instruction(response_format: ResponseFormat) -> str:
    """The system instruction standing in for OpenAI's JSON mode."""
    instruction = (
        "Answer with a single valid JSON object and nothing else: no prose before or after "
        "it, no Markdown code fences."
    )
    if response_format.kind == "json_schema" and response_format.schema is not None:
        schema = json.dumps(response_format.schema, separators=(",", ":"), sort_keys=True)
        instruction += f" The object must conform to this JSON Schema: {schema}"
    return instruction
