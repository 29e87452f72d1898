"""The misbehaviours of the fake cloud: one `Fault` for one request, and what it does to the
answer.

Build a fault with its class methods. `FakeCloud.push` queues faults for the next requests;
`FakeCloud.default_fault` is the one every request gets while the queue is empty;
`FakeCloud.fail` sets one for every request to a path. Some faults replace the answer
(`replacement`: a 429, a 5xx, a 404, a 401, a redirect, an HTML page, silence, a hang-up); the
others change what the answer the request earned says (`reshaped`: broken JSON, an error event
mid-stream, a stream that ends early, another model's name) or how it is delivered (a slow first
byte or body, a stall, a reset).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from fake_cloud_answers import (
    Answer,
    Api,
    Event,
    Request,
    anthropic_error,
    compact,
    not_found,
    openai_error,
)

FaultKind = Literal[
    "rate_limit",
    "status",
    "slow_first_byte",
    "slow_body",
    "stall",
    "reset",
    "malformed",
    "wrong_key",
    "stream_error",
    "black_hole",
    "hang_up",
    "redirect",
    "not_found",
    "html",
    "truncated",
    "wrong_model",
]

# Where a server behind a proxy or a captive portal answers with a page instead of the API.
_HTML_PAGE = b"<!doctype html><html><body>Sign in</body></html>"
_ANTHROPIC_429 = (
    "This request would exceed the rate limit for your organization of 50 requests per minute."
    " For details, refer to: https://docs.claude.com/en/api/rate-limits. You can see the response"
    " headers for current usage. Please reduce the prompt length or the maximum tokens requested,"
    " or try again later."
)
_OPENAI_500 = "The server had an error while processing your request. Sorry about that!"


@dataclass(frozen=True)
class Fault:
    """One misbehaviour for one request; build it with the class methods, not the constructor.

    `after_chunks` counts SSE events as the API sends them, preamble included: OpenAI's chat
    stream opens with a role chunk, then one chunk per word; Anthropic's with message_start,
    content_block_start and ping, then one content_block_delta per word. The status line and
    headers always go out first. A plain (non-stream) answer has no events: with
    ``after_chunks=0`` it breaks off before its body, with more it breaks off halfway through.
    A count past the last event lets the whole stream out, ``[DONE]`` included, and breaks off
    before the body's chunked terminator.
    """

    kind: FaultKind
    code: int = 0
    retry_after_s: float | None = None
    retry_after_ms: int | None = None
    delay_s: float = 0.0
    after_chunks: int = 0
    stall_s: float = 0.0
    message: str = ""
    error_type: str = ""
    location: str = ""
    comment: str | None = None
    model: str = ""
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def rate_limit(
        cls,
        retry_after_s: float | None = 1,
        retry_after_ms: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> Fault:
        """429 with the API's rate-limit body.

        Args:
            retry_after_s: value of the ``retry-after`` header in seconds; None leaves it out.
            retry_after_ms: value of the ``retry-after-ms`` header; None leaves it out.
            headers: more headers for the answer, such as the API's rate-limit state
                (``x-ratelimit-remaining-requests``, ``anthropic-ratelimit-tokens-reset``).
        """
        return cls(
            "rate_limit",
            retry_after_s=retry_after_s,
            retry_after_ms=retry_after_ms,
            headers=tuple((headers or {}).items()),
        )

    @classmethod
    def status(cls, code: int) -> Fault:
        """A server error with the API's body: OpenAI ``server_error``; Anthropic ``api_error``,
        or ``overloaded_error`` for 529.

        Raises:
            ValueError: `code` is not a 5xx status.
        """
        if not 500 <= code <= 599:
            raise ValueError(f"Fault.status takes a 5xx code, got {code}; use another Fault")
        return cls("status", code=code)

    @classmethod
    def slow_first_byte(cls, delay_s: float) -> Fault:
        """Say nothing for `delay_s` seconds after reading the request, then answer normally."""
        return cls("slow_first_byte", delay_s=delay_s)

    @classmethod
    def slow_body(cls, pause_s: float) -> Fault:
        """A slow network: the head at once, then a pause of `pause_s` before each SSE event
        and before the body's end (each piece reaches the client in a read of its own); a
        whole answer pauses once, between its head and its body."""
        return cls("slow_body", delay_s=pause_s)

    @classmethod
    def stall(cls, after_chunks: int, stall_s: float, *, comment: str | None = None) -> Fault:
        """Send the head and `after_chunks` SSE events, write nothing for `stall_s`, then close
        without ending the body.

        Args:
            comment: An SSE comment line (``: <comment>``) sent just before the silence, as a
                server that says it is still working does.
        """
        return cls("stall", after_chunks=after_chunks, stall_s=stall_s, comment=comment)

    @classmethod
    def reset(cls, after_chunks: int) -> Fault:
        """Send the head and `after_chunks` SSE events, then abort the connection with a TCP
        RST."""
        return cls("reset", after_chunks=after_chunks)

    @classmethod
    def malformed(cls, after_chunks: int = 0) -> Fault:
        """Non-stream: a 200 whose body is cut in half and ends in a line of garbage, so that
        it parses neither as JSON nor as Prometheus text (Content-Length still matches).
        Stream: SSE event number `after_chunks` (from 0) carries half of its JSON; the rest of
        the stream follows as normal."""
        return cls("malformed", after_chunks=after_chunks)

    @classmethod
    def truncated(cls, after_chunks: int) -> Fault:
        """Stream: end the stream cleanly (the chunked body is terminated) after `after_chunks`
        SSE events, with no finish reason, ``[DONE]`` or ``message_stop``, as a server that
        lost its model mid-answer behind a proxy does. A plain answer is delivered as normal."""
        return cls("truncated", after_chunks=after_chunks)

    @classmethod
    def wrong_model(cls, name: str) -> Fault:
        """A normal answer, whole or streamed, whose ``model`` is `name` instead of the model
        asked for (a LAN server that loaded another model than it lists)."""
        return cls("wrong_model", model=name)

    @classmethod
    def not_found(cls) -> Fault:
        """404 as the server says it: the API's body, or with `FakeCloud`'s ``lan_kind`` set,
        that engine's 404 on its own endpoints (a server without that endpoint)."""
        return cls("not_found")

    @classmethod
    def html(cls) -> Fault:
        """A 200 with an HTML page instead of the API's answer (a proxy's sign-in page, a
        captive portal, a web UI on the wrong port)."""
        return cls("html")

    @classmethod
    def wrong_key(cls) -> Fault:
        """401 with the API's authentication error body, whatever key was sent."""
        return cls("wrong_key")

    @classmethod
    def stream_error(
        cls, message: str, after_chunks: int = 0, error_type: str | None = None
    ) -> Fault:
        """Stream: SSE event number `after_chunks` (from 0) is replaced by the API's error event
        carrying `message`, and the stream ends after it (OpenAI: ``data: {"error": ...}``;
        Anthropic: ``event: error``). A plain answer is delivered as normal.

        Args:
            error_type: The error's ``type``; by default the API's server error
                (``server_error``, ``api_error``).
        """
        return cls(
            "stream_error", after_chunks=after_chunks, message=message, error_type=error_type or ""
        )

    @classmethod
    def black_hole(cls) -> Fault:
        """Read the request and never answer: the connection stays open, silent, until the
        client gives up or the fake stops (a backend lost behind a proxy, a firewall that eats
        packets after the handshake)."""
        return cls("black_hole")

    @classmethod
    def hang_up(cls) -> Fault:
        """Read the request and close the connection without a byte of answer."""
        return cls("hang_up")

    @classmethod
    def redirect(cls, location: str, code: int = 307) -> Fault:
        """A redirect to `location` with an empty body.

        Raises:
            ValueError: `code` is not a 3xx status.
        """
        if not 300 <= code <= 399:
            raise ValueError(f"Fault.redirect takes a 3xx code, got {code}")
        return cls("redirect", code=code, location=location)


def replacement(request: Request, fault: Fault) -> Answer | None:
    """The answer a fault puts in place of the real one, or None for a fault that changes the
    real one or its delivery."""
    api = request.api
    if fault.kind == "rate_limit":
        headers: list[tuple[str, str]] = list(fault.headers)
        if fault.retry_after_s is not None:
            headers.append(("retry-after", f"{fault.retry_after_s:g}"))
        if fault.retry_after_ms is not None:
            headers.append(("retry-after-ms", str(fault.retry_after_ms)))
        wait = fault.retry_after_s
        if wait is None:
            wait = (fault.retry_after_ms or 1000) / 1000
        if api == "anthropic":
            return anthropic_error(429, "rate_limit_error", _ANTHROPIC_429, *headers)
        message = (
            "Rate limit reached in organization org-fakecloud on requests per min (RPM): Limit 3,"
            f" Used 3, Requested 1. Please try again in {wait:g}s. Visit"
            " https://platform.openai.com/account/rate-limits to learn more."
        )
        answer = openai_error(429, message, "requests", "rate_limit_exceeded")
        return replace(answer, headers=(*answer.headers, *headers))
    if fault.kind == "status":
        if api == "openai":
            return openai_error(fault.code, _OPENAI_500, "server_error")
        if fault.code == 529:
            return anthropic_error(529, "overloaded_error", "Overloaded")
        return anthropic_error(fault.code, "api_error", "Internal server error")
    if fault.kind == "redirect":
        return Answer(fault.code, (("location", fault.location),))
    if fault.kind == "not_found":
        return not_found(request)
    if fault.kind == "html":
        return Answer(200, (("content-type", "text/html; charset=utf-8"),), _HTML_PAGE)
    return None


def reshaped(answer: Answer, api: Api, fault: Fault) -> Answer:
    """`answer` as `fault` changes what it says: broken JSON (malformed), the API's error event
    in place of an event (stream_error), or a stream that stops short (truncated); otherwise
    `answer` itself."""
    events = answer.events
    if fault.kind == "malformed":
        if events is None:
            return replace(answer, body=answer.body[: len(answer.body) // 2] + b"\n}{ malformed\n")
        at = min(fault.after_chunks, len(events) - 1)
        name, data = events[at]
        return replace(
            answer, events=(*events[:at], (name, data[: len(data) // 2]), *events[at + 1 :])
        )
    if events is None:
        return answer
    if fault.kind == "truncated":
        return replace(answer, events=events[: fault.after_chunks])
    if fault.kind != "stream_error":
        return answer
    if api == "anthropic":
        error: dict[str, str | None] = {
            "type": fault.error_type or "api_error",
            "message": fault.message,
        }
        event: Event = ("error", compact({"type": "error", "error": error}))
    else:
        kind = fault.error_type or "server_error"
        error = {"message": fault.message, "type": kind, "param": None, "code": None}
        event = (None, compact({"error": error}))
    return replace(answer, events=(*events[: min(fault.after_chunks, len(events))], event))
