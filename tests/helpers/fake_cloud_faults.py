"""The misbehaviours of the fake cloud: one `Fault` for one request.

Build a fault with its class methods. `FakeCloud.push` queues faults for the next requests;
`FakeCloud.default_fault` is the one every request gets while the queue is empty. Some faults
replace the answer (a 429, a 5xx, a 401, a redirect, silence, a hang-up); the others change how
the answer the request earned is delivered (a slow first byte or body, a stall, a reset, broken
JSON, an error event mid-stream).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

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
]


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

    @classmethod
    def rate_limit(
        cls, retry_after_s: float | None = 1, retry_after_ms: int | None = None
    ) -> Fault:
        """429 with the API's rate-limit body.

        Args:
            retry_after_s: value of the ``retry-after`` header in seconds; None leaves it out.
            retry_after_ms: value of the ``retry-after-ms`` header; None leaves it out.
        """
        return cls("rate_limit", retry_after_s=retry_after_s, retry_after_ms=retry_after_ms)

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
        """Non-stream: a 200 whose JSON body is cut in half (Content-Length still matches).
        Stream: SSE event number `after_chunks` (from 0) carries half of its JSON; the rest of
        the stream follows as normal."""
        return cls("malformed", after_chunks=after_chunks)

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
