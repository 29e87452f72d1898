"""The Anthropic Messages request body hybrid accepts, as pydantic models.

Unknown fields are tolerated (``extra="allow"``): the Anthropic SDK and tools such as Claude Code
add fields over time, and a drop-in endpoint must not reject them.  Content blocks are read
loosely here (any ``type``, every block's fields optional) so that a block hybrid cannot read
gets a 400 naming that block from :mod:`hybrid.wire.anthropic.decode`, rather than a
union-validation error about strings.  Known fields are strict: ``"stream": "yes"`` is a 400,
not ``True``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field

from hybrid.wire.fields import INT64_MAX, JsonObject, check_tool_schema
from hybrid.wire.fields import OpenModel as _Open


class ContentBlockIn(_Open):
    """One content block: ``text``, ``image``, ``tool_use``, ``tool_result``, ``thinking``,
    ``redacted_thinking``, or a kind hybrid refuses (document, ...).

    Attributes:
        text: A text block's text.
        id: A tool_use block's call id.
        name: A tool_use block's tool name.
        input: A tool_use block's arguments.
        tool_use_id: A tool_result block's call id.
        content: A tool_result block's result: a string or text blocks.
        is_error: A tool_result block reports a failure.
        cache_control: A prompt-cache breakpoint after this block (Anthropic's caching).
        thinking: A thinking block's text.
        signature: A thinking block's signature.
        data: A redacted_thinking block's encrypted thinking.
    """

    type: str
    text: str | None = None
    id: str | None = None
    name: str | None = None
    input: JsonObject | None = None
    tool_use_id: str | None = None
    content: str | list[JsonObject] | None = None
    is_error: bool | None = None
    cache_control: JsonObject | None = None
    thinking: str | None = None
    signature: str | None = None
    data: str | None = None


class MessageIn(_Open):
    """One turn of the conversation as Anthropic's API carries it."""

    role: Literal["user", "assistant"]
    content: str | list[ContentBlockIn]


class ToolChoiceIn(_Open):
    """``tool_choice``: ``auto``, ``any``, ``tool`` (with ``name``) or ``none``."""

    type: str
    name: str | None = None
    disable_parallel_tool_use: bool | None = None


class ToolIn(_Open):
    """One entry of ``tools``: a client tool (name, description, input schema).

    Anthropic's server tools (``web_search_...``, ``bash_...``) carry a ``type`` and are refused
    by the translation: they run on Anthropic's side, which hybrid cannot promise.
    """

    name: str = Field(min_length=1)
    description: str | None = None
    input_schema: Annotated[dict[str, Any], AfterValidator(check_tool_schema)] | None = None
    type: str | None = None
    cache_control: JsonObject | None = None


class MessagesRequest(_Open):
    """``POST /v1/messages``.

    ``metadata`` is accepted and ignored: it does not change what a correct answer looks like.
    ``top_k`` reaches the local model, Anthropic and LAN servers; an OpenAI-compatible cloud
    provider, whose API has no such field, samples without it.  ``cache_control`` (automatic
    prompt caching) and ``thinking`` (extended thinking, ``{"type": "enabled",
    "budget_tokens": N}``) go to Anthropic only.
    """

    model: str
    messages: list[MessageIn] = Field(min_length=1)
    max_tokens: int = Field(ge=1, le=INT64_MAX)
    system: str | list[ContentBlockIn] | None = None
    stop_sequences: list[str] | None = None
    temperature: float | None = Field(default=None, ge=0.0, le=1.0)
    top_p: float | None = Field(default=None, ge=0.0, le=1.0)
    top_k: int | None = Field(default=None, ge=0)
    stream: bool = False
    metadata: dict[str, Any] | None = None
    tools: list[ToolIn] | None = None
    tool_choice: ToolChoiceIn | None = None
    cache_control: JsonObject | None = None
    thinking: JsonObject | None = None
