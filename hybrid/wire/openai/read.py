"""What OpenAI and compatible APIs answer, read into hybrid's generation events.

A whole completion object becomes its events at once (:func:`answer_events`); a stream is read
event by event by :class:`OpenAIStreamDecoder`.  Tool calls are read by
:mod:`hybrid.wire.openai.tools`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from hybrid.errors import (
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
    TextDelta,
    TokenLogprob,
    ToolCallDelta,
    TopLogprob,
    Usage,
)
from hybrid.wire.openai.tools import ToolCallReader, tool_call_events
from hybrid.wire.sse import SseEvent, StreamDecoder


def answer_events(provider: str, data: Any, *, legacy: bool) -> list[GenerationEvent]:
    """The events of a whole (non-streamed) completion object.

    A refusal (``message.refusal``, which Structured Outputs answer instead of JSON) travels
    on the closing event, apart from the text, with the provider's own finish reason.  Tool
    calls follow the text, one whole delta each.

    Raises:
        ProviderProtocolError: ``data`` is not a completion object.
    """
    try:
        choice = data["choices"][0]
        if legacy:
            text, refusal = choice["text"], None
            logprobs = _legacy_logprobs(choice.get("logprobs"))
            calls: list[ToolCallDelta] = []
        else:
            message = choice["message"]
            text, refusal = message.get("content"), message.get("refusal")
            logprobs = _chat_logprobs(choice.get("logprobs"))
            calls = tool_call_events(provider, message.get("tool_calls"))
        finish = choice.get("finish_reason")
    except (KeyError, IndexError, TypeError, AttributeError) as exc:
        raise ProviderProtocolError(
            provider,
            f"the response is not a completion object (no {exc}); check that the base URL "
            f"points at an OpenAI-compatible API",
        ) from exc
    if not isinstance(text, str | None) or not isinstance(refusal, str | None):
        raise ProviderProtocolError(provider, "the completion's content is not text")
    events: list[GenerationEvent] = []
    if text or logprobs:
        events.append(TextDelta(text or "", logprobs))
    events.extend(calls)
    reason = _finish_reason(finish, tool_calls=bool(calls))
    events.append(GenerationDone(finish_reason=reason, usage=_usage(data), refusal=refusal or None))
    return events


class OpenAIStreamDecoder(StreamDecoder):
    """Reads a chat (or legacy) completion stream.

    The stream is complete at ``data: [DONE]``; a server that omits ``[DONE]`` but sent a
    ``finish_reason`` before closing the stream is complete too.  Usage comes from whichever
    chunk carries it (the last one, with ``stream_options.include_usage``).  A refusal's
    pieces (``delta.refusal``) are gathered and reported whole on the closing event, as
    :func:`answer_events` reports a whole answer's.

    Args:
        provider: The provider's name, for errors.
        legacy: The stream is a legacy text completion (``choices[].text``).
    """

    def __init__(self, provider: str, *, legacy: bool) -> None:
        self._provider = provider
        self._legacy = legacy
        self._finish: str | None = None
        self._usage = Usage(0, 0)
        self._finished = False
        self._tool_calls = ToolCallReader(provider)
        self._refusal: list[str] = []

    @property
    def finished(self) -> bool:
        return self._finished

    def feed(self, event: SseEvent) -> list[GenerationEvent]:
        if event.data.strip() == "[DONE]":
            return [self._done()]
        try:
            chunk = orjson.loads(event.data)
        except ValueError as exc:
            raise ProviderProtocolError(
                self._provider,
                f"a stream event is not JSON ({exc}); the answer is incomplete, retry the request",
            ) from exc
        if not isinstance(chunk, dict):
            raise ProviderProtocolError(
                self._provider, "a stream event is not a JSON object; the answer is incomplete"
            )
        if event.event == "error" or chunk.get("error") is not None:
            raise stream_error(self._provider, chunk.get("error", chunk))
        if isinstance(chunk.get("usage"), dict):
            self._usage = _usage(chunk)
        choices = chunk.get("choices") or []
        if not isinstance(choices, list):
            raise ProviderProtocolError(
                self._provider, "a stream event's choices is not a list; the answer is incomplete"
            )
        events: list[GenerationEvent] = []
        for choice in choices:
            # n > 1 is refused before any request; a stray extra choice is not ours to show.
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            events.extend(self._choice(choice))
        return events

    def end(self) -> list[GenerationEvent]:
        if self._finish is None:
            raise ProviderProtocolError(
                self._provider,
                "the stream ended before the answer did (no finish_reason, no [DONE]); the "
                "answer is incomplete, retry the request",
            )
        return [self._done()]

    def _choice(self, choice: Mapping[str, Any]) -> list[GenerationEvent]:
        refusal: Any = None
        calls: list[ToolCallDelta] = []
        if self._legacy:
            text = choice.get("text")
            logprobs = _legacy_logprobs(choice.get("logprobs"))
        else:
            delta = choice.get("delta")
            delta = delta if isinstance(delta, dict) else {}
            text, refusal = delta.get("content"), delta.get("refusal")
            logprobs = _chat_logprobs(choice.get("logprobs"))
            calls = self._tool_calls.feed(delta.get("tool_calls"))
        if isinstance(refusal, str) and refusal:
            self._refusal.append(refusal)
        finish = choice.get("finish_reason")
        if isinstance(finish, str):
            self._finish = finish
        if not isinstance(text, str):
            text = ""
        events: list[GenerationEvent] = [TextDelta(text, logprobs)] if text or logprobs else []
        events.extend(calls)
        return events

    def _done(self) -> GenerationDone:
        self._finished = True
        reason = _finish_reason(self._finish, tool_calls=self._tool_calls.count > 0)
        refusal = "".join(self._refusal) or None
        return GenerationDone(finish_reason=reason, usage=self._usage, refusal=refusal)


def stream_error(provider: str, error: Any) -> ProviderError:
    """The error an ``{"error": {...}}`` event in a stream reports, typed by its ``type``."""
    message = error.get("message") if isinstance(error, dict) else error
    kind = f"{error.get('type')} {error.get('code')}" if isinstance(error, dict) else ""
    cls: type[ProviderError] = ProviderUnavailableError
    if "rate_limit" in kind:
        cls = ProviderRateLimitedError
    elif "invalid_request" in kind:
        cls = ProviderRejectedError
    return cls(
        provider,
        f"the provider broke off the answer with an error ({message or 'no message'}); the "
        f"answer is incomplete, retry the request",
    )


def _finish_reason(reason: Any, *, tool_calls: bool) -> FinishReason:
    """hybrid's finish reason; an answer that made tool calls and then stopped ends with them.

    Some compatible servers say ``stop`` after tool calls; a client waits for ``tool_calls``
    to run them, so that is what it gets.
    """
    if reason in ("length", "content_filter"):
        return reason  # type: ignore[no-any-return]
    return "tool_calls" if tool_calls else "stop"


def _usage(data: Any) -> Usage:
    """Token counts from an object's ``usage``; zeros when absent or malformed, never a guess.

    ``prompt_tokens_details.cached_tokens`` are the prompt tokens read from OpenAI's prompt
    cache; ``prompt_tokens`` already includes them.
    """
    usage = data.get("usage") if isinstance(data, dict) else None
    if not isinstance(usage, dict):
        return Usage(0, 0)
    details = usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    return Usage(
        _count(usage.get("prompt_tokens")),
        _count(usage.get("completion_tokens")),
        cache_read_tokens=_count(cached),
    )


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _chat_logprobs(logprobs: Any) -> tuple[TokenLogprob, ...]:
    """``logprobs.content`` of a chat choice; malformed entries are skipped, not fatal."""
    content = logprobs.get("content") if isinstance(logprobs, dict) else None
    if not isinstance(content, list):
        return ()
    tokens = []
    for entry in content:
        token = _top(entry)
        if token is not None:
            top = entry.get("top_logprobs")
            alternatives = [_top(t) for t in top] if isinstance(top, list) else []
            tokens.append(
                TokenLogprob(
                    token.token,
                    token.logprob,
                    token.bytes,
                    tuple(t for t in alternatives if t is not None),
                )
            )
    return tuple(tokens)


def _top(entry: Any) -> TopLogprob | None:
    if not isinstance(entry, dict):
        return None
    token, logprob, raw = entry.get("token"), entry.get("logprob"), entry.get("bytes")
    if not isinstance(token, str) or not isinstance(logprob, int | float):
        return None
    if isinstance(raw, list) and all(isinstance(b, int) and 0 <= b < 256 for b in raw):
        data = tuple(raw)
    else:
        data = tuple(token.encode())
    return TopLogprob(token, float(logprob), data)


def _legacy_logprobs(logprobs: Any) -> tuple[TokenLogprob, ...]:
    """The legacy completions format: parallel lists of tokens, logprobs and top dicts."""
    if not isinstance(logprobs, dict):
        return ()
    tokens, values = logprobs.get("tokens"), logprobs.get("token_logprobs")
    tops = logprobs.get("top_logprobs")
    if not isinstance(tokens, list) or not isinstance(values, list):
        return ()
    result = []
    for i, (token, value) in enumerate(zip(tokens, values, strict=False)):
        if not isinstance(token, str) or not isinstance(value, int | float):
            continue
        top = tops[i] if isinstance(tops, list) and i < len(tops) else None
        alternatives = tuple(
            TopLogprob(t, float(lp), tuple(t.encode()))
            for t, lp in (top.items() if isinstance(top, dict) else ())
            if isinstance(lp, int | float)
        )
        result.append(TokenLogprob(token, float(value), tuple(token.encode()), alternatives))
    return tuple(result)
