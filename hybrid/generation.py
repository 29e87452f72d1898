"""What a backend is asked for and what it streams back.

These frozen dataclasses are the internal language between the HTTP layer and the backends; the
wire formats (OpenAI JSON, later Anthropic) are translated to and from them at the edges.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

FinishReason = Literal["stop", "length", "content_filter"]


@dataclass(frozen=True)
class Message:
    """One chat message.

    Attributes:
        role: ``system``, ``developer``, ``user``, ``assistant`` or ``tool``.
        content: Its text (the text parts joined), which the local model reads.
        parts: OpenAI content parts as the client sent them, kept only when some are not text
            (``image_url``, ``input_audio``), for a cloud provider to receive in full.
    """

    role: str
    content: str
    parts: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True)
class ResponseFormat:
    """A constraint on the shape of the output.

    Attributes:
        kind: ``"json_object"`` (any JSON object) or ``"json_schema"`` (a JSON Schema).
        schema: The JSON Schema for ``json_schema``; None for ``json_object``.
    """

    kind: Literal["json_object", "json_schema"]
    schema: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class SamplingParams:
    """How to generate.  None means "the backend's default".

    Attributes:
        max_tokens: Upper bound on generated tokens.
        temperature: Sampling temperature; 0 is greedy.
        top_p: Nucleus sampling mass.
        stop: Sequences that end the output; they are not included in it.
        seed: Seed for reproducible sampling.
        top_logprobs: None for no log-probabilities; otherwise how many alternatives to report
            per token (0 = only the chosen token).
        response_format: A JSON constraint, or None for free text.
    """

    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    top_logprobs: int | None = None
    response_format: ResponseFormat | None = None


@dataclass(frozen=True)
class GenerationRequest:
    """A chat (``messages``) or raw completion (``prompt``) request.

    Exactly one of ``messages`` and ``prompt`` is used: a request with a prompt is a raw text
    completion and bypasses chat formatting.

    Attributes:
        request_id: hybrid's id for the request (``X-Hybrid-Request-Id``).
        messages: The conversation, oldest first.
        prompt: A raw prompt, for text completion.
        params: How to generate.
        model: The provider's own model id (``gpt-4.1-mini``), for a cloud backend; the local
            backend ignores it.
        stream: The client asked for a stream; a cloud backend streams from upstream too.
        needs: Capabilities beyond text the request needs (``images``, ``audio``, ``tools``).
    """

    request_id: str
    messages: tuple[Message, ...] = ()
    prompt: str | None = None
    params: SamplingParams = field(default_factory=SamplingParams)
    model: str | None = None
    stream: bool = False
    needs: frozenset[str] = frozenset()


@dataclass(frozen=True)
class TopLogprob:
    """One alternative token and its log-probability."""

    token: str
    logprob: float
    bytes: tuple[int, ...]


@dataclass(frozen=True)
class TokenLogprob:
    """A generated token, its log-probability and the most likely alternatives."""

    token: str
    logprob: float
    bytes: tuple[int, ...]
    top: tuple[TopLogprob, ...] = ()


@dataclass(frozen=True)
class TextDelta:
    """A piece of generated text, with the log-probabilities of the tokens it completes."""

    text: str
    logprobs: tuple[TokenLogprob, ...] = ()


@dataclass(frozen=True)
class Usage:
    """Token counts for one request."""

    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        """Prompt and completion tokens together."""
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class GenerationDone:
    """The last event of a generation.

    Attributes:
        finish_reason: ``"stop"`` (end of turn or a stop sequence), ``"length"`` (max tokens)
            or ``"content_filter"`` (the provider refused).
        stop_sequence: The request's stop sequence that ended the output, when one did.
        usage: Prompt and completion tokens.
        queue_wait_s: Seconds spent waiting for the model.
        time_to_first_token_s: Seconds from the start of generation to the first token.
        decode_tokens_per_s: Generated tokens per second after the first, when there were two.
        cancelled: The consumer stopped the generation before it finished.
    """

    finish_reason: FinishReason
    usage: Usage
    stop_sequence: str | None = None
    queue_wait_s: float = 0.0
    time_to_first_token_s: float | None = None
    decode_tokens_per_s: float | None = None
    cancelled: bool = False


GenerationEvent = TextDelta | GenerationDone
