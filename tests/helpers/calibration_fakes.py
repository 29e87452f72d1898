"""Backends that answer calibration prompts without a model: from a function, or right on
exactly the items a test picks."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence

from hybrid.backend import Backend, Generation
from hybrid.errors import HybridError
from hybrid.generation import (
    GenerationDone,
    GenerationEvent,
    GenerationRequest,
    Message,
    TextDelta,
    TokenLogprob,
    Usage,
)
from hybrid.routing.calibration.item import CalibrationItem, example_answer


class _Answer(Generation):
    def __init__(self, text: str, logprobs: tuple[TokenLogprob, ...] = ()) -> None:
        self._text = text
        self._logprobs = logprobs

    async def __aiter__(self) -> AsyncIterator[GenerationEvent]:
        yield TextDelta(self._text, self._logprobs)
        yield GenerationDone("stop", Usage(10, 3))

    async def aclose(self) -> None:
        return None


class FunctionBackend(Backend):
    """Answers each request with ``answer(last user message)``, or raises what it returns.

    Asked for log-probabilities, it gives each word of the answer the log-probability
    ``logprob(last user message)`` (none when that is not given).
    """

    def __init__(
        self,
        answer: Callable[[str], str | HybridError],
        logprob: Callable[[str], float] | None = None,
    ) -> None:
        self.answer = answer
        self.logprob = logprob
        self.requests: list[GenerationRequest] = []

    async def start(self, request: GenerationRequest) -> Generation:
        self.requests.append(request)
        prompt = next(m.content for m in reversed(request.messages) if m.role == "user")
        result = self.answer(prompt)
        if isinstance(result, HybridError):
            raise result
        if self.logprob is None or request.params.top_logprobs is None:
            return _Answer(result)
        value = self.logprob(prompt)
        words = tuple(TokenLogprob(w, value, tuple(w.encode())) for w in result.split())
        return _Answer(result, words)


WRONG_ANSWER = "I do not know."
"""An answer no grader accepts: no number, no word, no option letter."""


def right_answer(item: CalibrationItem, presentation: int) -> str:
    """An answer the grader accepts for one presentation of ``item``."""
    return example_answer(item, presentation)


class KnowingBackend(Backend):
    """A local model that answers right exactly the items ``knows`` picks, and wrong the rest.

    Args:
        items: The calibration set it will be asked.
        knows: Whether it gets an item right.
    """

    def __init__(
        self, items: Sequence[CalibrationItem], knows: Callable[[CalibrationItem], bool]
    ) -> None:
        self._answers: dict[tuple[Message, ...], str] = {}
        for item in items:
            for index, messages in enumerate(item.presentations):
                key = tuple(messages)
                self._answers[key] = right_answer(item, index) if knows(item) else WRONG_ANSWER

    async def start(self, request: GenerationRequest) -> Generation:
        return _Answer(self._answers.get(tuple(request.messages), WRONG_ANSWER))
