"""A backend that answers calibration prompts from a function, for tests without a model."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from hybrid.backend import Backend, Generation
from hybrid.errors import HybridError
from hybrid.generation import (
    GenerationDone,
    GenerationEvent,
    GenerationRequest,
    TextDelta,
    Usage,
)


class _Answer(Generation):
    def __init__(self, text: str) -> None:
        self._text = text

    async def __aiter__(self) -> AsyncIterator[GenerationEvent]:
        yield TextDelta(self._text)
        yield GenerationDone("stop", Usage(10, 3))

    async def aclose(self) -> None:
        return None


class FunctionBackend(Backend):
    """Answers each request with ``answer(last user message)``, or raises what it returns."""

    def __init__(self, answer: Callable[[str], str | HybridError]) -> None:
        self.answer = answer
        self.requests: list[GenerationRequest] = []

    async def start(self, request: GenerationRequest) -> Generation:
        self.requests.append(request)
        prompt = next(m.content for m in reversed(request.messages) if m.role == "user")
        result = self.answer(prompt)
        if isinstance(result, HybridError):
            raise result
        return _Answer(result)
