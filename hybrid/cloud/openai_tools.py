"""Tools and tool calls in OpenAI's chat completions format, for the OpenAI provider.

hybrid's tool types are OpenAI's already, so the request side is a plain rendering; the answer
side reads ``message.tool_calls`` of a whole answer and the ``delta.tool_calls`` fragments of a
stream.  Compatible servers differ in small ways that are absorbed here: a call without an id
gets one, arguments sent as an object are read as JSON, and a server that numbers every call of
a parallel batch ``index: 0`` (telling them apart by id only) still yields separate calls.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from hybrid.errors import ProviderProtocolError
from hybrid.generation import GenerationRequest, Message, ToolCallDelta


def new_call_id() -> str:
    """A fresh id in OpenAI's style, for a call whose source gave none."""
    return f"call_{uuid.uuid4().hex[:24]}"


def message_json(message: Message, *, modern: bool) -> dict[str, Any]:
    """One message of a chat completion request.

    Args:
        message: The message.
        modern: The API is OpenAI's own, which keeps the ``developer`` role; compatible
            servers get ``system`` instead.

    Returns:
        The message; an assistant message with tool calls has ``content: null`` when it has
        no text, and a ``tool`` message names the call it answers.  A failed tool's result
        (Anthropic's ``is_error``, which OpenAI has no field for) says so in its text.
    """
    role = "system" if message.role == "developer" and not modern else message.role
    content: Any = [dict(part) for part in message.parts] if message.parts else message.content
    body: dict[str, Any] = {"role": role, "content": content}
    if message.role == "assistant" and message.tool_calls:
        body["content"] = content or None
        body["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in message.tool_calls
        ]
    if message.role == "tool":
        body["tool_call_id"] = message.tool_call_id
        if message.is_error:
            body["content"] = f"Error: {message.content}"
    return body


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
