"""Turning chat messages into the text prompt a local model completes.

A model whose GGUF carries a chat template (``tokenizer.chat_template``) is prompted through that
template, exactly as its authors intended.  A base model without one gets a plain transcript::

    A conversation between a user and a helpful assistant. ...

    User: What is the capital of France?
    Assistant:

with stop sequences that end the answer where the transcript would continue, so that a base
model gives a short answer instead of inventing the rest of the conversation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from hybrid.errors import InvalidRequestError
from hybrid.generation import Message

TRANSCRIPT_PREAMBLE = (
    "A conversation between a user and a helpful assistant. "
    "The assistant answers accurately and briefly."
)
_ROLE_LABELS = {"user": "User", "assistant": "Assistant", "tool": "Tool"}
# A turn marker anywhere after the answer means the model started writing the next turn.
TRANSCRIPT_STOPS: tuple[str, ...] = ("\nUser:", "\nAssistant:", "\nTool:")
# A blank line ends a base model's answer: past it, small models drift into unrelated text.
# It is left out when the output is grammar-constrained, where whitespace is part of the JSON.
TRANSCRIPT_PARAGRAPH_STOP = "\n\n"


@dataclass(frozen=True)
class FormattedPrompt:
    """A prompt ready to tokenize.

    Attributes:
        text: The prompt text.
        stop: Stop sequences implied by the format (the request's own come on top).
        add_bos: Whether the tokenizer should prepend the BOS token (False when the template
            already wrote it).
        strip_output: Whether leading and trailing whitespace of the answer is noise of the
            format (true for the transcript, whose answers start after ``"Assistant:"``).
    """

    text: str
    stop: tuple[str, ...]
    add_bos: bool
    strip_output: bool


class ChatFormatter:
    """Formats chat messages for one model.

    Args:
        chat_template: The GGUF's Jinja chat template, or None for a base model.
        bos_token: Text of the BOS token, passed to the template.
        eos_token: Text of the EOS token, passed to the template.

    Raises:
        InvalidRequestError: (from :meth:`format`) the template rejects the conversation, e.g.
            roles that do not alternate.
    """

    def __init__(
        self, chat_template: str | None, *, bos_token: str = "", eos_token: str = ""
    ) -> None:
        self._bos_token = bos_token
        self._eos_token = eos_token
        self._template: Any = None
        if chat_template:
            # Imported here: jinja2 is only needed for models that carry a template.
            from jinja2.sandbox import ImmutableSandboxedEnvironment

            env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
            env.globals["raise_exception"] = _raise_template_error
            env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
            self._template = env.from_string(chat_template)

    @property
    def uses_template(self) -> bool:
        """True when the model's own chat template is used."""
        return self._template is not None

    def format(self, messages: Sequence[Message], *, constrained: bool = False) -> FormattedPrompt:
        """Build the prompt for a conversation.

        Args:
            messages: The conversation, oldest first.
            constrained: The output is grammar-constrained (JSON): no paragraph stop.

        Returns:
            The prompt and the stop sequences that belong to its format.

        Raises:
            InvalidRequestError: The conversation is empty or the template rejects it.
        """
        if not messages:
            raise InvalidRequestError(
                "messages must contain at least one message", param="messages"
            )
        if self._template is None:
            return _transcript(messages, constrained=constrained)
        try:
            text = self._template.render(
                messages=[{"role": m.role, "content": m.content} for m in messages],
                add_generation_prompt=True,
                bos_token=self._bos_token,
                eos_token=self._eos_token,
            )
        except _TemplateRejected as exc:
            raise InvalidRequestError(
                f"the local model's chat template rejected the conversation: {exc}",
                param="messages",
            ) from exc
        add_bos = not (self._bos_token and text.startswith(self._bos_token))
        return FormattedPrompt(text=text, stop=(), add_bos=add_bos, strip_output=False)


class _TemplateRejected(Exception):
    """Raised by a template's ``raise_exception(...)``."""


def _raise_template_error(message: str) -> None:
    raise _TemplateRejected(message)


def _transcript(messages: Sequence[Message], *, constrained: bool) -> FormattedPrompt:
    system = [m.content.strip() for m in messages if m.role in ("system", "developer")]
    lines = ["\n".join([TRANSCRIPT_PREAMBLE, *system]), ""]
    for message in messages:
        label = _ROLE_LABELS.get(message.role)
        if label is not None:
            lines.append(f"{label}: {message.content.strip()}")
    lines.append("Assistant:")
    stop = TRANSCRIPT_STOPS if constrained else (*TRANSCRIPT_STOPS, TRANSCRIPT_PARAGRAPH_STOP)
    return FormattedPrompt(text="\n".join(lines), stop=stop, add_bos=True, strip_output=True)
