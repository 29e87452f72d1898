"""Turning chat messages into the text prompt a local model completes.

A model whose GGUF carries a chat template (``tokenizer.chat_template``) is prompted through that
template, exactly as its authors intended.  A base model without one gets a plain transcript
(:class:`TranscriptFormat`): a preamble, a few example exchanges that show the answer style,
then the conversation::

    A conversation between a user and a helpful assistant. ...

    User: Who painted the Mona Lisa?
    Assistant: Leonardo da Vinci.
    ...
    User: What is the capital of France?
    Assistant:

with stop sequences that end the answer where the transcript would continue, so that a base
model gives a short answer instead of inventing the rest of the conversation.  The examples are
turns of the same transcript, so those stops also keep the model from writing another example.
``scripts/eval_prompt.py`` measures candidate formats on the calibration set; the default is
the most accurate one there that does not copy its examples into its answers.

A template that mentions ``tools`` supports tool calling: the tools are rendered into it as
Hugging Face's ``apply_chat_template(tools=...)`` does (``{"type": "function", "function":
{...}}`` each), and so are the conversation's tool calls and results.  A base model cannot call
tools.

A conversation that ends with an assistant message asks for that message to be continued (the
"prefill" of Anthropic's API; llama.cpp's server and Ollama do the same): the conversation
before it is formatted as usual, up to the new assistant turn, and the message's text follows,
its turn left open, so that the answer goes on from where it stops.  The answer is the
continuation only, whitespace and all.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic_core import from_json

from hybrid.errors import InvalidRequestError
from hybrid.generation import Message, ToolCall, ToolSpec

_ROLE_LABELS = {"user": "User", "assistant": "Assistant", "tool": "Tool"}
# A turn marker anywhere after the answer means the model started writing the next turn.
TRANSCRIPT_STOPS: tuple[str, ...] = ("\nUser:", "\nAssistant:", "\nTool:")
# A blank line ends a base model's answer: past it, small models drift into unrelated text.
# It is left out when the output is grammar-constrained, where whitespace is part of the JSON.
TRANSCRIPT_PARAGRAPH_STOP = "\n\n"


@dataclass(frozen=True)
class TranscriptFormat:
    """How a base model's transcript begins, before the conversation itself.

    Attributes:
        preamble: The opening text; the conversation's system messages follow it.
        examples: Example exchanges shown as earlier turns, ``(user text, assistant text)``
            each: a base model copies the answer style of the turns it has seen.
    """

    preamble: str
    examples: tuple[tuple[str, str], ...] = ()

    def header(self, system: Sequence[str] = (), *, with_examples: bool = True) -> str:
        """The transcript up to the conversation: preamble, system text, examples.

        Args:
            system: The conversation's system messages, one entry each.
            with_examples: Include the example exchanges.

        Returns:
            The text, ending with a line break.
        """
        lines = ["\n".join([self.preamble, *system]), ""]
        for question, answer in self.examples if with_examples else ():
            lines += [_turn("user", question), _turn("assistant", answer)]
        return "\n".join(lines) + "\n"


DEFAULT_TRANSCRIPT = TranscriptFormat(
    preamble=(
        "A conversation between a user and a helpful assistant. "
        "The assistant answers accurately and briefly."
    ),
    # Terse one-line answers without numbers: a small model copies a number or a sentence
    # pattern from its examples into unrelated answers.  None is a calibration item.
    examples=(
        ("Who painted the Mona Lisa?", "Leonardo da Vinci."),
        ("Translate 'good night' into French.", "Bonne nuit."),
        ("What do caterpillars turn into?", "Butterflies."),
    ),
)
"""The transcript base models get: ``fewshot-3`` of ``scripts/eval_prompt.py``, the most
accurate candidate there that does not copy its examples into answers (Gemma 3 270M: 23.9 %
of a calibration sample right, against 12.8 % with the preamble alone)."""


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
        transcript: How the transcript of a base model (no template) begins.

    Raises:
        InvalidRequestError: (from :meth:`format`) the template rejects the conversation, e.g.
            roles that do not alternate.
    """

    def __init__(
        self,
        chat_template: str | None,
        *,
        bos_token: str = "",
        eos_token: str = "",
        transcript: TranscriptFormat = DEFAULT_TRANSCRIPT,
    ) -> None:
        self._bos_token = bos_token
        self._eos_token = eos_token
        self._transcript = transcript
        self._template: Any = None
        # Templates written for tool calling read a `tools` variable; others never mention it.
        self._supports_tools = bool(chat_template) and "tools" in (chat_template or "")
        if chat_template:
            # Imported here: jinja2 is only needed for models that carry a template.
            from jinja2.sandbox import ImmutableSandboxedEnvironment

            env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
            env.globals["raise_exception"] = _raise_template_error
            env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
            # Hugging Face's tojson: tool schemas reach the model as written, not HTML-escaped.
            env.filters["tojson"] = _tojson
            self._template = env.from_string(chat_template)

    @property
    def uses_template(self) -> bool:
        """True when the model's own chat template is used."""
        return self._template is not None

    @property
    def supports_tools(self) -> bool:
        """True when the chat template renders tools, so the model knows how to call them."""
        return self._supports_tools

    def format(
        self,
        messages: Sequence[Message],
        *,
        constrained: bool = False,
        tools: Sequence[ToolSpec] = (),
    ) -> FormattedPrompt:
        """Build the prompt for a conversation.

        Args:
            messages: The conversation, oldest first.
            constrained: The output is grammar-constrained (JSON): no paragraph stop.
            tools: Tools to offer the model (only a template with tool support renders them).

        Returns:
            The prompt and the stop sequences that belong to its format.

        Raises:
            InvalidRequestError: The conversation is empty or the template rejects it.
        """
        if not messages:
            raise InvalidRequestError(
                "messages must contain at least one message", param="messages"
            )
        prefill = _prefill(messages)
        if prefill is not None:
            messages = messages[:-1]
        if self._template is None:
            return _transcript(self._transcript, messages, constrained=constrained, prefill=prefill)
        try:
            text = self._template.render(
                messages=[_template_message(m) for m in messages],
                # None, not an empty list, when there are none: as Hugging Face passes it.
                tools=[_template_tool(tool) for tool in tools] or None,
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
        # As llama.cpp's server does: the template opens the assistant turn, the prefill
        # follows it as written, and no end of turn closes it.
        text += prefill or ""
        return FormattedPrompt(text=text, stop=(), add_bos=add_bos, strip_output=False)


def _prefill(messages: Sequence[Message]) -> str | None:
    """The text of a trailing assistant message the answer continues, or None.

    Only a message with text, after at least one other and with no tool calls, is continued;
    a lone assistant message is a conversation the template judges as it is.
    """
    last = messages[-1]
    if len(messages) < 2 or last.role != "assistant" or last.tool_calls:
        return None
    return last.content if last.content.strip() else None


def _tojson(
    value: Any,
    ensure_ascii: bool = False,
    indent: int | None = None,
    separators: tuple[str, str] | None = None,
    sort_keys: bool = False,
) -> str:
    return json.dumps(
        value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


class _TemplateRejected(Exception):
    """Raised by a template's ``raise_exception(...)``."""


def _raise_template_error(message: str) -> None:
    raise _TemplateRejected(message)


def _template_message(message: Message) -> dict[str, Any]:
    """A message as chat templates read it (Hugging Face's conventions).

    OpenAI's ``developer`` role is ``system`` to a template: templates know only the older name
    (Gemma's refuses the conversation, Qwen's drops the message).
    """
    role = "system" if message.role == "developer" else message.role
    rendered: dict[str, Any] = {"role": role, "content": message.content}
    if message.tool_calls:
        rendered["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": _arguments(call)},
            }
            for call in message.tool_calls
        ]
    if message.role == "tool":
        rendered["tool_call_id"] = message.tool_call_id
        if message.name is not None:
            rendered["name"] = message.name
    return rendered


def _arguments(call: ToolCall) -> Any:
    """A call's arguments as an object: templates write them with ``| tojson``.

    Arguments that are not JSON, or nest deeper than the parser allows, stay the string the
    client sent (pydantic's parser refuses deep nesting where ``json`` would overflow the stack).
    """
    try:
        return from_json(call.arguments)
    except ValueError:
        return call.arguments


def _template_tool(tool: ToolSpec) -> dict[str, Any]:
    function: dict[str, Any] = {"name": tool.name}
    if tool.description is not None:
        function["description"] = tool.description
    function["parameters"] = dict(tool.parameters or {"type": "object", "properties": {}})
    return {"type": "function", "function": function}


def _transcript(
    transcript: TranscriptFormat,
    messages: Sequence[Message],
    *,
    constrained: bool,
    prefill: str | None = None,
) -> FormattedPrompt:
    system = [m.content.strip() for m in messages if m.role in ("system", "developer")]
    lines = []
    for message in messages:
        if message.role in _ROLE_LABELS:
            # Calls made earlier in the conversation stay readable to a base model.
            calls = [f"{call.name}({call.arguments})" for call in message.tool_calls]
            lines.append(_turn(message.role, " ".join([message.content.strip(), *calls])))
    opened = f"{_ROLE_LABELS['assistant']}:"
    lines.append(opened if prefill is None else f"{opened} {prefill.lstrip()}")
    # The examples show the style of a free-text answer, which grammar-constrained JSON cannot
    # take; JSON answers were no better with them, so they are left out there.
    text = transcript.header(system, with_examples=not constrained) + "\n".join(lines)
    stop = TRANSCRIPT_STOPS if constrained else (*TRANSCRIPT_STOPS, TRANSCRIPT_PARAGRAPH_STOP)
    # A continuation's leading space is part of it ("Paris is" + " the capital").
    return FormattedPrompt(text=text, stop=stop, add_bos=True, strip_output=prefill is None)


def _turn(role: str, text: str) -> str:
    return f"{_ROLE_LABELS[role]}: {text.strip()}"
