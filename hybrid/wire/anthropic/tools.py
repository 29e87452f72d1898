"""Tool use in Anthropic's Messages format, both ways and on both sides.

From clients (``/v1/messages``): ``tools`` (name, description, ``input_schema``),
``tool_choice`` (``auto``, ``any``, ``tool``, ``none``, with ``disable_parallel_tool_use``),
``tool_use`` blocks in assistant turns and ``tool_result`` blocks in user turns.  Inside, a tool
result is a ``tool`` message of its own (OpenAI's shape), so a user turn with results becomes
those messages followed by the turn's own text, if any.  To clients: ``tool_use`` content blocks
with the parsed ``input``, and in a stream a ``content_block_start`` of type ``tool_use``
(``input: {}``) followed by ``input_json_delta`` deltas whose ``partial_json`` pieces join into
the input.

To providers: each :class:`~hybrid.generation.ToolSpec` becomes a tool with an
``input_schema``, the tool choice becomes Anthropic's (``required`` is ``any``; no parallel calls
is ``disable_parallel_tool_use``), an assistant message's calls become ``tool_use`` blocks after
its text, and a ``tool`` message becomes a ``tool_result`` block in a user turn; tools, calls and
results keep the ``cache_control`` marker an Anthropic client put on them.  From
providers: each ``tool_use`` block becomes a :class:`~hybrid.generation.ToolCallDelta`; in a
stream its ``input_json_delta`` pieces follow as argument fragments.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic_core import from_json

from hybrid.errors import GenerationError, InvalidRequestError, ProviderProtocolError
from hybrid.generation import (
    GenerationRequest,
    Message,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    ToolSpec,
)
from hybrid.wire.anthropic.schema import ContentBlockIn, MessagesRequest

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
        tools.append(
            ToolSpec(
                tool.name, tool.description, tool.input_schema, cache_control=tool.cache_control
            )
        )
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
    return ToolCall(block.id, block.name, arguments, cache_control=block.cache_control)


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
        cache_control=block.cache_control,
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
        _mark(entry, tool.cache_control)
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
    """An assistant turn as blocks: its text (if any), then a tool_use block per call.

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
        block = {"type": "tool_use", "id": call.id, "name": call.name, "input": arguments}
        blocks.append(_mark(block, call.cache_control))
    return blocks


def tool_result_block(message: Message) -> dict[str, Any]:
    """A ``tool`` message that names its call, as the ``tool_result`` block of a user turn."""
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": message.tool_call_id}
    if message.content:
        block["content"] = message.content
    if message.is_error:
        block["is_error"] = True
    return _mark(block, message.cache_control)


def _mark(block: dict[str, Any], cache_control: Mapping[str, Any] | None) -> dict[str, Any]:
    """``block`` with the prompt-cache marker the client put on it, if any."""
    if cache_control is not None:
        block["cache_control"] = dict(cache_control)
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
