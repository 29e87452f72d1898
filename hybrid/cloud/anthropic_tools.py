"""Tools and tool calls between hybrid's (OpenAI-shaped) types and Anthropic's Messages API.

Requests: each :class:`~hybrid.generation.ToolSpec` becomes a tool with an ``input_schema``,
the tool choice becomes Anthropic's (``required`` is ``any``; no parallel calls is
``disable_parallel_tool_use``), an assistant message's calls become ``tool_use`` blocks after its
text, and a ``tool`` message becomes a ``tool_result`` block in a user turn.  Answers: each
``tool_use`` block becomes a :class:`~hybrid.generation.ToolCallDelta`; in a stream its
``input_json_delta`` pieces follow as argument fragments.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic_core import from_json

from hybrid.errors import InvalidRequestError, ProviderProtocolError
from hybrid.generation import GenerationRequest, Message, ToolCallDelta

# A function without parameters still needs a schema: Anthropic requires input_schema.
_NO_PARAMETERS = {"type": "object", "properties": {}}
_CHOICE_TYPES = {"auto": "auto", "required": "any", "none": "none", "named": "tool"}


def tool_fields(request: GenerationRequest) -> dict[str, Any]:
    """``tools`` and ``tool_choice`` for a request that offers tools (nothing otherwise).

    ``tool_choice`` is left out when it is Anthropic's default (``auto``, parallel calls
    allowed).
    """
    if not request.tools:
        return {}
    tools = []
    for tool in request.tools:
        entry: dict[str, Any] = {"name": tool.name}
        if tool.description is not None:
            entry["description"] = tool.description
        entry["input_schema"] = dict(tool.parameters or _NO_PARAMETERS)
        tools.append(entry)
    fields: dict[str, Any] = {"tools": tools}
    choice = request.tool_choice
    tool_choice: dict[str, Any] = {"type": _CHOICE_TYPES[choice.mode]}
    if choice.mode == "named":
        tool_choice["name"] = choice.name
    if request.parallel_tool_calls is False and choice.mode != "none":
        tool_choice["disable_parallel_tool_use"] = True
    if tool_choice != {"type": "auto"}:
        fields["tool_choice"] = tool_choice
    return fields


def assistant_blocks(message: Message, text: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    """An assistant turn that made tool calls: its text (if any), then a tool_use block each.

    Args:
        message: The assistant message.
        text: Its content as already translated (a string or content blocks).

    Raises:
        InvalidRequestError: A call's arguments are not a JSON object, which Anthropic's
            ``input`` must be.
    """
    blocks: list[dict[str, Any]] = []
    if isinstance(text, str):
        if text:
            blocks.append({"type": "text", "text": text})
    else:
        blocks.extend(text)
    for call in message.tool_calls:
        try:
            # pydantic's parser: arguments nested too deep for json.loads are a ValueError here.
            arguments = from_json(call.arguments) if call.arguments.strip() else {}
        except ValueError:
            arguments = None
        if not isinstance(arguments, dict):
            raise InvalidRequestError(
                f"the tool call {call.id!r} to {call.name!r} has arguments that are not a JSON "
                f"object ({call.arguments[:80]!r}); Anthropic's API needs one. Fix the "
                f"conversation's arguments or send it to an OpenAI model.",
                param="messages",
            )
        blocks.append({"type": "tool_use", "id": call.id, "name": call.name, "input": arguments})
    return blocks


def tool_result_block(message: Message) -> dict[str, Any]:
    """A ``tool`` message that names its call, as the ``tool_result`` block of a user turn."""
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": message.tool_call_id}
    if message.content:
        block["content"] = message.content
    if message.is_error:
        block["is_error"] = True
    return block


def tool_call_events(provider: str, content: list[Any]) -> list[ToolCallDelta]:
    """The ``tool_use`` blocks of a whole answer, one whole delta each, in order.

    Raises:
        ProviderProtocolError: A tool_use block lacks its id, name or object input.
    """
    events: list[ToolCallDelta] = []
    for block in content:
        if not isinstance(block, dict) or block.get("type") != "tool_use":
            continue
        call_id, name, arguments = block.get("id"), block.get("name"), block.get("input")
        if not isinstance(call_id, str) or not isinstance(name, str):
            raise ProviderProtocolError(provider, "a tool_use block has no id or name")
        if not isinstance(arguments, dict):
            raise ProviderProtocolError(provider, f"the tool_use block {call_id} has no input")
        text = json.dumps(arguments, ensure_ascii=False, separators=(",", ":"))
        events.append(ToolCallDelta(len(events), call_id, name, text))
    return events


class ToolUseReader:
    """Reads the tool_use blocks of one Messages API stream.

    Blocks are numbered by Anthropic across text and tool_use blocks; calls are numbered from 0
    in the order they start.  A block whose input arrived in no fragment (a tool without
    parameters) gets ``{}`` when it closes, so its arguments are still a JSON object.

    Args:
        provider: The provider's name, for errors.
    """

    def __init__(self, provider: str) -> None:
        self._provider = provider
        self._calls: dict[int, int] = {}  # content block index -> call index
        self._empty: set[int] = set()  # blocks with no input fragment yet

    @property
    def count(self) -> int:
        """Calls started so far."""
        return len(self._calls)

    def start(self, data: dict[str, Any]) -> list[ToolCallDelta]:
        """A ``content_block_start`` event: a tool_use block starts a call."""
        block = data.get("content_block")
        if not isinstance(block, dict) or block.get("type") != "tool_use":
            return []
        index, call_id, name = data.get("index"), block.get("id"), block.get("name")
        if not isinstance(index, int) or not isinstance(call_id, str) or not isinstance(name, str):
            raise ProviderProtocolError(
                self._provider,
                "a tool_use block started without its index, id or name; the answer is "
                "incomplete, retry the request",
            )
        self._calls[index] = len(self._calls)
        self._empty.add(index)
        return [ToolCallDelta(self._calls[index], call_id, name, "")]

    def delta(self, data: dict[str, Any], delta: dict[str, Any]) -> list[ToolCallDelta]:
        """A ``content_block_delta`` of type ``input_json_delta``: more of a call's input."""
        index, partial = data.get("index"), delta.get("partial_json")
        if index not in self._calls or not isinstance(partial, str) or not partial:
            return []
        self._empty.discard(index)
        return [ToolCallDelta(self._calls[index], arguments=partial)]

    def stop(self, data: dict[str, Any]) -> list[ToolCallDelta]:
        """A ``content_block_stop``: a call whose input never arrived gets ``{}``."""
        index = data.get("index")
        if index not in self._empty:
            return []
        self._empty.discard(index)
        return [ToolCallDelta(self._calls[index], arguments="{}")]
