"""A request's record in the making: its ticket, and the generation that writes it as it ends.

:meth:`~hybrid.service.accounting.Accountant.watch` wraps every started answer's generation in
a :class:`RecordedGeneration`, which notes what passes (first token, text, usage) and has the
accountant write the request's ledger record once, whichever way the answer ends (see
:mod:`hybrid.service.accounting`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from hybrid.backend import ObservedGeneration
from hybrid.errors import HybridError
from hybrid.generation import (
    GenerationDone,
    GenerationEvent,
    GenerationRequest,
    TextDelta,
    ThinkingDelta,
    ToolCallDelta,
)
from hybrid.routing.reserving import reservation_of

if TYPE_CHECKING:
    from hybrid.routing.answer import Answer
    from hybrid.service.accounting import Accountant

Api = Literal["openai", "anthropic"]
"""The API a client speaks."""


@dataclass
class Ticket:
    """A request being accounted for, from the moment its route took it.

    Attributes:
        id: hybrid's request id.
        api: The client's API.
        model_requested: The model name the client sent.
        time: Unix time the request arrived.
        started: ``perf_counter`` at arrival, for latencies.
        cpu_started: Process CPU seconds at arrival, for the local energy cost.
        recorded: Set once the record is written (never twice).
        gpu_joules_started: The GPUs' energy counter when a local answer started, if any.
    """

    id: str
    api: Api
    model_requested: str | None
    time: float
    started: float
    cpu_started: float
    recorded: bool = field(default=False)
    gpu_joules_started: float | None = None


@dataclass
class Seen:
    """What a recorded generation has seen pass so far."""

    text: list[str] = field(default_factory=list)
    ttft_s: float | None = None
    done: GenerationDone | None = None
    prompt_tokens: int | None = None


class RecordedGeneration(ObservedGeneration):
    """A generation whose ledger record is written as it ends (see the module docstring)."""

    def __init__(
        self, accountant: Accountant, ticket: Ticket, answer: Answer, request: GenerationRequest
    ) -> None:
        super().__init__(answer.generation)
        self._accountant = accountant
        self._ticket = ticket
        self._answer = answer
        self._request = request
        self._seen = Seen(prompt_tokens=self.prompt_tokens)
        # A cloud answer's budget reservation, settled by its record.
        self._reservation = reservation_of(answer.generation)

    async def _observe(self, event: GenerationEvent) -> None:
        seen = self._seen
        if isinstance(event, TextDelta | ToolCallDelta | ThinkingDelta):
            if seen.ttft_s is None:
                seen.ttft_s = self._accountant.elapsed(self._ticket)
            if isinstance(event, ThinkingDelta):
                seen.text.append(event.thinking)  # output tokens too, as Anthropic counts them
            else:
                seen.text.append(event.text if isinstance(event, TextDelta) else event.arguments)
        elif isinstance(event, GenerationDone):
            seen.done = event
            await self._settle("cancelled" if event.cancelled else "ok")

    async def _failed(self, error: HybridError) -> None:
        await self._settle("error", str(error))

    def _closed(self) -> None:
        if not self._ticket.recorded:
            # The client left before the end; this may run in a cancelled task.
            self._ticket.recorded = True
            record = self._accountant.finish(
                self._ticket, self._answer, self._request, self._seen, status="cancelled"
            )
            self._accountant.commit_nowait(record, self._reservation)

    async def _settle(
        self, status: Literal["ok", "error", "cancelled"], error: str | None = None
    ) -> None:
        if self._ticket.recorded:
            return
        self._ticket.recorded = True
        record = self._accountant.finish(
            self._ticket, self._answer, self._request, self._seen, status=status, error=error
        )
        await self._accountant.commit(record, self._reservation)
