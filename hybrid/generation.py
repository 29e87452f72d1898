"""What a backend is asked for and what it streams back.

These frozen dataclasses are the internal language between the HTTP layer and the backends; the
wire formats (OpenAI JSON, Anthropic JSON) are translated to and from them at the edges.

Tool calling speaks OpenAI's vocabulary inside: a :class:`ToolSpec` is a function with a JSON
Schema for its arguments, a :class:`ToolCall` carries its arguments as JSON *text* (what the model
wrote, which may arrive in fragments), and a tool's result is a ``tool`` message naming the call
it answers.

Anthropic's prompt-cache markers (``cache_control``) ride along where the client put them: on
the request (:attr:`GenerationRequest.cache_control`), a tool (:attr:`ToolSpec.cache_control`),
a text or image part (a ``cache_control`` key of :attr:`Message.parts`), a tool call sent back
(:attr:`ToolCall.cache_control`) and a tool result (:attr:`Message.cache_control`).  Only a
request to Anthropic sends them; the local model and OpenAI-compatible APIs leave them out.

Anthropic's extended thinking rides along the same way: the client's ``thinking`` setting
(:attr:`GenerationRequest.thinking`) and the ``thinking``/``redacted_thinking`` blocks of its
assistant turns (:attr:`Message.thinking`, verbatim, signatures included) reach Anthropic only;
the thinking Anthropic answers with comes back as :class:`ThinkingDelta` events, which only an
Anthropic client is shown.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

FinishReason = Literal["stop", "length", "content_filter", "tool_calls"]
ToolChoiceMode = Literal["auto", "none", "required", "named"]


@dataclass(frozen=True)
class ToolCall:
    """A call the model made to one of the request's tools.

    Attributes:
        id: The call's id (``call_...`` from OpenAI, ``toolu_...`` from Anthropic); the
            ``tool`` message with its result names it.
        name: The tool's name.
        arguments: The arguments as JSON text, as the model wrote them (normally an object).
        cache_control: For a call sent back in a conversation, the prompt-cache marker its
            Anthropic ``tool_use`` block carried.
    """

    id: str
    name: str
    arguments: str
    cache_control: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Message:
    """One chat message.

    Attributes:
        role: ``system``, ``developer``, ``user``, ``assistant`` or ``tool``.
        content: Its text (the text parts joined), which the local model reads.
        parts: OpenAI content parts as the client sent them, kept only when some are not text
            (``image_url``, ``input_audio``) or carry a ``cache_control`` marker (from an
            Anthropic client's blocks), for a cloud provider to receive in full.
        tool_calls: For an ``assistant`` message, the tool calls it made (after its text).
        tool_call_id: For a ``tool`` message, the id of the call whose result it carries.
        name: For a ``tool`` message, the tool's name, when known (some chat templates show it).
        is_error: For a ``tool`` message, the tool failed and ``content`` says how.
        cache_control: For a ``tool`` message, the prompt-cache marker its Anthropic
            ``tool_result`` block carried.
        thinking: For an ``assistant`` message from an Anthropic client, its ``thinking`` and
            ``redacted_thinking`` blocks exactly as sent (Anthropic checks their signatures),
            in order; only a request to Anthropic carries them, ahead of the turn's other
            blocks.  Their text is not part of ``content``.
    """

    role: str
    content: str
    parts: tuple[Mapping[str, Any], ...] = ()
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None
    is_error: bool = False
    cache_control: Mapping[str, Any] | None = None
    thinking: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True)
class ToolSpec:
    """A function the model may call.

    Attributes:
        name: The function's name.
        description: What it does and when to call it, for the model.
        parameters: The JSON Schema of its arguments (an object schema); None for a function
            without arguments.
        strict: OpenAI's structured-outputs switch for the arguments, when the client set it.
        cache_control: The prompt-cache marker an Anthropic client put on the tool.
    """

    name: str
    description: str | None = None
    parameters: Mapping[str, Any] | None = None
    strict: bool | None = None
    cache_control: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class ToolChoice:
    """Whether and which tool the model must call.

    Attributes:
        mode: ``auto`` (the model decides), ``none`` (no call), ``required`` (at least one
            call) or ``named`` (a call to ``name``).
        name: The tool a ``named`` choice requires.

    Raises:
        ValueError: ``named`` without a name, or a name with another mode.
    """

    mode: ToolChoiceMode = "auto"
    name: str | None = None

    def __post_init__(self) -> None:
        if (self.mode == "named") != (self.name is not None):
            raise ValueError("a tool choice names a tool exactly when its mode is 'named'")


@dataclass(frozen=True)
class ResponseFormat:
    """A constraint on the shape of the output.

    Attributes:
        kind: ``"json_object"`` (any JSON object) or ``"json_schema"`` (a JSON Schema).
        schema: The JSON Schema for ``json_schema``; None for ``json_object``.
        name: The schema's name, as the client gave it (OpenAI's ``json_schema.name``).
        description: What the output is, for the model (``json_schema.description``).
        strict: OpenAI's Structured Outputs switch (``json_schema.strict``): true makes the
            provider guarantee the schema rather than take it as a hint; None when unset.
    """

    kind: Literal["json_object", "json_schema"]
    schema: Mapping[str, Any] | None = None
    name: str | None = None
    description: str | None = None
    strict: bool | None = None


@dataclass(frozen=True)
class SamplingParams:
    """How to generate.  None means "the backend's default".

    Attributes:
        max_tokens: Upper bound on generated tokens.
        temperature: Sampling temperature; 0 is greedy.
        top_p: Nucleus sampling mass.
        top_k: Sample among the ``top_k`` most likely tokens only (Anthropic's ``top_k``; 0
            for no limit); None for the backend's default.
        stop: Sequences that end the output; they are not included in it.
        seed: Seed for reproducible sampling.
        top_logprobs: None for no log-probabilities; otherwise how many alternatives to report
            per token (0 = only the chosen token).
        response_format: A JSON constraint, or None for free text.
        frequency_penalty: Subtracted from a token's logit once per time it already occurs
            (OpenAI's ``frequency_penalty``, -2 to 2); None for none.
        presence_penalty: Subtracted from a token's logit once it occurs at all (OpenAI's
            ``presence_penalty``, -2 to 2); None for none.
        logit_bias: ``(token id, bias)`` pairs, each bias (-100 to 100) added to that token's
            logit before sampling (OpenAI's ``logit_bias``); token ids are the model's own.
    """

    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    top_logprobs: int | None = None
    response_format: ResponseFormat | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    logit_bias: tuple[tuple[int, float], ...] = ()


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
        needs: Capabilities beyond text the request needs (``images``, ``audio``, ``tools``);
            see :func:`tool_needs` for when tools count.
        tools: The functions the model may call.
        tool_choice: Whether and which of them it must call.
        parallel_tool_calls: Whether it may make several calls in one turn; None leaves the
            provider's default (yes).
        cache_control: Anthropic's request-wide prompt-cache marker (automatic caching up to
            the last cacheable block), when the client set one.
        thinking: Anthropic's ``thinking`` setting as the client sent it (``{"type":
            "enabled", "budget_tokens": N}``); only a request to Anthropic carries it, the
            local model and OpenAI-compatible APIs answer without thinking.
    """

    request_id: str
    messages: tuple[Message, ...] = ()
    prompt: str | None = None
    params: SamplingParams = field(default_factory=SamplingParams)
    model: str | None = None
    stream: bool = False
    needs: frozenset[str] = frozenset()
    tools: tuple[ToolSpec, ...] = ()
    tool_choice: ToolChoice = field(default_factory=ToolChoice)
    parallel_tool_calls: bool | None = None
    cache_control: Mapping[str, Any] | None = None
    thinking: Mapping[str, Any] | None = None


def tool_needs(tools: tuple[ToolSpec, ...], choice: ToolChoice) -> frozenset[str]:
    """The capabilities a request's tools add to its ``needs``.

    Tools the model must not call (``tool_choice: none``) need nothing: any model can answer
    without them.

    Returns:
        ``{"tools"}`` when tools are offered and may be called, else the empty set.
    """
    return frozenset({"tools"}) if tools and choice.mode != "none" else frozenset()


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
    """A piece of generated text, with the log-probabilities of the tokens it completes.

    Attributes:
        text: The text (may be empty: a delta that only carries log-probabilities or counts).
        logprobs: The log-probabilities of the tokens it completes.
        prompt_usage: The prompt's token counts (input and cache; no completion tokens), on
            an otherwise empty delta that comes first, when the source reported them before
            the end: Anthropic's stream does in its ``message_start``.  None on every other
            delta.  The closing :class:`GenerationDone`'s usage is the final count either way.
    """

    text: str
    logprobs: tuple[TokenLogprob, ...] = ()
    prompt_usage: Usage | None = None


@dataclass(frozen=True)
class ToolCallDelta:
    """A piece of a tool call, as a stream delivers it.

    The first delta of each ``index`` carries the call's ``id`` and ``name`` (every backend
    guarantees it, inventing an id when its source has none); later ones add to ``arguments``.

    Attributes:
        index: Which call of the answer this belongs to, from 0, in the order calls start.
        id: The call's id, on its first delta only.
        name: The tool's name, on its first delta only.
        arguments: The next fragment of the arguments' JSON text (may be empty).
    """

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(frozen=True)
class ThinkingDelta:
    """A piece of a thinking block: the model's extended thinking, from Anthropic.

    The first delta of each ``index`` opens the block (it may carry nothing else); later ones
    add to its text and signature.  A redacted block comes whole, on one delta.

    Attributes:
        index: Which thinking block of the answer this belongs to, from 0, in the order blocks
            start.
        thinking: The next piece of the block's text (may be empty).
        signature: The next piece of the block's signature (Anthropic sends it whole, last),
            which the client must send back with the block.
        redacted: For a ``redacted_thinking`` block, its encrypted ``data``; None for a
            ``thinking`` block.
    """

    index: int
    thinking: str = ""
    signature: str = ""
    redacted: str | None = None


@dataclass(frozen=True)
class ThinkingBlock:
    """A whole thinking block of an answer: its text and signature, or a redacted block's data.

    Attributes:
        thinking: The thinking text.
        signature: Its signature.
        redacted: A ``redacted_thinking`` block's encrypted data; None for a ``thinking`` block.
    """

    thinking: str = ""
    signature: str = ""
    redacted: str | None = None


@dataclass(frozen=True)
class Usage:
    """Token counts for one request.

    Attributes:
        prompt_tokens: Every input token, those read from or written to a provider's prompt
            cache included.
        completion_tokens: Output tokens, thinking tokens included (as Anthropic counts them).
        cache_read_tokens: Of ``prompt_tokens``, those the provider read from its prompt cache
            (OpenAI's ``cached_tokens``, Anthropic's ``cache_read_input_tokens``).
        cache_write_tokens: Of ``prompt_tokens``, those the provider wrote to its prompt cache
            (Anthropic's ``cache_creation_input_tokens``; OpenAI does not report them).
    """

    prompt_tokens: int
    completion_tokens: int
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        """Prompt and completion tokens together."""
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class GenerationDone:
    """The last event of a generation.

    Attributes:
        finish_reason: ``"stop"`` (end of turn or a stop sequence), ``"length"`` (max tokens),
            ``"content_filter"`` (the provider's filter stopped the output) or ``"tool_calls"``
            (the turn ended with tool calls, whose results the client sends back).
        stop_sequence: The request's stop sequence that ended the output, when one did.
        usage: Prompt and completion tokens.
        refusal: The model declined to answer and said why (OpenAI's ``message.refusal``,
            which Structured Outputs answer instead of JSON); the answer's text, if any, is
            apart from it, and ``finish_reason`` is the provider's own (``stop``).
        queue_wait_s: Seconds spent waiting for the model.
        time_to_first_token_s: Seconds from the start of generation to the first token.
        decode_tokens_per_s: Generated tokens per second after the first, when there were two.
        cancelled: The consumer stopped the generation before it finished.
        batch_size: The mean number of sequences the local model decoded together while this
            answer decoded (1.0 alone); None for answers from elsewhere.
    """

    finish_reason: FinishReason
    usage: Usage
    stop_sequence: str | None = None
    refusal: str | None = None
    queue_wait_s: float = 0.0
    time_to_first_token_s: float | None = None
    decode_tokens_per_s: float | None = None
    cancelled: bool = False
    batch_size: float | None = None


GenerationEvent = TextDelta | ToolCallDelta | ThinkingDelta | GenerationDone
