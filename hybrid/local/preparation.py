"""Preparing a request for the local model: the engine's job for it, or its refusal.

Preparation (chat formatting, tokenization, the context check, the JSON grammar) happens before
a request joins the queue, so a request that cannot fit is refused at once rather than after
waiting its turn.  Tokenizing takes about a microsecond per byte, so the backend runs it on a
worker thread (:meth:`~hybrid.local.backend.LocalBackend.prepare`).  A prompt whose size alone
proves it cannot fit is refused without being tokenized: a formatted prompt of more than
``n_ctx * L`` bytes, where ``L`` is the most bytes one token of the vocabulary stands for, is
at least ``ceil(bytes / L) > n_ctx`` tokens, which bounds that work by the context size.

A request is also refused here, never half-answered, when it needs what the model cannot do
(:func:`unsupported_error`), when its ``logit_bias`` names a token outside the vocabulary, or
when its JSON schema cannot be turned into a grammar.  Its stop sequences are its own, then the
model's defaults it lacks, at most :data:`~hybrid.wire.fields.MAX_STOP_SEQUENCES` in all.

A model whose chat template supports tools gets the request's tools in its prompt
(:func:`prompt_tools`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection
from typing import Any, Protocol

from hybrid.errors import ContextLengthExceededError, InvalidRequestError
from hybrid.generation import GenerationRequest, ResponseFormat, ToolSpec
from hybrid.local.engine import EngineJob
from hybrid.local.prompt import ChatFormatter
from hybrid.wire.fields import MAX_STOP_SEQUENCES

TOOLS = "tools"

# Nucleus sampling default when the request sets none (OpenAI's default).
_DEFAULT_TOP_P = 1.0


class Tokenizer(Protocol):
    """What preparing a request reads of the loaded model (``LlamaEngine`` in production)."""

    @property
    def n_ctx(self) -> int: ...

    @property
    def n_vocab(self) -> int: ...

    def tokenize(self, text: str, *, add_bos: bool) -> list[int]: ...

    def longest_token_bytes(self) -> int | None: ...


def prompt_tools(formatter: ChatFormatter, request: GenerationRequest) -> tuple[ToolSpec, ...]:
    """The tools to render into the prompt: none unless the template supports them and
    the model may call one; only the named one when ``tool_choice`` names one.

    ``required`` is not enforced: the model is offered the tools and usually calls one.
    """
    choice = request.tool_choice
    if not formatter.supports_tools or choice.mode == "none":
        return ()
    if choice.mode == "named":
        return tuple(tool for tool in request.tools if tool.name == choice.name)
    return request.tools


def prepare_job(
    request: GenerationRequest,
    model: Tokenizer,
    formatter: ChatFormatter,
    *,
    supports: frozenset[str],
    model_id: str,
    default_max_tokens: int,
    default_temperature: float,
    default_stop: tuple[str, ...],
    owner: object,
) -> EngineJob:
    """Format and tokenize a request and check that it fits: the engine's job for it.

    Args:
        request: The request.
        model: The loaded model (its tokenizer, context and vocabulary sizes).
        formatter: Turns chat messages into the model's prompt.
        supports: What the model can do beyond text (``tools``).
        model_id: The id clients see, named in refusals.
        default_max_tokens: Output cap when the request sets none (less when the context
            has less room left).
        default_temperature: Temperature when the request sets none.
        default_stop: The model's stop sequences, added after the request's own.
        owner: The backend preparing it (:attr:`EngineJob.owner`).

    Returns:
        The job (it knows the prompt's token count).

    Raises:
        ContextLengthExceededError: The prompt and requested output do not fit.
        InvalidRequestError: The request needs what the model cannot do, the chat template
            or the JSON schema rejects it, its prompt is empty, or its ``logit_bias`` names a
            token outside the vocabulary.
    """
    unsupported = request.needs - supports
    if unsupported:
        raise unsupported_error(unsupported)
    params = request.params
    constrained = params.response_format is not None
    stop: tuple[str, ...]
    if request.prompt is not None:
        text, stop, add_bos, strip = request.prompt, (), True, False
    else:
        prompt = formatter.format(
            request.messages, constrained=constrained, tools=prompt_tools(formatter, request)
        )
        text, stop, add_bos, strip = (
            prompt.text,
            prompt.stop,
            prompt.add_bos,
            prompt.strip_output,
        )
    n_ctx = model.n_ctx
    _refuse_by_size(text, n_ctx, params.max_tokens, model.longest_token_bytes)
    tokens = model.tokenize(text, add_bos=add_bos)
    if not tokens:
        # A model whose tokenizer adds no BOS (Qwen, Phi) has nothing to continue.
        raise InvalidRequestError(
            f"the prompt is empty and the local model {model_id} adds no BOS token to "
            f"it, so there is nothing for it to continue; send a prompt of at least one "
            f"character",
            param="prompt" if request.prompt is not None else "messages",
        )
    if params.max_tokens is not None:
        if len(tokens) + params.max_tokens > n_ctx:
            raise ContextLengthExceededError(
                prompt_tokens=len(tokens), max_tokens=params.max_tokens, context_length=n_ctx
            )
        max_tokens = params.max_tokens
    elif len(tokens) >= n_ctx:
        raise ContextLengthExceededError(
            prompt_tokens=len(tokens), max_tokens=0, context_length=n_ctx
        )
    else:
        max_tokens = min(default_max_tokens, n_ctx - len(tokens))
    temperature = params.temperature
    if params.logit_bias:
        _check_logit_bias(params.logit_bias, model.n_vocab, model_id)
    return EngineJob(
        tokens=tokens,
        max_tokens=max_tokens,
        stop=(*stop, *_with_defaults(params.stop, default_stop)),
        request_stop=params.stop,
        strip=strip,
        temperature=default_temperature if temperature is None else temperature,
        top_p=_DEFAULT_TOP_P if params.top_p is None else params.top_p,
        top_k=params.top_k,
        seed=params.seed,
        top_logprobs=params.top_logprobs,
        grammar=_grammar(params.response_format),
        logit_bias=params.logit_bias,
        frequency_penalty=params.frequency_penalty or 0.0,
        presence_penalty=params.presence_penalty or 0.0,
        owner=owner,
    )


def unsupported_error(needs: Collection[str]) -> InvalidRequestError:
    """The refusal of a request that needs what the local model cannot do.

    Args:
        needs: The capabilities it lacks (``images``, ``audio``, ``tools``).
    """
    if set(needs) == {TOOLS}:
        return InvalidRequestError(
            "the local model cannot call tools: its chat template has no tool support (the "
            "embedded model has none). Send the request to a cloud model (X-Hybrid-Route: "
            "cloud, or a cloud model name) with a provider configured, load a model whose "
            "chat template supports tools (Qwen 2.5, Llama 3.1 or later, Hermes), or send "
            "tool_choice none.",
            param=TOOLS,
        )
    return InvalidRequestError(
        f"the local model reads text only, and this request holds "
        f"{' and '.join(sorted(needs))}; send it to a cloud model "
        f"(X-Hybrid-Route: cloud, or a cloud model name) with a provider configured",
        param="messages",
    )


def _with_defaults(own: tuple[str, ...], defaults: tuple[str, ...]) -> tuple[str, ...]:
    """A request's stop sequences, then the model's defaults it lacks, at most
    ``MAX_STOP_SEQUENCES`` in all (the request's own are never dropped)."""
    merged = list(own)
    for stop in defaults:
        if len(merged) >= MAX_STOP_SEQUENCES:
            break
        if stop not in merged:
            merged.append(stop)
    return tuple(merged)


def _refuse_by_size(
    text: str, n_ctx: int, max_tokens: int | None, longest: Callable[[], int | None]
) -> None:
    """Refuse a prompt whose size alone proves it cannot fit (see :meth:`LocalBackend.prepare`).

    Raises:
        ContextLengthExceededError: With the token count's lower bound and the byte count.
    """
    size = len(text.encode("utf-8"))
    if size <= n_ctx:
        return  # never refused by size, and no need for the vocabulary pass behind longest()
    per_token = longest()
    if per_token is None or size <= n_ctx * per_token:
        return
    least = -(-size // per_token)
    raise ContextLengthExceededError(
        prompt_tokens=least, max_tokens=max_tokens or 0, context_length=n_ctx, prompt_bytes=size
    )


def _check_logit_bias(bias: tuple[tuple[int, float], ...], n_vocab: int, model_id: str) -> None:
    """Refuse a ``logit_bias`` naming a token the model does not have.

    Raises:
        InvalidRequestError: A token id is ``n_vocab`` or more.
    """
    outside = sorted(token for token, _ in bias if not 0 <= token < n_vocab)
    if outside:
        shown = ", ".join(str(token) for token in outside[:5]) + (", ..." * (len(outside) > 5))
        raise InvalidRequestError(
            f"logit_bias names token {shown}, outside the "
            f"vocabulary of the local model {model_id} (token ids 0 to {n_vocab - 1}); use "
            f"this model's token ids, or send the request to the model whose ids they are",
            param="logit_bias",
        )


def _grammar(response_format: ResponseFormat | None) -> Any:
    """Compile a JSON constraint into a llama.cpp grammar."""
    if response_format is None:
        return None
    from llama_cpp.llama_grammar import JSON_GBNF, LlamaGrammar

    if response_format.kind == "json_object" or response_format.schema is None:
        return LlamaGrammar.from_string(JSON_GBNF, verbose=False)
    try:
        return LlamaGrammar.from_json_schema(json.dumps(response_format.schema), verbose=False)
    except (ValueError, KeyError, TypeError, AssertionError, RecursionError) as exc:
        raise InvalidRequestError(
            f"response_format.json_schema could not be turned into a grammar: {exc!r}. "
            f"Simplify the schema (plain objects, arrays, strings, numbers, enums).",
            param="response_format",
        ) from exc
