"""The contract every answering backend implements.

A backend turns a :class:`~hybrid.generation.GenerationRequest` into a stream of
:class:`~hybrid.generation.TextDelta`, :class:`~hybrid.generation.ToolCallDelta` and (from
Anthropic, when asked) :class:`~hybrid.generation.ThinkingDelta` events ending with one
:class:`~hybrid.generation.GenerationDone`.  Starting a generation is a separate, awaited step
so that admission errors (context too long, queue full) surface before any byte of a response
is sent, and can become a proper HTTP status.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass

from hybrid.errors import GenerationError, HybridError
from hybrid.generation import (
    GenerationDone,
    GenerationEvent,
    GenerationRequest,
    TextDelta,
    ThinkingBlock,
    ThinkingDelta,
    TokenLogprob,
    ToolCall,
    ToolCallDelta,
)


class Generation(ABC):
    """A started generation: an async iterator of events that can be closed early."""

    @abstractmethod
    def __aiter__(self) -> AsyncIterator[GenerationEvent]:
        """Iterate over the events; the last one is a :class:`GenerationDone`."""

    @abstractmethod
    async def aclose(self) -> None:
        """Stop generating (if still running) and release the backend promptly."""

    @property
    def finished(self) -> bool:
        """Whether every event is already here (a whole answer read), so reading them cannot
        wait on anything."""
        return False

    def stop_logprobs(self) -> None:
        """Tell the generation that the rest of it needs no log-probabilities (its reader only
        looked at those of its first tokens): a backend that computes them per token may stop.

        Tokens already generated keep theirs, and later text deltas may still carry some; a
        generation that cannot stop them ignores this (the default).  Safe to call at any time,
        more than once, and after the generation ended.
        """
        return  # nothing computed per token that could stop


def prompt_tokens_of(generation: Generation) -> int | None:
    """A generation's prompt tokens, when it knows them (a local one does)."""
    value = getattr(generation, "prompt_tokens", None)
    return value if isinstance(value, int) else None


class ReplayGeneration(Generation):
    """Events already read (a whole answer), handed out again as a generation."""

    def __init__(self, events: Sequence[GenerationEvent]) -> None:
        self._events = tuple(events)

    async def __aiter__(self) -> AsyncIterator[GenerationEvent]:
        for event in self._events:
            yield event

    async def aclose(self) -> None:
        """Nothing to release: whatever produced the events is done."""

    @property
    def finished(self) -> bool:
        """Always: the events were read before this was made."""
        return True


class ResumedGeneration(Generation):
    """A generation whose first events were read ahead, to look at them: those events, then
    the rest of the same iteration."""

    def __init__(
        self,
        inner: Generation,
        events: AsyncIterator[GenerationEvent],
        read: Sequence[GenerationEvent],
        *,
        logprobs: bool = True,
    ) -> None:
        """
        Args:
            inner: The generation, to close.
            events: Its iteration (``aiter(inner)``), left after ``read``.
            read: The events already read from ``events``.
            logprobs: Keep the text deltas' log-probabilities (False: asked only to look at
                them, and dropped before the reader gets them).
        """
        self._inner = inner
        self._events = events
        self._read = tuple(read)
        self._logprobs = logprobs
        self._iterated = False

    @property
    def prompt_tokens(self) -> int | None:
        """The inner generation's prompt tokens, when it knows them."""
        return prompt_tokens_of(self._inner)

    def stop_logprobs(self) -> None:
        """Passed on to the inner generation."""
        self._inner.stop_logprobs()

    async def __aiter__(self) -> AsyncIterator[GenerationEvent]:
        self._iterated = True
        try:
            for event in self._read:
                if (passed := self._passed(event)) is not None:
                    yield passed
            if not (self._read and isinstance(self._read[-1], GenerationDone)):
                async for event in self._events:
                    if (passed := self._passed(event)) is not None:
                        yield passed
        finally:
            await close_events(self._events)

    def _passed(self, event: GenerationEvent) -> GenerationEvent | None:
        """The event as the reader gets it; None: nothing left once its log-probabilities go."""
        if self._logprobs or not isinstance(event, TextDelta) or not event.logprobs:
            return event
        return TextDelta(event.text) if event.text else None

    @property
    def finished(self) -> bool:
        return bool(self._read) and isinstance(self._read[-1], GenerationDone)

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            if not self._iterated:
                # Never handed out: nothing else will close the iteration. Once handed out,
                # its reader's iteration closes it (it may be reading it right now).
                await close_events(self._events)


class ObservedGeneration(Generation):
    """Another generation's events, passed on unchanged, each seen on its way.

    Subclasses watch an answer without changing it (the ledger record, the learner's signal):
    :meth:`_observe` sees each event before the reader gets it, :meth:`_failed` a failure
    before it propagates, and :meth:`_closed` runs once the inner generation is closed.
    """

    def __init__(self, inner: Generation) -> None:
        self._inner = inner

    @property
    def prompt_tokens(self) -> int | None:
        """The inner generation's prompt tokens, when it knows them."""
        return prompt_tokens_of(self._inner)

    async def __aiter__(self) -> AsyncIterator[GenerationEvent]:
        events = aiter(self._inner)
        try:
            async for event in events:
                # Seen before it is handed on: a reader that stops at the closing event
                # (collect) never resumes this generator.
                await self._observe(event)
                yield event
        except HybridError as exc:
            await self._failed(exc)
            raise
        finally:
            await close_events(events)

    @property
    def finished(self) -> bool:
        return self._inner.finished

    def stop_logprobs(self) -> None:
        """Passed on to the inner generation."""
        self._inner.stop_logprobs()

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            self._closed()

    async def _observe(self, event: GenerationEvent) -> None:
        """See one event before the reader does."""

    async def _failed(self, error: HybridError) -> None:
        """See the failure that ends the events, before it propagates."""

    def _closed(self) -> None:
        """After the inner generation is closed; may run in a cancelled task, so it awaits
        nothing."""


@dataclass(frozen=True)
class Completion:
    """A whole, non-streamed answer.

    Attributes:
        text: The generated text.
        logprobs: Its tokens' log-probabilities, when asked for.
        done: How the generation ended.
        tool_calls: The tool calls the answer made, assembled from their deltas, in order.
        thinking: The thinking blocks the answer began with (Anthropic's extended thinking),
            assembled from their deltas, in order.
    """

    text: str
    logprobs: tuple[TokenLogprob, ...]
    done: GenerationDone
    tool_calls: tuple[ToolCall, ...] = ()
    thinking: tuple[ThinkingBlock, ...] = ()

    def events(self, *, logprobs: bool = True) -> tuple[GenerationEvent, ...]:
        """The answer as events again (one delta per thinking block, one text delta, one delta
        per call, the closing event).

        Args:
            logprobs: Keep the log-probabilities on the text delta.
        """
        events: list[GenerationEvent] = [
            ThinkingDelta(index, block.thinking, block.signature, block.redacted)
            for index, block in enumerate(self.thinking)
        ]
        if self.text or (logprobs and self.logprobs):
            events.append(TextDelta(self.text, self.logprobs if logprobs else ()))
        events.extend(
            ToolCallDelta(index, call.id, call.name, call.arguments)
            for index, call in enumerate(self.tool_calls)
        )
        events.append(self.done)
        return tuple(events)


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
        The text, its log-probabilities (when asked for), its tool calls, its thinking blocks
        and the closing event.

    Raises:
        GenerationError: The stream ended without a closing event.
        ProviderError: A cloud provider failed mid-answer.
    """
    parts: list[str] = []
    logprobs: list[TokenLogprob] = []
    deltas: list[ToolCallDelta] = []
    thoughts: list[ThinkingDelta] = []
    events = aiter(generation)
    try:
        async for event in events:
            if isinstance(event, TextDelta):
                parts.append(event.text)
                logprobs.extend(event.logprobs)
            elif isinstance(event, ToolCallDelta):
                deltas.append(event)
            elif isinstance(event, ThinkingDelta):
                thoughts.append(event)
            else:
                calls = assemble_tool_calls(deltas)
                thinking = assemble_thinking(thoughts)
                return Completion("".join(parts), tuple(logprobs), event, calls, thinking)
    finally:
        await close_events(events)
        await generation.aclose()
    raise GenerationError("the generation ended without a closing event")


async def close_events(events: AsyncIterator[GenerationEvent]) -> None:
    """Close an event iterator left before its end (an async generator, usually).

    Left to the garbage collector, an unfinished async generator is closed through the event
    loop's finalizer hook: a wake-up of the loop and a task, per request.
    """
    aclose = getattr(events, "aclose", None)
    if aclose is not None:
        await aclose()


def assemble_tool_calls(deltas: Iterable[ToolCallDelta]) -> tuple[ToolCall, ...]:
    """Whole tool calls from their deltas: ids and names from the first, arguments joined.

    A call whose arguments are empty gets ``{}``: every API reads arguments as a JSON object,
    and a function without parameters is called with an empty one.

    Args:
        deltas: The deltas of one answer, in the order they arrived.

    Returns:
        The calls ordered by index.
    """
    ids: dict[int, str] = {}
    names: dict[int, str] = {}
    arguments: dict[int, list[str]] = {}
    for delta in deltas:
        if delta.id is not None:
            ids.setdefault(delta.index, delta.id)
        if delta.name is not None:
            names.setdefault(delta.index, delta.name)
        arguments.setdefault(delta.index, []).append(delta.arguments)
    return tuple(
        ToolCall(ids.get(index, ""), names.get(index, ""), "".join(arguments[index]) or "{}")
        for index in sorted(arguments)
    )


def assemble_thinking(deltas: Iterable[ThinkingDelta]) -> tuple[ThinkingBlock, ...]:
    """Whole thinking blocks from their deltas: text and signature pieces joined.

    Args:
        deltas: The thinking deltas of one answer, in the order they arrived.

    Returns:
        The blocks ordered by index; a block with redacted data is a redacted block.
    """
    texts: dict[int, list[str]] = {}
    signatures: dict[int, list[str]] = {}
    redacted: dict[int, str] = {}
    for delta in deltas:
        texts.setdefault(delta.index, []).append(delta.thinking)
        signatures.setdefault(delta.index, []).append(delta.signature)
        if delta.redacted is not None:
            redacted.setdefault(delta.index, delta.redacted)
    return tuple(
        ThinkingBlock("".join(texts[index]), "".join(signatures[index]), redacted.get(index))
        for index in sorted(texts)
    )
