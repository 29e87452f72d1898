"""The OpenAI request bodies hybrid accepts, as pydantic models.

Unknown fields are tolerated (``extra="allow"``): SDKs add fields over time and a drop-in
endpoint must not reject them.  Fields hybrid cannot honour get a clear 400 from the route, not a
silent change of meaning.  Known fields are strict: ``"stream": "yes"`` is a 400, not ``True``,
since what a client meant by a value of the wrong type is a guess.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, WithJsonSchema, model_validator

from hybrid.wire.fields import INT64_MAX, INT64_MIN, JsonObject, check_tool_schema
from hybrid.wire.fields import OpenModel as _Open


class ImageUrlIn(_Open):
    """``image_url`` of an image part: a URL (``data:`` URLs included) and the detail wanted."""

    url: str
    detail: Literal["auto", "low", "high"] | None = None


class ContentPart(_Open):
    """One part of a multi-part message content."""

    type: str
    text: str | None = None
    image_url: ImageUrlIn | None = None

    @model_validator(mode="after")
    def _image_has_url(self) -> ContentPart:
        if self.type == "image_url" and self.image_url is None:
            raise ValueError('an image_url part needs "image_url": {"url": ...}')
        return self


class FunctionCallIn(_Open):
    """``function`` of a tool call: the tool's name and its arguments as JSON text."""

    name: str
    # OpenAI sends a JSON string; a few clients send the object itself, which is read as JSON.
    arguments: str | JsonObject = ""


class ToolCallIn(_Open):
    """One tool call of an assistant message sent back in the conversation."""

    id: str
    type: str = "function"
    function: FunctionCallIn


class ChatMessageIn(_Open):
    """A chat message as OpenAI's API carries it."""

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCallIn] | None = None
    tool_call_id: str | None = None


class FunctionSpecIn(_Open):
    """``function`` of a tool: its name, description and argument schema."""

    name: str = Field(min_length=1)
    description: str | None = None
    parameters: Annotated[dict[str, Any], AfterValidator(check_tool_schema)] | None = None
    strict: bool | None = None


class ToolIn(_Open):
    """One entry of ``tools``: only ``function`` tools are understood."""

    type: str
    function: FunctionSpecIn | None = None


class ToolNameIn(_Open):
    """The tool a named ``tool_choice`` requires."""

    name: str


class NamedToolChoiceIn(_Open):
    """``tool_choice: {"type": "function", "function": {"name": ...}}``."""

    type: str
    function: ToolNameIn | None = None


class StreamOptions(_Open):
    """``stream_options``: only ``include_usage`` changes the output."""

    include_usage: bool = False


class JsonSchemaSpec(_Open):
    """``response_format.json_schema``: the schema, its name and description, and ``strict``."""

    name: str | None = None
    description: str | None = None
    schema_: JsonObject | None = Field(default=None, alias="schema")
    strict: bool | None = None


class ResponseFormatIn(_Open):
    """``response_format``: free text, any JSON object, or JSON following a schema."""

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaSpec | None = None


# OpenAI's limits: a bias from -100 (a ban) to 100 (exclusive selection) per token id.
LOGIT_BIAS_LIMIT = 100.0


def _check_logit_bias(bias: dict[str, float]) -> dict[str, float]:
    """Return ``bias`` if its keys are token ids (strings of digits) and its values biases.

    Raises:
        ValueError: A key is not a token id, or a value lies outside -100 to 100.
    """
    for key, value in bias.items():
        if not (key.isascii() and key.isdigit()):
            raise ValueError(
                f'logit_bias maps token ids, written as strings of digits ("1234"), to '
                f"biases; {key!r} is not a token id"
            )
        if not -LOGIT_BIAS_LIMIT <= value <= LOGIT_BIAS_LIMIT:
            raise ValueError(
                f"the bias of token {key} is {value:g}; a bias lies from -100 (ban the token) "
                f"to 100 (choose only it)"
            )
    return bias


# What the validator checks, written into the OpenAPI document too.
_LogitBias = Annotated[
    dict[str, float],
    AfterValidator(_check_logit_bias),
    WithJsonSchema(
        {
            "type": "object",
            "propertyNames": {"pattern": "^[0-9]+$"},
            "additionalProperties": {
                "type": "number",
                "minimum": -LOGIT_BIAS_LIMIT,
                "maximum": LOGIT_BIAS_LIMIT,
            },
        }
    ),
]


class _SamplingFields(_Open):
    model: str | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, ge=0.0, le=1.0)
    # Not OpenAI's: llama.cpp's server, vLLM and Ollama take it (0: no limit).
    top_k: int | None = Field(default=None, ge=0, le=INT64_MAX)
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    logit_bias: _LogitBias | None = None
    stop: str | list[str] | None = None
    seed: int | None = Field(default=None, ge=INT64_MIN, le=INT64_MAX)
    n: int | None = Field(default=None, ge=1, le=INT64_MAX)
    user: str | None = None


class ChatCompletionRequest(_SamplingFields):
    """``POST /v1/chat/completions``."""

    messages: list[ChatMessageIn] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1, le=INT64_MAX)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=INT64_MAX)
    response_format: ResponseFormatIn | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    tools: list[ToolIn] | None = None
    # A string is checked by the translation (auto, none, required), for a clearer message.
    tool_choice: str | NamedToolChoiceIn | None = None
    parallel_tool_calls: bool | None = None


class CompletionRequest(_SamplingFields):
    """``POST /v1/completions`` (the legacy text completion endpoint)."""

    prompt: str | list[str]
    max_tokens: int | None = Field(default=None, ge=1, le=INT64_MAX)
    logprobs: int | None = Field(default=None, ge=0, le=5)
    echo: bool = False
    suffix: str | None = None
