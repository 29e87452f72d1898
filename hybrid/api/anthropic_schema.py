"""The Anthropic Messages request body hybrid accepts, as pydantic models.

Unknown fields are tolerated (``extra="allow"``): the Anthropic SDK and tools such as Claude Code
add fields over time, and a drop-in endpoint must not reject them.  Content blocks are read
loosely here (any ``type``) so that a block hybrid cannot read yet gets a 400 naming that block
from :mod:`hybrid.api.anthropic_wire`, rather than a union-validation error about strings.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class ContentBlockIn(_Open):
    """One content block: ``text``, or a kind hybrid refuses for now (image, tool_use, ...)."""

    type: str
    text: str | None = None


class MessageIn(_Open):
    """One turn of the conversation as Anthropic's API carries it."""

    role: Literal["user", "assistant"]
    content: str | list[ContentBlockIn]


class ToolChoiceIn(_Open):
    """``tool_choice``: ``auto``, ``any``, ``tool`` (with ``name``) or ``none``."""

    type: str
    name: str | None = None


class MessagesRequest(_Open):
    """``POST /v1/messages``.

    ``top_k`` and ``metadata`` are accepted and ignored: neither changes what a correct answer
    looks like.  ``tools`` and a ``tool_choice`` that demands a tool call are refused by the
    translation, since no backend behind this endpoint calls tools yet.
    """

    model: str
    messages: list[MessageIn] = Field(min_length=1)
    max_tokens: int = Field(ge=1)
    system: str | list[ContentBlockIn] | None = None
    stop_sequences: list[str] | None = None
    temperature: float | None = Field(default=None, ge=0.0, le=1.0)
    top_p: float | None = Field(default=None, ge=0.0, le=1.0)
    top_k: int | None = Field(default=None, ge=0)
    stream: bool = False
    metadata: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: ToolChoiceIn | None = None
