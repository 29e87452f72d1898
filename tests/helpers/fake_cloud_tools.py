"""Tool calls for the fake cloud: answers that call tools, and the checks the real APIs make.

A `ToolScript` lists the calls the fake model makes (and the text before them). A request gets
them when it offers tools by those names, does not set ``tool_choice`` to none, and does not end
with tool results: so the first turn of a conversation calls the tools, and the turn that sends
the results back is answered with the fake's plain reply, as a real model would.

The answers are framed as the APIs frame them:

- OpenAI: ``message.tool_calls`` with ``content: null`` when there is no text, and
  ``finish_reason: "tool_calls"``; streamed, a chunk announcing each call (index, id, type,
  name, empty arguments), then chunks carrying only the index and a piece of the arguments.
- Anthropic: ``tool_use`` blocks after the text, ``stop_reason: "tool_use"``; streamed, a
  ``content_block_start`` with ``input: {}``, an empty ``input_json_delta``, then the input's
  JSON in pieces, then ``content_block_stop``.

The checks are the ones a translation bug would trip: every tool result answers a call of the
message just before it, every call gets its result, tools have the fields the API requires.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Literal

Api = Literal["openai", "anthropic"]
Json = dict[str, Any]
Event = tuple[str | None, str]


@dataclass(frozen=True)
class ScriptedCall:
    """One call the fake model makes: a tool's name and its arguments."""

    name: str
    arguments: Json = field(default_factory=dict)


@dataclass(frozen=True)
class ToolScript:
    """What the fake model answers when it calls tools: some text (may be empty), then calls."""

    calls: tuple[ScriptedCall, ...] = ()
    text: str = ""


@dataclass(frozen=True)
class ToolAnswer:
    """An answer with tool calls: a whole JSON body, or SSE events when `events` is set."""

    body: Json
    events: list[Event] | None = None


def compact(payload: object) -> str:
    return json.dumps(payload, separators=(",", ":"))


def pieces(text: str, count: int = 3) -> list[str]:
    """`text` cut into `count` pieces (fewer when short), as a model streams JSON."""
    size = max(1, -(-len(text) // count))
    return [text[i : i + size] for i in range(0, len(text), size)]


# --- which calls a request gets --------------------------------------------------------------


def calls_due(api: Api, body: Json, script: ToolScript) -> list[ScriptedCall]:
    """The scripted calls this request gets (none: answer with text as usual)."""
    offered = {_tool_name(api, tool) for tool in body.get("tools") or []}
    choice = body.get("tool_choice")
    if (
        not offered
        or choice == "none"
        or (isinstance(choice, dict) and choice.get("type") == "none")
    ):
        return []
    if _ends_with_results(api, body.get("messages") or []):
        return []
    return [call for call in script.calls if call.name in offered]


def _tool_name(api: Api, tool: Any) -> str | None:
    if not isinstance(tool, dict):
        return None
    if api == "anthropic":
        return tool.get("name")
    function = tool.get("function")
    return function.get("name") if isinstance(function, dict) else None


def _ends_with_results(api: Api, messages: list[Any]) -> bool:
    if not messages or not isinstance(messages[-1], dict):
        return False
    last = messages[-1]
    if api == "openai":
        return last.get("role") == "tool"
    content = last.get("content")
    return isinstance(content, list) and any(
        isinstance(block, dict) and block.get("type") == "tool_result" for block in content
    )


# --- the checks the real APIs make -----------------------------------------------------------


def tool_problem(api: Api, body: Json) -> str | None:
    """What the real API would answer 400 about, for the tool parts of a request; or None."""
    return _openai_problem(body) if api == "openai" else _anthropic_problem(body)


def _openai_problem(body: Json) -> str | None:
    for index, tool in enumerate(body.get("tools") or []):
        if (
            not isinstance(tool, dict)
            or tool.get("type") != "function"
            or not _tool_name("openai", tool)
        ):
            return f"Invalid value for 'tools[{index}]': expected a function tool with a name."
    open_calls: list[str] = []
    for index, message in enumerate(body.get("messages") or []):
        role = message.get("role") if isinstance(message, dict) else None
        if role == "tool":
            if message.get("tool_call_id") not in open_calls:
                return (
                    f"Invalid parameter: messages[{index}] with role 'tool' must be a response "
                    f"to a preceeding message with 'tool_calls'."
                )
            open_calls.remove(message["tool_call_id"])
            continue
        if open_calls:
            return (
                "An assistant message with 'tool_calls' must be followed by tool messages "
                "responding to each 'tool_call_id'. The following tool_call_ids did not have "
                f"response messages: {', '.join(open_calls)}"
            )
        if role == "assistant":
            for call in message.get("tool_calls") or []:
                arguments = call.get("function", {}).get("arguments")
                if not isinstance(arguments, str):
                    return f"Invalid type for 'messages[{index}].tool_calls': arguments is text."
                open_calls.append(call.get("id"))
    return None


def _anthropic_problem(body: Json) -> str | None:
    for index, tool in enumerate(body.get("tools") or []):
        if not isinstance(tool, dict) or not tool.get("name"):
            return f"tools.{index}.custom.name: Field required"
        if not isinstance(tool.get("input_schema"), dict):
            return f"tools.{index}.custom.input_schema: Field required"
    open_calls: list[str] = []
    for index, message in enumerate(body.get("messages") or []):
        content = message.get("content") if isinstance(message, dict) else None
        blocks = content if isinstance(content, list) else []
        results = [b.get("tool_use_id") for b in blocks if b.get("type") == "tool_result"]
        stray = [result for result in results if result not in open_calls]
        if stray:
            return (
                f"messages.{index}.content.0: unexpected `tool_use_id` found in `tool_result` "
                f"blocks: {stray[0]}. Each `tool_result` block must have a corresponding "
                f"`tool_use` block in the previous message."
            )
        missing = [call for call in open_calls if call not in results]
        if missing:
            return (
                f"messages.{index - 1}: `tool_use` ids were found without `tool_result` blocks "
                f"immediately after: {missing[0]}. Each `tool_use` block must have a "
                f"corresponding `tool_result` block in the next message."
            )
        open_calls = []
        for block in blocks:
            if block.get("type") == "tool_use":
                if message.get("role") != "assistant" or not isinstance(block.get("input"), dict):
                    return f"messages.{index}: a tool_use block needs the assistant and an input"
                open_calls.append(block.get("id"))
    return None


# --- the answers -----------------------------------------------------------------------------


def tool_answer(
    api: Api, body: Json, script: ToolScript, calls: list[ScriptedCall], prompt_tokens: int
) -> ToolAnswer:
    """The answer that makes `calls` after `script.text`, whole or streamed as `body` asks."""
    if api == "openai":
        return _openai(body, script.text, calls, prompt_tokens)
    return _anthropic(body, script.text, calls, prompt_tokens)


def _completion_tokens(text: str, calls: list[ScriptedCall]) -> int:
    return len(text.split()) + sum(1 + len(call.arguments) for call in calls)


def _openai(body: Json, text: str, calls: list[ScriptedCall], prompt_tokens: int) -> ToolAnswer:
    tool_calls: list[Json] = [
        {
            "id": f"call_{secrets.token_hex(12)}",
            "type": "function",
            "function": {"name": call.name, "arguments": compact(call.arguments)},
        }
        for call in calls
    ]
    completion = _completion_tokens(text, calls)
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": prompt_tokens + completion,
    }
    head: Json = {
        "id": f"chatcmpl-{secrets.token_hex(12)}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body["model"],
        "system_fingerprint": "fp_fakec10ud1",
    }
    if not body.get("stream"):
        message = {
            "role": "assistant",
            "content": text or None,
            "tool_calls": tool_calls,
            "refusal": None,
            "annotations": [],
        }
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": "tool_calls"}
        return ToolAnswer({**head, "choices": [choice], "usage": usage})
    head["object"] = "chat.completion.chunk"
    options = body.get("stream_options")
    with_usage = isinstance(options, dict) and options.get("include_usage") is True

    def chunk(delta: Json, finish: str | None = None) -> Event:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return None, compact(
            {**head, "choices": [choice], **({"usage": None} if with_usage else {})}
        )

    events = [chunk({"role": "assistant", "content": "" if text else None, "refusal": None})]
    events += [chunk({"content": word}) for word in _words(text)]
    for index, call in enumerate(tool_calls):
        function = call["function"]
        announce = {"index": index, "id": call["id"], "type": "function"}
        events.append(
            chunk(
                {
                    "tool_calls": [
                        {**announce, "function": {"name": function["name"], "arguments": ""}}
                    ]
                }
            )
        )
        events += [
            chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
            for piece in pieces(function["arguments"])
        ]
    events.append(chunk({}, "tool_calls"))
    if with_usage:
        events.append((None, compact({**head, "choices": [], "usage": usage})))
    events.append((None, "[DONE]"))
    return ToolAnswer({}, events)


def _anthropic(body: Json, text: str, calls: list[ScriptedCall], prompt_tokens: int) -> ToolAnswer:
    blocks: list[Json] = [{"type": "text", "text": text}] if text else []
    blocks += [
        {
            "type": "tool_use",
            "id": f"toolu_01{secrets.token_hex(11)}",
            "name": c.name,
            "input": c.arguments,
        }
        for c in calls
    ]
    usage = {
        "input_tokens": prompt_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": _completion_tokens(text, calls),
        "service_tier": "standard",
    }
    message: Json = {
        "id": f"msg_{secrets.token_hex(12)}",
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "content": blocks,
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": usage,
    }
    if not body.get("stream"):
        return ToolAnswer(message)

    def event(name: str, **data: Any) -> Event:
        return name, compact({"type": name, **data})

    started = message | {"content": [], "stop_reason": None, "stop_sequence": None}
    started["usage"] = usage | {"output_tokens": 1}
    events = [event("message_start", message=started), event("ping")]
    for index, block in enumerate(blocks):
        if block["type"] == "text":
            events.append(
                event(
                    "content_block_start", index=index, content_block={"type": "text", "text": ""}
                )
            )
            events += [
                event(
                    "content_block_delta", index=index, delta={"type": "text_delta", "text": word}
                )
                for word in _words(block["text"])
            ]
        else:
            opening = block | {"input": {}}
            events.append(event("content_block_start", index=index, content_block=opening))
            events += [
                event(
                    "content_block_delta",
                    index=index,
                    delta={"type": "input_json_delta", "partial_json": piece},
                )
                for piece in ["", *pieces(compact(block["input"]))]
            ]
        events.append(event("content_block_stop", index=index))
    events += [
        event(
            "message_delta",
            delta={"stop_reason": "tool_use", "stop_sequence": None},
            usage={"output_tokens": usage["output_tokens"]},
        ),
        event("message_stop"),
    ]
    return ToolAnswer({}, events)


def _words(text: str) -> list[str]:
    words = text.split(" ")
    return [word if i == 0 else " " + word for i, word in enumerate(words)] if text else []
