"""Translation between hybrid's requests and events and Anthropic's Messages API, both ways.

Pure functions and a stream decoder, no I/O.  The differences they bridge:

- System prompts are a top-level ``system`` string, not messages.
- Messages must alternate user/assistant, so consecutive same-role messages are merged.
- ``max_tokens`` is required; ``stop`` is ``stop_sequences``; ``temperature`` stops at 1.
- There is no JSON mode: a JSON ``response_format`` becomes a system instruction, which the
  model follows well but which, unlike OpenAI's constrained decoding, guarantees nothing.
- There are no log-probabilities.
- Tool calls are content blocks (``tool_use``) and their results blocks of a user turn
  (``tool_result``), not messages of their own (:mod:`hybrid.cloud.anthropic_tools`).
- Streams are typed events (``message_start``, ``content_block_delta``, ``message_delta``,
  ``message_stop``, ``ping``, ``error``) instead of completion chunks.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from hybrid.cloud.anthropic_tools import (
    ToolUseReader,
    assistant_blocks,
    tool_call_events,
    tool_fields,
    tool_result_block,
)
from hybrid.cloud.sse import SseEvent, StreamDecoder
from hybrid.errors import (
    InvalidRequestError,
    ProviderAuthError,
    ProviderError,
    ProviderProtocolError,
    ProviderRateLimitedError,
    ProviderRejectedError,
    ProviderUnavailableError,
)
from hybrid.generation import (
    FinishReason,
    GenerationDone,
    GenerationEvent,
    GenerationRequest,
    Message,
    ResponseFormat,
    TextDelta,
    Usage,
)

_FINISH_REASONS: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "tool_use": "tool_calls",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "refusal": "content_filter",
}

# Anthropic counts cached prompt tokens apart; OpenAI's prompt_tokens includes them.
_INPUT_KEYS = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
_COUNT_KEYS = (*_INPUT_KEYS, "output_tokens")

# Anthropic's error types, by the ProviderError that says the same thing.
_ERROR_TYPES: dict[str, type[ProviderError]] = {
    "rate_limit_error": ProviderRateLimitedError,
    "authentication_error": ProviderAuthError,
    "permission_error": ProviderAuthError,
    "invalid_request_error": ProviderRejectedError,
    "not_found_error": ProviderRejectedError,
    "request_too_large": ProviderRejectedError,
}


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
        system: list[str] = []
        turns = [{"role": "user", "content": request.prompt}]
    else:
        system, turns = split_system(request.messages)
    if params.response_format is not None:
        system.append(json_instruction(params.response_format))
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": params.max_tokens if params.max_tokens is not None else default_max_tokens,
        "messages": turns,
    }
    if system:
        body["system"] = "\n\n".join(system)
    body.update(tool_fields(request))
    if params.stop:
        body["stop_sequences"] = list(params.stop)
    if params.temperature is not None:
        # OpenAI's scale runs to 2, Anthropic's to 1; beyond 1 means "as random as it gets".
        body["temperature"] = min(max(params.temperature, 0.0), 1.0)
    if params.top_p is not None:
        body["top_p"] = params.top_p
    if request.stream:
        body["stream"] = True
    return body


def split_system(messages: tuple[Message, ...]) -> tuple[list[str], list[dict[str, Any]]]:
    """Separate the system prompt from the conversation, merging same-role neighbours.

    ``system`` and ``developer`` messages (wherever they appear) become the system prompt, in
    order.  Every other role but ``assistant`` (``user``, ``tool``, ...) speaks as the user; a
    ``tool`` message naming its call as a ``tool_result`` block, and an assistant's tool calls
    as ``tool_use`` blocks after its text.  Consecutive messages of one role are joined (text
    with a blank line), since the API requires turns to alternate.

    Raises:
        InvalidRequestError: A part or a tool call Anthropic cannot take.

    Returns:
        The system prompt's parts and the alternating turns.
    """
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for message in messages:
        if message.role in ("system", "developer"):
            system.append(message.content)
            continue
        role = "assistant" if message.role == "assistant" else "user"
        content: str | list[dict[str, Any]] = (
            content_blocks(message.parts) if message.parts else message.content
        )
        if message.role == "tool" and message.tool_call_id:
            content = [tool_result_block(message)]
        elif message.tool_calls and role == "assistant":
            content = assistant_blocks(message, content)
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"] = _joined(turns[-1]["content"], content)
        else:
            turns.append({"role": role, "content": content})
    return system, turns


def content_blocks(parts: tuple[Any, ...]) -> list[dict[str, Any]]:
    """OpenAI content parts as Anthropic content blocks: text, and images by URL or base64.

    Raises:
        InvalidRequestError: A part Anthropic cannot take (audio) or an image URL it cannot
            read.
    """
    blocks: list[dict[str, Any]] = []
    for part in parts:
        kind = part.get("type")
        if kind == "text":
            blocks.append({"type": "text", "text": part.get("text", "")})
        elif kind == "image_url":
            blocks.append(_image_block(part.get("image_url")))
        else:
            raise InvalidRequestError(
                f"Anthropic's API does not take {kind!r} content; send it to an OpenAI model",
                param="messages",
            )
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


def answer_events(provider: str, data: Any) -> list[GenerationEvent]:
    """The events of a whole (non-streamed) Messages API response.

    The ``text`` blocks make up the answer's text and each ``tool_use`` block a tool call;
    other blocks (thinking) are not requested by hybrid and are skipped.

    Raises:
        ProviderProtocolError: ``data`` is not a message object, or a tool_use block is
            malformed.
    """
    if not isinstance(data, dict) or not isinstance(data.get("content"), list):
        raise ProviderProtocolError(
            provider,
            "the response is not a Messages API message (no content list); check that the "
            "base URL points at Anthropic's API",
        )
    text = "".join(
        block["text"]
        for block in data["content"]
        if isinstance(block, dict) and block.get("type") == "text"
        if isinstance(block.get("text"), str)
    )
    events: list[GenerationEvent] = [TextDelta(text)] if text else []
    calls = tool_call_events(provider, data["content"])
    events.extend(calls)
    usage = data.get("usage")
    usage = usage if isinstance(usage, dict) else {}
    events.append(
        GenerationDone(
            finish_reason=finish_reason(data.get("stop_reason"), tool_calls=bool(calls)),
            stop_sequence=_stop_sequence(data),
            usage=usage_of({key: _count(usage.get(key)) for key in _COUNT_KEYS}),
        )
    )
    return events


def usage_of(counts: dict[str, int]) -> Usage:
    """hybrid's usage from the Messages API's counts.

    Anthropic's ``input_tokens`` leaves out the prompt tokens read from
    (``cache_read_input_tokens``) and written to (``cache_creation_input_tokens``) its prompt
    cache; hybrid's ``prompt_tokens`` holds all three, as OpenAI's does.
    """
    return Usage(
        sum(counts.get(key, 0) for key in _INPUT_KEYS),
        counts.get("output_tokens", 0),
        cache_read_tokens=counts.get("cache_read_input_tokens", 0),
        cache_write_tokens=counts.get("cache_creation_input_tokens", 0),
    )


def finish_reason(stop_reason: Any, *, tool_calls: bool = False) -> FinishReason:
    """OpenAI's finish reason for Anthropic's ``stop_reason``.

    Args:
        stop_reason: Anthropic's stop reason.
        tool_calls: The answer made tool calls; ``tool_use`` without any (a server tool's
            turn) is a plain stop.
    """
    reason = _FINISH_REASONS.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"
    return "stop" if reason == "tool_calls" and not tool_calls else reason


def error_from_event(provider: str, data: Any) -> ProviderError:
    """The error an ``event: error`` reports, typed by Anthropic's error type.

    ``overloaded_error`` (and anything unknown) is the provider's health: unavailable.
    """
    error = data.get("error") if isinstance(data, dict) else None
    error = error if isinstance(error, dict) else {}
    kind = error.get("type")
    message = error.get("message") or kind or "no message"
    cls: type[ProviderError] = ProviderUnavailableError
    if isinstance(kind, str):
        cls = _ERROR_TYPES.get(kind, ProviderUnavailableError)
    return cls(
        provider,
        f"the provider broke off the answer with an error ({message}); the answer is "
        f"incomplete, retry the request",
    )


class AnthropicStreamDecoder(StreamDecoder):
    """Reads a Messages API stream.

    ``message_start`` carries the input token count, ``content_block_delta`` the text (and
    tool inputs), ``message_delta`` the stop reason and output tokens, ``message_stop`` ends the
    answer; a stream that closes before ``message_stop`` was cut short, whatever it said before.
    A ``tool_use`` block's start, input pieces and stop become tool call deltas.

    Args:
        provider: The provider's name, for errors.
    """

    def __init__(self, provider: str) -> None:
        self._provider = provider
        self._counts: dict[str, int] = {}
        self._stop_reason: Any = None
        self._stop_sequence: str | None = None
        self._finished = False
        self._tools = ToolUseReader(provider)

    @property
    def finished(self) -> bool:
        return self._finished

    def feed(self, event: SseEvent) -> list[GenerationEvent]:
        try:
            data = orjson.loads(event.data)
        except ValueError as exc:
            raise ProviderProtocolError(
                self._provider,
                f"a stream event is not JSON ({exc}); the answer is incomplete, retry the request",
            ) from exc
        if not isinstance(data, dict):
            raise ProviderProtocolError(
                self._provider, "a stream event is not a JSON object; the answer is incomplete"
            )
        kind = data.get("type", event.event)
        if kind == "error":
            raise error_from_event(self._provider, data)
        if kind == "message_start":
            message = data.get("message")
            usage = message.get("usage") if isinstance(message, dict) else None
            self._usage(usage)
        elif kind == "content_block_start":
            return list(self._tools.start(data))
        elif kind == "content_block_stop":
            return list(self._tools.stop(data))
        elif kind == "content_block_delta":
            delta = data.get("delta")
            if isinstance(delta, dict) and delta.get("type") == "text_delta":
                text = delta.get("text")
                if isinstance(text, str) and text:
                    return [TextDelta(text)]
            elif isinstance(delta, dict) and delta.get("type") == "input_json_delta":
                return list(self._tools.delta(data, delta))
        elif kind == "message_delta":
            delta = data.get("delta")
            if isinstance(delta, dict):
                self._stop_reason = delta.get("stop_reason")
                self._stop_sequence = _stop_sequence(delta)
            self._usage(data.get("usage"))
        elif kind == "message_stop":
            self._finished = True
            return [
                GenerationDone(
                    finish_reason=finish_reason(
                        self._stop_reason, tool_calls=self._tools.count > 0
                    ),
                    stop_sequence=self._stop_sequence,
                    usage=usage_of(self._counts),
                )
            ]
        # ping, and event types added later, carry no output.
        return []

    def end(self) -> list[GenerationEvent]:
        raise ProviderProtocolError(
            self._provider,
            "the stream ended before message_stop; the answer is incomplete, retry the request",
        )

    def _usage(self, usage: Any) -> None:
        if not isinstance(usage, dict):
            return
        # message_start has the input counts; message_delta repeats what it knows cumulatively
        # (only output_tokens, from older API versions): the latest value of each count holds.
        for key in _COUNT_KEYS:
            if key in usage and usage[key] is not None:
                self._counts[key] = _count(usage[key])


def _stop_sequence(data: dict[str, Any]) -> str | None:
    value = data.get("stop_sequence")
    return value if isinstance(value, str) else None


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0
