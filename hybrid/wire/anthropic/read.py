"""What Anthropic's Messages API answers, read into hybrid's generation events.

A whole ``message`` becomes its events at once (:func:`answer_events`); a stream of typed events
(``message_start``, ``content_block_delta``, ``message_delta``, ``message_stop``, ``ping``,
``error``) is read by :class:`AnthropicStreamDecoder`.  Token counts are OpenAI's inside:
``prompt_tokens`` includes the cached prompt tokens Anthropic counts apart.
"""

from __future__ import annotations

from typing import Any

import orjson

from hybrid.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderProtocolError,
    ProviderRateLimitedError,
    ProviderRejectedError,
    ProviderUnavailableError,
)
from hybrid.generation import FinishReason, GenerationDone, GenerationEvent, TextDelta, Usage
from hybrid.wire.anthropic.thinking import ThinkingReader, thinking_events
from hybrid.wire.anthropic.tools import ToolUseReader, tool_call_events
from hybrid.wire.sse import SseEvent, StreamDecoder

_FINISH_REASONS: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "tool_use": "tool_calls",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "refusal": "content_filter",
}

_THINKING_DELTAS = ("thinking_delta", "signature_delta")

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


def answer_events(provider: str, data: Any) -> list[GenerationEvent]:
    """The events of a whole (non-streamed) Messages API response.

    Each thinking block (asked for by an Anthropic client) is a thinking delta, the ``text``
    blocks make up the answer's text and each ``tool_use`` block a tool call; other blocks
    (a server tool's) are skipped.

    Raises:
        ProviderProtocolError: ``data`` is not a message object, or a tool_use or thinking
            block is malformed.
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
    events: list[GenerationEvent] = [*thinking_events(provider, data["content"])]
    if text:
        events.append(TextDelta(text))
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
    A ``tool_use`` block's start, input pieces and stop become tool call deltas; a thinking
    block's start, ``thinking_delta`` and ``signature_delta`` pieces thinking deltas.

    The prompt's counts from ``message_start`` come out on an empty text delta
    (:attr:`~hybrid.generation.TextDelta.prompt_usage`) just ahead of the first output event,
    not at once: until output arrives the answer has not begun, and a failure before it (an
    ``overloaded_error`` event right after ``message_start``) can still be retried.

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
        self._thinking = ThinkingReader(provider)
        self._prompt: Usage | None = None  # message_start's counts, until output comes

    @property
    def finished(self) -> bool:
        return self._finished

    def feed(self, event: SseEvent) -> list[GenerationEvent]:
        events = self._read(event)
        if events and self._prompt is not None:
            events = [TextDelta("", prompt_usage=self._prompt), *events]
            self._prompt = None
        return events

    def _read(self, event: SseEvent) -> list[GenerationEvent]:
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
            if isinstance(usage, dict):
                self._prompt = usage_of({**self._counts, "output_tokens": 0})
        elif kind == "content_block_start":
            return [*self._thinking.start(data), *self._tools.start(data)]
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
            elif isinstance(delta, dict) and delta.get("type") in _THINKING_DELTAS:
                return list(self._thinking.delta(data, delta))
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
