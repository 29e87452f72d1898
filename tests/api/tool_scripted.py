"""A scripted local backend that calls tools, and SDK clients bound to a TestClient."""

from __future__ import annotations

from typing import Any

import anthropic
import httpx2
import openai
from fastapi.testclient import TestClient
from scripted import ScriptedBackend, ScriptedGeneration

from hybrid.backend import Generation
from hybrid.errors import HybridError
from hybrid.generation import (
    GenerationDone,
    GenerationEvent,
    GenerationRequest,
    TextDelta,
    ToolCallDelta,
    Usage,
)

# The calls the backend makes, as a stream delivers them: the first delta of each call names
# it, the rest carry pieces of its arguments.
WEATHER_CALL = [
    ToolCallDelta(0, "call_w1", "get_weather", ""),
    ToolCallDelta(0, arguments='{"city": '),
    ToolCallDelta(0, arguments='"Paris"}'),
]
CLOCK_CALL = [ToolCallDelta(1, "call_t2", "get_time", "{}")]


class ToolBackend(ScriptedBackend):
    """A local model whose template supports tools: it answers ``text`` then ``calls``."""

    supports = frozenset({"tools"})

    def __init__(self) -> None:
        super().__init__()
        self.text = "Let me check."
        self.calls: list[ToolCallDelta] = [*WEATHER_CALL, *CLOCK_CALL]

    async def start(
        self, request: GenerationRequest, *, prepared: Any = None, running: Any = None
    ) -> Generation:
        if not request.tools or request.tool_choice.mode == "none":
            return await super().start(request, running=running)
        self.requests.append(request)
        events: list[GenerationEvent | HybridError] = [TextDelta(self.text)] if self.text else []
        events += self.calls
        events.append(GenerationDone("tool_calls", Usage(prompt_tokens=7, completion_tokens=9)))
        generation = ScriptedGeneration(events, running)
        self.generations.append(generation)
        return generation


def openai_sdk(client: TestClient) -> openai.OpenAI:
    return openai.OpenAI(
        base_url="http://testserver/v1", api_key="unused", http_client=client, max_retries=0
    )


def anthropic_sdk(client: TestClient) -> anthropic.Anthropic:
    """The Anthropic SDK (it speaks httpx2) handing each request to the TestClient."""

    def forward(request: httpx2.Request) -> httpx2.Response:
        response = client.request(
            request.method,
            str(request.url),
            headers=request.headers.multi_items(),
            content=request.read(),
        )
        return httpx2.Response(
            response.status_code, headers=response.headers.multi_items(), content=response.content
        )

    http_client = httpx2.Client(transport=httpx2.MockTransport(forward))
    return anthropic.Anthropic(
        base_url="http://testserver", api_key="x", http_client=http_client, max_retries=0
    )
