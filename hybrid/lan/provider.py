"""A LAN server's OpenAI-compatible API: the cloud provider's client, plus a check of the model.

A LAN server is spoken to exactly as an OpenAI-compatible cloud provider is
(:class:`~hybrid.cloud.openai_provider.OpenAIProvider`: pooled connections, timeouts, retries
before the first byte, a circuit breaker).  One thing differs: a team's server can be
restarted with another model behind the same name and port, and its answer would then pass
for the one asked for.  So the ``model`` field of the answer (or of the stream's first event)
is checked against the model asked for, and another one fails the attempt with
:class:`~hybrid.errors.WrongModelError`, which the LAN tier fails over like any other failure.
A request's ``top_k`` goes with it: the engines a team runs take it, as OpenAI does not.
"""

from __future__ import annotations

from typing import Any

import orjson

from hybrid.cloud.openai_provider import OpenAIProvider
from hybrid.cloud.upstream import UpstreamCall
from hybrid.errors import WrongModelError
from hybrid.generation import GenerationEvent, GenerationRequest
from hybrid.wire.openai.read import OpenAIStreamDecoder
from hybrid.wire.sse import SseEvent, StreamDecoder


def same_model(asked: str, answered: object) -> bool:
    """Whether an answer's ``model`` field names the model asked for.

    Servers echo the name in their own way: exactly (vLLM, llama-cpp-python), with a tag
    (Ollama's ``llama3.2:latest`` for ``llama3.2``) or as a file path (llama-server without an
    alias).  So the names match when either, lower-cased and stripped of a ``:latest`` tag and
    of any folders or ``.gguf`` suffix, is the other.  An answer without a ``model`` field
    matches: it says nothing.
    """
    if not isinstance(answered, str) or not answered:
        return True
    return _bare(asked) == _bare(answered) or asked.lower() == answered.lower()


def _bare(name: str) -> str:
    bare = name.lower().rsplit("/", 1)[-1].removesuffix(".gguf")
    return bare.removesuffix(":latest")


class LanProvider(OpenAIProvider):
    """A LAN server's API (takes the arguments of :class:`OpenAIProvider`); see the module
    docstring for the model check."""

    def _call(self, request: GenerationRequest, model: str) -> UpstreamCall:
        """OpenAI's body, with ``top_k`` when the request sets it: the engines a team runs
        (llama.cpp's server, vLLM, Ollama, another hybrid) take it, as OpenAI does not."""
        call = super()._call(request, model)
        if request.params.top_k is None:
            return call
        return UpstreamCall(call.path, {**call.body, "top_k": request.params.top_k})

    def _answer(self, request: GenerationRequest, data: Any) -> list[GenerationEvent]:
        if isinstance(data, dict) and request.model:
            self._check_model(request.model, data.get("model"))
        return super()._answer(request, data)

    def _stream_decoder(self, request: GenerationRequest) -> StreamDecoder:
        return _CheckedDecoder(self, request)

    def _check_model(self, asked: str, answered: object) -> None:
        if not same_model(asked, answered):
            raise WrongModelError(
                self.name,
                f"answered with model {answered!r} instead of {asked!r}: the server now serves "
                f"another model; fix the server or its models list under [[lan.servers]]",
            )


class _CheckedDecoder(OpenAIStreamDecoder):
    """The OpenAI stream decoder, checking the model of the first event that names one."""

    def __init__(self, provider: LanProvider, request: GenerationRequest) -> None:
        super().__init__(provider.name, legacy=request.prompt is not None)
        self._lan = provider
        self._asked = request.model
        self._checked = not request.model

    def feed(self, event: SseEvent) -> list[GenerationEvent]:
        if not self._checked and event.data.strip() != "[DONE]":
            try:
                chunk = orjson.loads(event.data)
            except ValueError:
                chunk = None  # the decoder reports it
            if isinstance(chunk, dict) and "model" in chunk:
                self._checked = True
                assert self._asked is not None
                self._lan._check_model(self._asked, chunk["model"])
        return super().feed(event)
