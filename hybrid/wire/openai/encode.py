"""hybrid's requests to OpenAI and every OpenAI-compatible API, as chat completion bodies.

OpenAI itself and the compatible providers (OpenRouter, Groq, Together, Mistral, DeepSeek,
vLLM, Ollama, llama-server) differ in the two places where OpenAI moved on and the copies did
not: ``max_completion_tokens`` and the ``developer`` role are sent to OpenAI only.  Tools are
rendered by :mod:`hybrid.wire.openai.tools`.
"""

from __future__ import annotations

from typing import Any

from hybrid.generation import GenerationRequest, Message, ResponseFormat, SamplingParams
from hybrid.wire.openai.tools import tool_fields

# The provider name for which the current OpenAI dialect is spoken.
OPENAI = "openai"


def chat_body(request: GenerationRequest, model: str, *, dialect: str) -> dict[str, Any]:
    """The JSON body of a chat completion request.

    Args:
        request: What to generate.
        model: The provider's model id.
        dialect: The provider's name: ``openai`` gets ``max_completion_tokens`` and keeps the
            ``developer`` role; a compatible API gets ``max_tokens`` and ``system`` instead,
            which is what those servers understand.

    Returns:
        The body, with only the parameters the request sets.
    """
    modern = dialect == OPENAI
    messages = [message_json(m, modern=modern) for m in request.messages]
    body: dict[str, Any] = {"model": model, "messages": messages}
    body.update(tool_fields(request))
    params = request.params
    if params.max_tokens is not None:
        body["max_completion_tokens" if modern else "max_tokens"] = params.max_tokens
    _sampling(params, body)
    if params.top_logprobs is not None:
        body["logprobs"] = True
        if params.top_logprobs > 0:
            body["top_logprobs"] = params.top_logprobs
    if params.response_format is not None:
        body["response_format"] = response_format_json(params.response_format)
    _streaming(request, body)
    return body


def response_format_json(response_format: ResponseFormat) -> dict[str, Any]:
    """OpenAI's ``response_format``: a schema keeps the client's name, description and
    ``strict`` (without ``strict: true`` OpenAI takes the schema as a hint, not a guarantee);
    a schema without a name is called ``response``, since the API requires one."""
    if response_format.kind != "json_schema" or response_format.schema is None:
        return {"type": "json_object"}
    spec: dict[str, Any] = {"name": response_format.name or "response"}
    if response_format.description is not None:
        spec["description"] = response_format.description
    spec["schema"] = dict(response_format.schema)
    if response_format.strict is not None:
        spec["strict"] = response_format.strict
    return {"type": "json_schema", "json_schema": spec}


def completion_body(request: GenerationRequest, model: str) -> dict[str, Any]:
    """The JSON body of a legacy text completion request (``prompt``)."""
    body: dict[str, Any] = {"model": model, "prompt": request.prompt}
    params = request.params
    if params.max_tokens is not None:
        body["max_tokens"] = params.max_tokens
    _sampling(params, body)
    if params.top_logprobs is not None:
        body["logprobs"] = params.top_logprobs
    _streaming(request, body)
    return body


def message_json(message: Message, *, modern: bool) -> dict[str, Any]:
    """One message of a chat completion request.

    Args:
        message: The message.
        modern: The API is OpenAI's own, which keeps the ``developer`` role; compatible
            servers get ``system`` instead.

    Returns:
        The message; its content is its text unless some of its parts are not text (then
        the parts, less Anthropic's ``cache_control`` markers: OpenAI caches prompts without
        them), an assistant message with tool calls has ``content: null`` when it has no
        text, and a ``tool`` message names the call it answers.  A failed tool's result
        (Anthropic's ``is_error``, which OpenAI has no field for) says so in its text.
    """
    role = "system" if message.role == "developer" and not modern else message.role
    content: Any = message.content
    if any(part.get("type") != "text" for part in message.parts):
        content = [
            {key: value for key, value in part.items() if key != "cache_control"}
            for part in message.parts
        ]
    body: dict[str, Any] = {"role": role, "content": content}
    if message.role == "assistant" and message.tool_calls:
        body["content"] = content or None
        body["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in message.tool_calls
        ]
    if message.role == "tool":
        body["tool_call_id"] = message.tool_call_id
        if message.is_error:
            body["content"] = f"Error: {message.content}"
    return body


def _sampling(params: SamplingParams, body: dict[str, Any]) -> None:
    if params.temperature is not None:
        body["temperature"] = params.temperature
    if params.top_p is not None:
        body["top_p"] = params.top_p
    if params.stop:
        body["stop"] = list(params.stop)
    if params.seed is not None:
        body["seed"] = params.seed
    if params.frequency_penalty is not None:
        body["frequency_penalty"] = params.frequency_penalty
    if params.presence_penalty is not None:
        body["presence_penalty"] = params.presence_penalty
    if params.logit_bias:
        body["logit_bias"] = {str(token): bias for token, bias in params.logit_bias}


def _streaming(request: GenerationRequest, body: dict[str, Any]) -> None:
    if request.stream:
        body["stream"] = True
        # Without this a stream carries no token counts at all.
        body["stream_options"] = {"include_usage": True}
