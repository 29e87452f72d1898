"""A generation on the local model: the events the worker thread sends, read on the event loop.

:class:`LocalGeneration` reads what :meth:`hybrid.local.backend.LocalBackend.start`'s job puts
on its channel, ends with the worker's outcome (:class:`End`), and takes tool calls written in
the text out as tool-call deltas when the prompt offered tools.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import AsyncIterator, Collection
from concurrent.futures import Future

from hybrid.backend import Generation
from hybrid.errors import GenerationError, HybridError
from hybrid.generation import (
    GenerationDone,
    GenerationEvent,
    TextDelta,
    TokenLogprob,
    ToolCallDelta,
)
from hybrid.local.engine import EngineJob
from hybrid.local.tool_calls import ToolCallFilter


@dataclasses.dataclass(frozen=True)
class End:
    """Marks the end of a generation's events; carries the worker's outcome."""

    future: Future[None]


class LocalGeneration(Generation):
    """A generation queued for or running on the local model.

    Attributes:
        prompt_tokens: Tokens in the formatted prompt.
        max_tokens: Tokens it may generate at most.

    Args:
        tool_names: The tools the prompt offered; when there are any, the answer is read for
            tool calls, which end it with ``finish_reason`` ``tool_calls``.
        one_call: Pass on the first call only (the request's ``parallel_tool_calls`` is
            false): the model may still write several.
    """

    def __init__(
        self,
        channel: asyncio.Queue[GenerationEvent | End],
        cancel: threading.Event,
        future: Future[None],
        job: EngineJob,
        *,
        tool_names: Collection[str] = (),
        one_call: bool = False,
    ) -> None:
        self._channel = channel
        self._cancel = cancel
        self._future = future
        self._tool_names = tool_names
        self._one_call = one_call
        self._logprobs_stopped = job.logprobs_stopped
        self.prompt_tokens = len(job.tokens)
        self.max_tokens = job.max_tokens

    async def __aiter__(self) -> AsyncIterator[GenerationEvent]:
        events = self._events()
        if self._tool_names:
            events = _with_tool_calls(
                events, ToolCallFilter(self._tool_names), one_call=self._one_call
            )
        async for event in events:
            yield event

    async def _events(self) -> AsyncIterator[GenerationEvent]:
        while True:
            item = await self._channel.get()
            if isinstance(item, End):
                _raise_failure(item.future)
                return
            yield item

    def stop_logprobs(self) -> None:
        """Have the engine compute no log-probabilities for the tokens it samples from now on
        (the job's ``logprobs_stopped``); those already sampled keep theirs."""
        if self._logprobs_stopped is not None:
            self._logprobs_stopped.set()

    async def aclose(self) -> None:
        # Never awaits: it must work from a cancelled task (a client that disconnected).
        self._cancel.set()
        self._future.cancel()


async def _with_tool_calls(
    events: AsyncIterator[GenerationEvent], calls: ToolCallFilter, *, one_call: bool
) -> AsyncIterator[GenerationEvent]:
    """The events with the tool calls written in the text taken out as tool call deltas
    (the first only, with ``one_call``).

    Log-probabilities travel with the next text released (those of a call's text are kept
    too, on an empty delta, so that the answer's confidence still counts every token).
    """
    pending: list[TokenLogprob] = []
    async for event in events:
        if isinstance(event, TextDelta):
            pending.extend(event.logprobs)
            text = calls.feed(event.text)
            if text:
                yield TextDelta(text, tuple(pending))
                pending = []
            continue
        if not isinstance(event, GenerationDone):
            yield event
            continue
        parsed = calls.finish()
        if parsed.text or pending:
            yield TextDelta(parsed.text, tuple(pending))
        found = parsed.calls[:1] if one_call else parsed.calls
        for index, call in enumerate(found):
            yield ToolCallDelta(index, call.id, call.name, call.arguments)
        if found:
            event = dataclasses.replace(event, finish_reason="tool_calls")
        yield event


def _raise_failure(future: Future[None]) -> None:
    if future.cancelled():
        return
    error = future.exception()
    if error is None:
        return
    if isinstance(error, HybridError):
        raise error
    raise GenerationError(f"the local model failed: {error!r}") from error
