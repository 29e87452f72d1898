"""OpenAI requests from clients, translated into hybrid's generation requests.

Requests come in as :mod:`hybrid.wire.openai.schema` models and become a
:class:`~hybrid.generation.GenerationRequest`; their tools are read by
:mod:`hybrid.wire.openai.tools`.
"""

from __future__ import annotations

from hybrid.errors import InvalidRequestError
from hybrid.generation import (
    GenerationRequest,
    Message,
    ResponseFormat,
    SamplingParams,
    tool_needs,
)
from hybrid.wire.fields import MAX_STOP_SEQUENCES
from hybrid.wire.openai.schema import ChatCompletionRequest, ChatMessageIn, CompletionRequest
from hybrid.wire.openai.tools import message_tool_fields, request_tools

# OpenAI's default for the legacy completions endpoint.
COMPLETIONS_DEFAULT_MAX_TOKENS = 16


def chat_request(body: ChatCompletionRequest, request_id: str) -> GenerationRequest:
    """Translate a chat completion request.

    Raises:
        InvalidRequestError: The request asks for something hybrid cannot do, or its tools
            are inconsistent (see :func:`~hybrid.wire.openai.tools.request_tools`).
    """
    _check_common(body.n, body.stop)
    tools, tool_choice, parallel_tool_calls = request_tools(body)
    max_tokens = body.max_completion_tokens or body.max_tokens
    top_logprobs = None
    if body.logprobs:
        top_logprobs = body.top_logprobs or 0
    elif body.top_logprobs is not None:
        raise InvalidRequestError("top_logprobs requires logprobs to be true", param="top_logprobs")
    translated = [_message(m, i) for i, m in enumerate(body.messages)]
    needs = frozenset(need for _, needs in translated for need in needs)
    return GenerationRequest(
        request_id=request_id,
        stream=body.stream,
        messages=tuple(message for message, _ in translated),
        needs=needs | tool_needs(tools, tool_choice),
        tools=tools,
        tool_choice=tool_choice,
        parallel_tool_calls=parallel_tool_calls,
        params=SamplingParams(
            max_tokens=max_tokens,
            temperature=body.temperature,
            top_p=body.top_p,
            top_k=body.top_k,
            stop=_stops(body.stop),
            seed=body.seed,
            top_logprobs=top_logprobs,
            response_format=_response_format(body),
            frequency_penalty=body.frequency_penalty,
            presence_penalty=body.presence_penalty,
            logit_bias=_logit_bias(body.logit_bias),
        ),
    )


def _response_format(body: ChatCompletionRequest) -> ResponseFormat | None:
    """The request's JSON constraint; a schema keeps its name, description and ``strict``, so
    that an OpenAI-compatible provider gets the Structured Outputs the client asked for.

    Raises:
        InvalidRequestError: A ``json_schema`` format without its schema.
    """
    asked = body.response_format
    if asked is None or asked.type == "text":
        return None
    if asked.type == "json_object":
        return ResponseFormat(kind="json_object")
    spec = asked.json_schema
    if spec is None or spec.schema_ is None:
        raise InvalidRequestError(
            "response_format of type json_schema needs json_schema.schema",
            param="response_format",
        )
    return ResponseFormat(
        kind="json_schema",
        schema=spec.schema_,
        name=spec.name,
        description=spec.description,
        strict=spec.strict,
    )


def completion_request(body: CompletionRequest, request_id: str) -> GenerationRequest:
    """Translate a legacy text completion request.

    Raises:
        InvalidRequestError: Several prompts, ``echo`` or ``suffix`` were asked for.
    """
    _check_common(body.n, body.stop)
    prompt = body.prompt
    if isinstance(prompt, list):
        if len(prompt) != 1:
            raise InvalidRequestError(
                f"prompt holds {len(prompt)} prompts; the local model answers one per request",
                param="prompt",
            )
        prompt = prompt[0]
    if body.echo:
        raise InvalidRequestError("echo is not supported; omit it", param="echo")
    if body.suffix:
        raise InvalidRequestError("suffix (insertion) is not supported; omit it", param="suffix")
    return GenerationRequest(
        request_id=request_id,
        stream=body.stream,
        prompt=prompt,
        params=SamplingParams(
            max_tokens=body.max_tokens or COMPLETIONS_DEFAULT_MAX_TOKENS,
            temperature=body.temperature,
            top_p=body.top_p,
            top_k=body.top_k,
            stop=_stops(body.stop),
            seed=body.seed,
            top_logprobs=body.logprobs,
            frequency_penalty=body.frequency_penalty,
            presence_penalty=body.presence_penalty,
            logit_bias=_logit_bias(body.logit_bias),
        ),
    )


def _check_common(n: int | None, stop: str | list[str] | None) -> None:
    if n is not None and n != 1:
        raise InvalidRequestError(
            f"n={n} is not supported: the local model returns one choice; send n=1 "
            f"or make {n} requests",
            param="n",
        )
    if isinstance(stop, list) and len(stop) > MAX_STOP_SEQUENCES:
        raise InvalidRequestError(
            f"stop holds {len(stop)} sequences; at most {MAX_STOP_SEQUENCES} are allowed",
            param="stop",
        )


def _logit_bias(bias: dict[str, float] | None) -> tuple[tuple[int, float], ...]:
    """``logit_bias`` (checked by the schema) as ``(token id, bias)`` pairs, by token id."""
    if not bias:
        return ()
    return tuple(sorted({int(key): value for key, value in bias.items()}.items()))


def _stops(stop: str | list[str] | None) -> tuple[str, ...]:
    if stop is None:
        return ()
    if isinstance(stop, str):
        return (stop,) if stop else ()
    return tuple(s for s in stop if s)


# Content parts other than text, and the capability each needs.
_PART_NEEDS = {"image_url": "images", "input_audio": "audio"}


def _message(message: ChatMessageIn, index: int) -> tuple[Message, set[str]]:
    content = message.content
    tools = message_tool_fields(message, index)
    if content is None:
        return Message(role=message.role, content="", **tools), set()
    if isinstance(content, str):
        return Message(role=message.role, content=content, **tools), set()
    texts = []
    needs: set[str] = set()
    for part in content:
        if part.type == "text" and part.text is not None:
            texts.append(part.text)
        elif part.type in _PART_NEEDS:
            needs.add(_PART_NEEDS[part.type])
        else:
            raise InvalidRequestError(
                f"messages[{index}] has a content part of type {part.type!r}; hybrid accepts "
                f"text, image_url and input_audio parts",
                param=f"messages[{index}].content",
            )
    parts = tuple(part.model_dump(exclude_none=True) for part in content) if needs else ()
    return Message(role=message.role, content="".join(texts), parts=parts, **tools), needs
