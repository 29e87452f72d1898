"""Tool use in Anthropic's Messages wire format, both ways.

In: ``tools`` (name, description, ``input_schema``), ``tool_choice`` (``auto``, ``any``,
``tool``, ``none``, with ``disable_parallel_tool_use``), ``tool_use`` blocks in assistant turns
and ``tool_result`` blocks in user turns.  Out: ``tool_use`` content blocks with the parsed
``input``, and in a stream a ``content_block_start`` of type ``tool_use`` (``input: {}``)
followed by ``input_json_delta`` deltas whose ``partial_json`` pieces join into the input.

Inside, a tool result is a ``tool`` message of its own (OpenAI's shape), so a user turn with
results becomes those messages followed by the turn's own text, if any.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic_core import from_json

from hybrid.api.anthropic_schema import ContentBlockIn, MessagesRequest
from hybrid.errors import GenerationError, InvalidRequestError
from hybrid.generation import Message, ToolCall, ToolChoice, ToolSpec

# Anthropic's tool_choice types, in hybrid's terms.
_CHOICE_MODES = {"auto": "auto", "any": "required", "none": "none", "tool": "named"}


def request_tools(body: MessagesRequest) -> tuple[tuple[ToolSpec, ...], ToolChoice, bool | None]:
    """The tools a request offers, its tool choice and whether parallel calls are allowed.

    Args:
        body: The validated request.

    Returns:
        The tools (empty when none), the choice (``auto`` when unset) and False when the
        choice sets ``disable_parallel_tool_use`` (None otherwise).

    Raises:
        InvalidRequestError: A server tool, duplicate tool names, or a tool choice that is
            unknown, names a tool not offered, or asks for a call when no tools are offered.
    """
    tools: list[ToolSpec] = []
    for index, tool in enumerate(body.tools or []):
        if tool.type not in (None, "custom"):
            raise InvalidRequestError(
                f"tools[{index}] is Anthropic's server tool {tool.type!r}, which runs on "
                f"Anthropic's side; hybrid passes client tools only (name, description, "
                f"input_schema). Drop it, or run that tool in the client.",
                param=f"tools[{index}]",
            )
        tools.append(ToolSpec(tool.name, tool.description, tool.input_schema))
    names = [tool.name for tool in tools]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise InvalidRequestError(
            f"tools holds more than one tool named {duplicates[0]!r}; give each a distinct name",
            param="tools",
        )
    choice = body.tool_choice
    if choice is None:
        return tuple(tools), ToolChoice(), None
    mode = _CHOICE_MODES.get(choice.type)
    if mode is None:
        raise InvalidRequestError(
            f"tool_choice.type must be auto, any, tool or none (got {choice.type!r})",
            param="tool_choice",
        )
    if mode == "named" and not choice.name:
        raise InvalidRequestError(
            "tool_choice of type tool needs the tool's name", param="tool_choice.name"
        )
    if mode in ("required", "named") and not tools:
        raise InvalidRequestError(
            f"tool_choice {choice.type!r} asks for a tool call, but the request offers no "
            f"tools; send tools or drop tool_choice",
            param="tool_choice",
        )
    if mode == "named" and choice.name not in names:
        raise InvalidRequestError(
            f"tool_choice names {choice.name!r}, which is not among the tools ({', '.join(names)})",
            param="tool_choice.name",
        )
    result = ToolChoice(mode, choice.name if mode == "named" else None)  # type: ignore[arg-type]
    parallel = False if choice.disable_parallel_tool_use else None
    return tuple(tools), result, parallel


def tool_call(block: ContentBlockIn, where: str) -> ToolCall:
    """A ``tool_use`` block of an assistant turn, as the call it records.

    Raises:
        InvalidRequestError: The block lacks its id or name.
    """
    if not block.id or not block.name:
        raise InvalidRequestError(f"{where} is a tool_use block without id or name", param=where)
    arguments = json.dumps(block.input or {}, ensure_ascii=False, separators=(",", ":"))
    return ToolCall(block.id, block.name, arguments)


def tool_result_message(block: ContentBlockIn, where: str, names: dict[str, str]) -> Message:
    """A ``tool_result`` block of a user turn, as a ``tool`` message.

    Args:
        block: The block.
        where: Its place in the request, for errors.
        names: Tool names by call id, from the conversation's earlier tool_use blocks.

    Raises:
        InvalidRequestError: The block lacks ``tool_use_id`` or holds something but text.
    """
    if not block.tool_use_id:
        raise InvalidRequestError(
            f"{where} is a tool_result block without tool_use_id", param=where
        )
    content = block.content
    if content is None:
        text = ""
    elif isinstance(content, str):
        text = content
    else:
        texts = []
        for index, part in enumerate(content):
            if part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise InvalidRequestError(
                    f"{where}.content[{index}] is a block of type {part.get('type')!r}; hybrid "
                    f"accepts tool results as text. Send the result as text.",
                    param=f"{where}.content[{index}]",
                )
            texts.append(part["text"])
        text = "\n\n".join(texts)
    return Message(
        role="tool",
        content=text,
        tool_call_id=block.tool_use_id,
        name=names.get(block.tool_use_id),
        is_error=bool(block.is_error),
    )


def tool_use_block(call: ToolCall) -> dict[str, Any]:
    """A whole answer's ``tool_use`` content block.

    Raises:
        GenerationError: The model wrote arguments that are not a JSON object, which the block
            cannot carry.
    """
    return {"type": "tool_use", "id": call.id, "name": call.name, "input": tool_input(call)}


def tool_input(call: ToolCall) -> dict[str, Any]:
    """A call's arguments as the JSON object Anthropic's ``input`` is.

    Raises:
        GenerationError: The arguments are not a JSON object.
    """
    try:
        # pydantic's parser: arguments nested too deep for json.loads are a ValueError here.
        value = from_json(call.arguments)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise GenerationError(
            f"the model called {call.name!r} with arguments that are not a JSON object "
            f"({call.arguments[:80]!r}); retry the request"
        )
    return value


def tool_use_start_event(index: int, call_id: str, name: str) -> dict[str, Any]:
    """Opens a tool_use block; its input arrives in ``input_json_delta`` pieces."""
    return {
        "type": "content_block_start",
        "index": index,
        "content_block": {"type": "tool_use", "id": call_id, "name": name, "input": {}},
    }


def input_json_delta_event(index: int, partial_json: str) -> dict[str, Any]:
    """A piece of a tool_use block's input, as JSON text."""
    return {
        "type": "content_block_delta",
        "index": index,
        "delta": {"type": "input_json_delta", "partial_json": partial_json},
    }
