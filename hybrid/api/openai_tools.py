"""Tool calling in OpenAI's chat completions wire format, both ways.

In: ``tools`` (function tools), ``tool_choice``, ``parallel_tool_calls``, assistant messages
with ``tool_calls`` and ``tool`` messages with results.  Out: ``message.tool_calls`` of a whole
answer, and the ``delta.tool_calls`` of a stream, framed as OpenAI frames them: a call's first
chunk has its ``index``, ``id``, ``type: "function"``, ``function.name`` and empty
``arguments``; the following chunks carry only the ``index`` and the next piece of
``function.arguments``.

The legacy ``functions`` / ``function_call`` parameters (replaced by ``tools`` in 2023) are
refused with a message saying what to send instead.
"""

from __future__ import annotations

import json
from typing import Any

from hybrid.api.schema import ChatCompletionRequest, ChatMessageIn
from hybrid.errors import InvalidRequestError
from hybrid.generation import ToolCall, ToolCallDelta, ToolChoice, ToolSpec

_CHOICE_MODES = ("auto", "none", "required")


def request_tools(
    body: ChatCompletionRequest,
) -> tuple[tuple[ToolSpec, ...], ToolChoice, bool | None]:
    """The tools a request offers, its tool choice and ``parallel_tool_calls``.

    Args:
        body: The validated request.

    Returns:
        The tools (empty when none), the choice (``auto`` when unset) and whether parallel
        calls are allowed (None when unset).

    Raises:
        InvalidRequestError: A legacy ``functions``/``function_call`` field, a tool that is not
            a function, duplicate tool names, or a tool choice that is unknown, names a tool
            not offered, or asks for a call when no tools are offered.
    """
    extra = body.model_extra or {}
    for legacy, modern in (("functions", "tools"), ("function_call", "tool_choice")):
        if extra.get(legacy) is not None:
            raise InvalidRequestError(
                f"{legacy} is OpenAI's deprecated function-calling parameter, which hybrid does "
                f"not accept; send {modern} instead (each function as "
                f'{{"type": "function", "function": {{...}}}})',
                param=legacy,
            )
    tools: list[ToolSpec] = []
    for index, tool in enumerate(body.tools or []):
        if tool.type != "function" or tool.function is None:
            raise InvalidRequestError(
                f"tools[{index}] is of type {tool.type!r}; hybrid accepts function tools only "
                f'({{"type": "function", "function": {{"name": ..., "parameters": ...}}}})',
                param=f"tools[{index}]",
            )
        spec = tool.function
        tools.append(ToolSpec(spec.name, spec.description, spec.parameters, spec.strict))
    names = [tool.name for tool in tools]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise InvalidRequestError(
            f"tools holds more than one function named {duplicates[0]!r}; give each tool a "
            f"distinct name",
            param="tools",
        )
    choice = _choice(body.tool_choice, names)
    return tuple(tools), choice, body.parallel_tool_calls


def _choice(choice: Any, names: list[str]) -> ToolChoice:
    if choice is None:
        return ToolChoice()
    if isinstance(choice, str):
        if choice not in _CHOICE_MODES:
            raise InvalidRequestError(
                f"tool_choice must be auto, none, required or a named function (got {choice!r})",
                param="tool_choice",
            )
        result = ToolChoice(choice)  # type: ignore[arg-type]
    elif choice.type != "function" or choice.function is None:
        raise InvalidRequestError(
            f"tool_choice of type {choice.type!r} is not supported; name a function "
            f'({{"type": "function", "function": {{"name": ...}}}}) or use auto, none or '
            f"required",
            param="tool_choice",
        )
    else:
        result = ToolChoice("named", choice.function.name)
    if result.mode in ("required", "named") and not names:
        raise InvalidRequestError(
            "tool_choice asks for a tool call, but the request offers no tools; send tools "
            "or drop tool_choice",
            param="tool_choice",
        )
    if result.name is not None and result.name not in names:
        raise InvalidRequestError(
            f"tool_choice names {result.name!r}, which is not among the tools ({', '.join(names)})",
            param="tool_choice",
        )
    return result


def message_tool_fields(message: ChatMessageIn, index: int) -> dict[str, Any]:
    """The tool fields of one message, as keyword arguments for a Message.

    Raises:
        InvalidRequestError: A ``tool`` message without ``tool_call_id``, tool calls on a
            message that is not the assistant's, or a tool call that is not a function.
    """
    where = f"messages[{index}]"
    if message.role == "tool":
        if not message.tool_call_id:
            raise InvalidRequestError(
                f"{where} has role tool but no tool_call_id; a tool message answers the "
                f"assistant's tool call with that id",
                param=f"{where}.tool_call_id",
            )
        return {"tool_call_id": message.tool_call_id, "name": message.name}
    if not message.tool_calls:
        return {}
    if message.role != "assistant":
        raise InvalidRequestError(
            f"{where} has tool_calls but role {message.role!r}; only assistant messages carry "
            f"tool calls",
            param=f"{where}.tool_calls",
        )
    calls = []
    for position, call in enumerate(message.tool_calls):
        if call.type != "function":
            raise InvalidRequestError(
                f"{where}.tool_calls[{position}] is of type {call.type!r}; hybrid understands "
                f"function calls only",
                param=f"{where}.tool_calls[{position}]",
            )
        arguments = call.function.arguments
        if not isinstance(arguments, str):
            arguments = json.dumps(arguments, ensure_ascii=False)
        calls.append(ToolCall(call.id, call.function.name, arguments))
    return {"tool_calls": tuple(calls)}


def tool_calls_json(calls: tuple[ToolCall, ...]) -> list[dict[str, Any]]:
    """``message.tool_calls`` of a whole answer."""
    return [
        {
            "id": call.id,
            "type": "function",
            "function": {"name": call.name, "arguments": call.arguments},
        }
        for call in calls
    ]


def tool_call_deltas(delta: ToolCallDelta) -> list[dict[str, Any]]:
    """The ``delta`` objects of the stream chunks that carry one tool call delta.

    A call's first delta becomes a chunk announcing the call (id, name, empty arguments),
    followed by a chunk with its first arguments when it has some, as OpenAI frames them.

    Returns:
        One or two ``delta`` objects, each for a chunk of its own.
    """
    deltas: list[dict[str, Any]] = []
    if delta.id is not None:
        deltas.append(
            {
                "tool_calls": [
                    {
                        "index": delta.index,
                        "id": delta.id,
                        "type": "function",
                        "function": {"name": delta.name or "", "arguments": ""},
                    }
                ]
            }
        )
    if delta.arguments:
        deltas.append(
            {"tool_calls": [{"index": delta.index, "function": {"arguments": delta.arguments}}]}
        )
    return deltas
