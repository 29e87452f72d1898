"""The contract every answering backend implements.

A backend turns a :class:`~hybrid.generation.GenerationRequest` into a stream of
:class:`~hybrid.generation.TextDelta` events ending with one
:class:`~hybrid.generation.GenerationDone`.  Starting a generation is a separate, awaited step
so that admission errors (context too long, queue full) surface before any byte of a response is
sent, and can become a proper HTTP status.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from hybrid.errors import GenerationError
from hybrid.generation import (
    GenerationDone,
    GenerationEvent,
    GenerationRequest,
    TextDelta,
    TokenLogprob,
)


class Generation(ABC):
    """A started generation: an async iterator of events that can be closed early."""

    @abstractmethod
    def __aiter__(self) -> AsyncIterator[GenerationEvent]:
        """Iterate over the events; the last one is a :class:`GenerationDone`."""

    @abstractmethod
    async def aclose(self) -> None:
        """Stop generating (if still running) and release the backend promptly."""


class ReplayGeneration(Generation):
    """Events already read (a whole answer), handed out again as a generation."""

    def __init__(self, events: Sequence[GenerationEvent]) -> None:
        self._events = tuple(events)

    async def __aiter__(self) -> AsyncIterator[GenerationEvent]:
        for event in self._events:
            yield event

    async def aclose(self) -> None:
        """Nothing to release: whatever produced the events is done."""


@dataclass(frozen=True)
class Completion:
    """A whole, non-streamed answer."""

    text: str
    logprobs: tuple[TokenLogprob, ...]
    done: GenerationDone


class Backend(ABC):
    """Something that answers generation requests: the local model or a cloud provider."""

    @abstractmethod
    async def start(self, request: GenerationRequest) -> Generation:
        """Admit a request and start generating.

        Args:
            request: What to generate.

        Returns:
            The running generation; iterate it to receive the output.

        Raises:
            ModelNotReadyError: The local model is not loaded.
            ContextLengthExceededError: The prompt and requested output do not fit.
            QueueFullError: Too many requests are already waiting for the local model.
            InvalidRequestError: The request asks for something this backend cannot do.
            ProviderError: A cloud provider failed before its first byte (after retries).

        Once iteration has begun, a failure raises from the iterator: GenerationError locally,
        ProviderError from a cloud provider.
        """

    async def complete(self, request: GenerationRequest) -> Completion:
        """Generate a whole answer.

        Args:
            request: What to generate.

        Returns:
            The text, its log-probabilities (when asked for) and the closing event.

        Raises:
            The errors of :meth:`start`, and GenerationError when the stream ends without a
            closing event.
        """
        return await collect(await self.start(request))


async def collect(generation: Generation) -> Completion:
    """Read a started generation to its end and close it.

    Args:
        generation: A generation returned by :meth:`Backend.start`.

    Returns:
        The text, its log-probabilities (when asked for) and the closing event.

    Raises:
        GenerationError: The stream ended without a closing event.
        ProviderError: A cloud provider failed mid-answer.
    """
    parts: list[str] = []
    logprobs: list[TokenLogprob] = []
    try:
        async for event in generation:
            if isinstance(event, TextDelta):
                parts.append(event.text)
                logprobs.extend(event.logprobs)
            else:
                return Completion("".join(parts), tuple(logprobs), event)
    finally:
        await generation.aclose()
    raise GenerationError("the generation ended without a closing event")
