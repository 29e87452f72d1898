"""Finding tool calls in a local model's output.

A chat template that supports tools tells the model how to call one; the model then writes the
call as text, in one of two common formats:

- Hermes / Qwen: ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``, one block per
  call, possibly after some text;
- Llama 3.x: the whole answer is a JSON object ``{"name": ..., "parameters": {...}}`` (or
  several, separated by ``;``), sometimes behind a ``<|python_tag|>``.

:func:`parse_tool_calls` reads a whole answer; :class:`ToolCallFilter` streams an answer's text
while holding back what may turn out to be a call, so that a call's JSON never reaches the client
as text.  A bare JSON object counts as a call only when it names one of the request's tools: a
model asked for JSON data must not have its answer turned into a call.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Literal

from hybrid.generation import ToolCall

TOOL_CALL_OPEN = "<tool_call>"
TOOL_CALL_CLOSE = "</tool_call>"
PYTHON_TAG = "<|python_tag|>"
# What an answer that is a call starts with (after whitespace).
_CALL_STARTS = ("{", "[", TOOL_CALL_OPEN, PYTHON_TAG)


@dataclass(frozen=True)
class ParsedOutput:
    """An answer split into its text and its tool calls.

    Attributes:
        text: The text outside the calls (the whole answer when it made none).
        calls: The calls, in the order written.
    """

    text: str
    calls: tuple[ToolCall, ...] = ()


def new_call_id() -> str:
    """A fresh call id in OpenAI's style: local models write calls without ids."""
    return f"call_{uuid.uuid4().hex[:24]}"


def parse_tool_calls(text: str, tool_names: Collection[str]) -> ParsedOutput:
    """Find the tool calls in a whole answer.

    Args:
        text: The answer.
        tool_names: The names of the tools the request offered.

    Returns:
        The text and calls; the answer unchanged, without calls, when it holds no call in
        either format (or a malformed one, which the client then sees as text).
    """
    if TOOL_CALL_OPEN in text:
        parsed = _tagged(text)
        if parsed is not None:
            return parsed
    stripped = text.strip().removeprefix(PYTHON_TAG).strip()
    if stripped.startswith(("{", "[")):
        calls = _bare_json(stripped, tool_names)
        if calls:
            return ParsedOutput("", calls)
    return ParsedOutput(text)


def _tagged(text: str) -> ParsedOutput | None:
    """``<tool_call>`` blocks; the last one may lack its closing tag (the model stopped)."""
    outside: list[str] = []
    calls: list[ToolCall] = []
    rest = text
    while (start := rest.find(TOOL_CALL_OPEN)) >= 0:
        outside.append(rest[:start])
        body_start = start + len(TOOL_CALL_OPEN)
        end = rest.find(TOOL_CALL_CLOSE, body_start)
        body = rest[body_start:] if end < 0 else rest[body_start:end]
        rest = "" if end < 0 else rest[end + len(TOOL_CALL_CLOSE) :]
        call = _call(_json(body.strip()))
        if call is None:
            return None  # a block that is not a call: leave the whole answer as text
        calls.append(call)
    outside.append(rest)
    return ParsedOutput("".join(outside).strip(), tuple(calls))


def _bare_json(text: str, tool_names: Collection[str]) -> tuple[ToolCall, ...]:
    """One JSON call, a list of them, or several separated by ``;`` or whitespace."""
    decoder = json.JSONDecoder()
    values: list[Any] = []
    position = 0
    while position < len(text):
        try:
            value, position = decoder.raw_decode(text, position)
        except ValueError:
            return ()
        values.extend(value if isinstance(value, list) else [value])
        while position < len(text) and text[position] in " \t\r\n;,":
            position += 1
    calls = [_call(value) for value in values]
    if not calls or any(call is None or call.name not in tool_names for call in calls):
        return ()
    return tuple(call for call in calls if call is not None)


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _call(value: Any) -> ToolCall | None:
    """A call from ``{"name": ..., "arguments"|"parameters": {...}}``; None if it is not one."""
    if not isinstance(value, dict):
        return None
    name = value.get("name")
    arguments = value.get("arguments", value.get("parameters", {}))
    if isinstance(arguments, str):  # some models write the arguments as a JSON string
        arguments = _json(arguments)
    if not isinstance(name, str) or not name or not isinstance(arguments, dict):
        return None
    return ToolCall(new_call_id(), name, json.dumps(arguments, ensure_ascii=False))


class ToolCallFilter:
    """Streams a local answer's text, holding back what may be a tool call.

    An answer that starts like a call (``{``, ``[``, ``<tool_call>``, ``<|python_tag|>``) is
    held whole; otherwise text flows, except a tail that may be the start of ``<tool_call>``,
    and everything from a ``<tool_call>`` on.  :meth:`finish` parses what was held.

    Args:
        tool_names: The names of the tools the request offered.
    """

    def __init__(self, tool_names: Collection[str]) -> None:
        self._names = tool_names
        self._held = ""
        self._mode: Literal["undecided", "text", "call"] = "undecided"

    def feed(self, text: str) -> str:
        """Take the next piece of the answer.

        Returns:
            The text that is certainly not part of a call, to release now (may be empty).
        """
        self._held += text
        if self._mode == "undecided":
            start = self._held.lstrip()
            if not start or any(marker.startswith(start) for marker in _CALL_STARTS[2:]):
                return ""  # nothing yet, or the first characters of a marker
            self._mode = "call" if start.startswith(_CALL_STARTS) else "text"
        if self._mode == "call":
            return ""
        found = self._held.find(TOOL_CALL_OPEN)
        if found >= 0:
            released, self._held = self._held[:found], self._held[found:]
            self._mode = "call"
            return released
        keep = _partial_marker(self._held)
        cut = len(self._held) - keep
        released, self._held = self._held[:cut], self._held[cut:]
        return released

    def finish(self) -> ParsedOutput:
        """The end of the answer: the held text, and the calls found in it."""
        held, self._held = self._held, ""
        if self._mode != "call":
            return ParsedOutput(held)
        return parse_tool_calls(held, self._names)


def _partial_marker(text: str) -> int:
    """The length of the longest tail of ``text`` that begins ``<tool_call>``."""
    for size in range(min(len(TOOL_CALL_OPEN) - 1, len(text)), 0, -1):
        if TOOL_CALL_OPEN.startswith(text[-size:]):
            return size
    return 0
