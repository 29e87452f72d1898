"""Tool calling in OpenAI's chat completions format, both ways and on both sides.

From clients (``/v1/chat/completions``): ``tools`` (function tools), ``tool_choice``,
``parallel_tool_calls``, assistant messages with ``tool_calls`` and ``tool`` messages with
results.  To clients: ``message.tool_calls`` of a whole answer, and the ``delta.tool_calls`` of a
stream, framed as OpenAI frames them: a call's first chunk has its ``index``, ``id``,
``type: "function"``, ``function.name`` and empty ``arguments``; the following chunks carry only
the ``index`` and the next piece of ``function.arguments``.  The legacy ``functions`` /
``function_call`` parameters (replaced by ``tools`` in 2023) are refused with a message saying
what to send instead.

To providers: hybrid's tool types are OpenAI's already, so the request side is a plain
rendering.  From providers: ``message.tool_calls`` of a whole answer and the ``delta.tool_calls``
fragments of a stream.  Compatible servers differ in small ways that are absorbed here: a call
without an id gets one, arguments sent as an object are read as JSON, and a server that numbers
every call of a parallel batch ``index: 0`` (telling them apart by id only) still yields
separate calls.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from hybrid.errors import InvalidRequestError, ProviderProtocolError
from hybrid.generation import GenerationRequest, ToolCall, ToolCallDelta, ToolChoice, ToolSpec
from hybrid.wire.openai.schema import ChatCompletionRequest, ChatMessageIn

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


def new_call_id() -> str:
    """A fresh id in OpenAI's style, for a call whose source gave none."""
    return f"call_{uuid.uuid4().hex[:24]}"


def tool_fields(request: GenerationRequest) -> dict[str, Any]:
    """``tools``, ``tool_choice`` and ``parallel_tool_calls`` for a request that offers tools.

    ``tool_choice: auto`` is OpenAI's default when tools are sent and is left out, as is
    ``parallel_tool_calls`` when the client did not set it: some compatible servers reject
    parameters they do not know.
    """
    if not request.tools:
        return {}
    tools = []
    for tool in request.tools:
        function: dict[str, Any] = {"name": tool.name}
        if tool.description is not None:
            function["description"] = tool.description
        if tool.parameters is not None:
            function["parameters"] = dict(tool.parameters)
        if tool.strict is not None:
            function["strict"] = tool.strict
        tools.append({"type": "function", "function": function})
    fields: dict[str, Any] = {"tools": tools}
    choice = request.tool_choice
    if choice.mode == "named":
        fields["tool_choice"] = {"type": "function", "function": {"name": choice.name}}
    elif choice.mode != "auto":
        fields["tool_choice"] = choice.mode
    if request.parallel_tool_calls is not None:
        fields["parallel_tool_calls"] = request.parallel_tool_calls
    return fields


def tool_call_events(provider: str, tool_calls: Any) -> list[ToolCallDelta]:
    """The calls of a whole answer's ``message.tool_calls``, one whole delta each.

    Raises:
        ProviderProtocolError: ``tool_calls`` is not a list of calls with a function name.
    """
    if tool_calls is None:
        return []
    if not isinstance(tool_calls, list):
        raise ProviderProtocolError(provider, "the answer's tool_calls is not a list")
    events = []
    for index, call in enumerate(tool_calls):
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict):
            function = {}
        name = function.get("name")
        if not isinstance(name, str) or not name:
            raise ProviderProtocolError(
                provider, f"tool call {index} of the answer has no function name"
            )
        call_id = call.get("id")
        events.append(
            ToolCallDelta(
                index,
                call_id if isinstance(call_id, str) and call_id else new_call_id(),
                name,
                _arguments(function.get("arguments")),
            )
        )
    return events


class ToolCallReader:
    """Reads the ``delta.tool_calls`` fragments of one stream.

    Calls are numbered in the order they start, whatever the upstream indices; the first
    delta of each carries its id and name.

    Args:
        provider: The provider's name, for errors.
    """

    def __init__(self, provider: str) -> None:
        self._provider = provider
        # upstream index -> (hybrid's index, the id) of the latest call started at that index
        self._calls: dict[int, tuple[int, str]] = {}
        self._count = 0
        self._last: int | None = None

    @property
    def count(self) -> int:
        """Calls started so far."""
        return self._count

    def feed(self, fragments: Any) -> list[ToolCallDelta]:
        """The deltas of one chunk's ``delta.tool_calls`` (None or absent: none)."""
        if not isinstance(fragments, list):
            return []
        deltas = []
        for fragment in fragments:
            if isinstance(fragment, dict):
                delta = self._fragment(fragment)
                if delta is not None:
                    deltas.append(delta)
        return deltas

    def _fragment(self, fragment: dict[str, Any]) -> ToolCallDelta | None:
        function = fragment.get("function")
        function = function if isinstance(function, dict) else {}
        arguments = _arguments(function.get("arguments"))
        call_id = fragment.get("id") if isinstance(fragment.get("id"), str) else None
        upstream = fragment.get("index")
        if not isinstance(upstream, int):
            # No index: a fragment with an id starts a call, one without continues the last.
            upstream = self._count if call_id or self._last is None else self._last
        known = self._calls.get(upstream)
        if known is not None and (not call_id or call_id == known[1]):
            self._last = upstream
            return ToolCallDelta(known[0], arguments=arguments) if arguments else None
        name = function.get("name")
        if not isinstance(name, str) or not name:
            raise ProviderProtocolError(
                self._provider,
                "a streamed tool call started without a function name; the answer is "
                "incomplete, retry the request",
            )
        # A known upstream index with a new id starts a call too: a server that numbers every
        # call of a batch 0; fragments without an id then continue this newest call.
        index, self._count = self._count, self._count + 1
        self._calls[upstream] = (index, call_id or new_call_id())
        self._last = upstream
        return ToolCallDelta(index, self._calls[upstream][1], name, arguments)


def _arguments(value: Any) -> str:
    """Arguments as JSON text: OpenAI sends a string; some servers send the object."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return json.dumps(value, ensure_ascii=False)
