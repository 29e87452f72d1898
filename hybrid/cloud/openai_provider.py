"""OpenAI's chat completions API, and every API that copies it.

One class serves OpenAI itself and the OpenAI-compatible providers (OpenRouter, Groq, Together,
Mistral, DeepSeek, vLLM, Ollama, llama-server): they differ only in name, base URL and key, plus
the two places where OpenAI moved on and the copies did not (``max_completion_tokens`` and the
``developer`` role are sent to OpenAI only).  The wire format, tools included, is
:mod:`hybrid.wire.openai`; this module adds the endpoints and the key.
"""

from __future__ import annotations

from typing import Any

from hybrid.cloud.provider import CloudProvider
from hybrid.cloud.upstream import UpstreamCall
from hybrid.generation import GenerationEvent, GenerationRequest
from hybrid.wire.openai.encode import chat_body, completion_body
from hybrid.wire.openai.read import OpenAIStreamDecoder, answer_events
from hybrid.wire.sse import StreamDecoder


class OpenAIProvider(CloudProvider):
    """OpenAI or any OpenAI-compatible API: ``POST {base_url}/chat/completions``.

    A request with a raw ``prompt`` goes to the legacy ``{base_url}/completions``.  The key, when
    there is one, travels as ``Authorization: Bearer``; a local server may need none.  Takes
    the arguments of :class:`~hybrid.cloud.provider.CloudProvider`.
    """

    def _call(self, request: GenerationRequest, model: str) -> UpstreamCall:
        if request.prompt is not None:
            return UpstreamCall("/completions", completion_body(request, model))
        return UpstreamCall("/chat/completions", chat_body(request, model, dialect=self.name))

    def _auth_headers(self) -> dict[str, str]:
        key = self._reveal_key()
        return {} if key is None else {"Authorization": f"Bearer {key}"}

    def _answer(self, request: GenerationRequest, data: Any) -> list[GenerationEvent]:
        return answer_events(self.name, data, legacy=request.prompt is not None)

    def _stream_decoder(self, request: GenerationRequest) -> StreamDecoder:
        return OpenAIStreamDecoder(self.name, legacy=request.prompt is not None)
