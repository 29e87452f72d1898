"""Reserving a cloud call's estimated cost before it is sent, and holding it while it runs.

Every cloud call hybrid makes (an answer, each failover target, a shadow call, a judge call)
first reserves its estimated cost with the budget (:class:`~hybrid.ledger.budget.BudgetGate`):
its prompt tokens at the model's input price plus its ``max_tokens`` (else the provider's
default) at the output price (:meth:`~hybrid.ledger.costing.Costing.estimate`).  The prompt's
tokens are the local model's count when the router already made one, else the local
tokenizer's (an estimate from the text's size for a long text or while no model is loaded).
A call whose estimate does not fit under a cap is not sent: it gets the cap's reason code
(``budget:daily_cap``).

A model without a price is reserved at 0: its calls are let through while spent plus reserved
is under every cap, and, as they have no cost, they never count toward one (a warning says so,
once per model; a ``[[pricing.overrides]]`` row gives it a price).

A started answer holds its reservation in a :class:`ReservedGeneration`; the accountant settles
it with the real cost when the answer's ledger record is written, however the answer ends.
Closing the generation releases whatever was not settled, so a reservation never outlives its
answer.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping

from hybrid.backend import Generation, ObservedGeneration
from hybrid.generation import GenerationRequest
from hybrid.ledger.budget import BudgetGate, Reservation
from hybrid.ledger.costing import ESTIMATED_MAX_OUTPUT_TOKENS
from hybrid.routing.names import CloudTarget

log = logging.getLogger("hybrid.routing")


class Reserving:
    """Estimates cloud calls and reserves their cost with the budget.

    Args:
        gate: The budget in use (read on every call: the service replaces its budget once the
            ledger is read).
        estimate: A model's estimated cost, ``(provider/model, prompt tokens, max output
            tokens) -> USD``, None when unpriced (:meth:`Costing.estimate`).
        count_tokens: Tokens in a text by the local tokenizer, or an estimate from its size.
        max_output_tokens: Output tokens a request without ``max_tokens`` is estimated at, by
            provider (a provider that sends a default: Anthropic's ``cloud.anthropic.max_tokens``);
            others get :data:`~hybrid.ledger.costing.ESTIMATED_MAX_OUTPUT_TOKENS`.
    """

    def __init__(
        self,
        gate: Callable[[], BudgetGate],
        estimate: Callable[[str, int, int], float | None],
        count_tokens: Callable[[str], int],
        max_output_tokens: Mapping[str, int] | None = None,
    ) -> None:
        self._gate = gate
        self._estimate = estimate
        self._count_tokens = count_tokens
        self._max_output = dict(max_output_tokens or {})
        self._unpriced: set[str] = set()

    def capped(self, provider: str) -> str | None:
        """Why a provider may not be called now, without reserving (a quick first check)."""
        return self._gate().capped(provider)

    def prompt_tokens(self, request: GenerationRequest) -> int:
        """The request's prompt tokens: its text counted by :attr:`count_tokens`."""
        return self._count_tokens(prompt_text(request))

    def estimate(
        self, request: GenerationRequest, target: CloudTarget, prompt_tokens: int | None = None
    ) -> float:
        """A cloud call's estimated cost in USD (0 for a model without a price).

        Args:
            request: The request.
            target: Where it goes.
            prompt_tokens: Its prompt's tokens when already counted; counted here otherwise.

        Returns:
            The estimate.
        """
        if prompt_tokens is None:
            prompt_tokens = self.prompt_tokens(request)
        output = request.params.max_tokens
        if output is None:
            output = self._max_output.get(target.provider, ESTIMATED_MAX_OUTPUT_TOKENS)
        usd = self._estimate(target.qualified, prompt_tokens, output)
        if usd is None:
            if target.qualified not in self._unpriced:
                self._unpriced.add(target.qualified)
                log.warning(
                    "%s has no price: its calls are reserved at 0 and never count toward a "
                    "spend cap (add a [[pricing.overrides]] row for it)",
                    target.qualified,
                )
            return 0.0
        return usd

    async def reserve(
        self, request: GenerationRequest, target: CloudTarget, prompt_tokens: int | None = None
    ) -> Reservation | str:
        """Reserve a cloud call's estimated cost.

        Args:
            request: The request.
            target: Where it goes.
            prompt_tokens: Its prompt's tokens when already counted.

        Returns:
            The reservation (release or settle it), or the reason code of the cap it does not
            fit under.
        """
        estimate = self.estimate(request, target, prompt_tokens)
        return await self._gate().reserve(target.provider, target.qualified, estimate)

    def release(self, reservation: Reservation) -> None:
        """Free a reservation whose call failed before an answer (or ended unsettled)."""
        self._gate().release(reservation)

    def hold(self, generation: Generation, reservation: Reservation) -> ReservedGeneration:
        """A started answer that holds its reservation until it is settled or closed."""
        return ReservedGeneration(generation, reservation, self.release)


class ReservedGeneration(ObservedGeneration):
    """A cloud answer holding its budget reservation.

    The accountant settles :attr:`reservation` with the answer's real cost when it writes the
    answer's record; closing the generation releases it, which frees nothing once settled.
    """

    def __init__(
        self,
        inner: Generation,
        reservation: Reservation,
        release: Callable[[Reservation], None],
    ) -> None:
        super().__init__(inner)
        self._reservation = reservation
        self._release = release

    @property
    def reservation(self) -> Reservation:
        """The money set aside for this answer."""
        return self._reservation

    def _closed(self) -> None:
        self._release(self._reservation)


def reservation_of(generation: Generation) -> Reservation | None:
    """The reservation a started answer holds, None for one that holds none (local, LAN)."""
    return generation.reservation if isinstance(generation, ReservedGeneration) else None


def prompt_text(request: GenerationRequest) -> str:
    """What a cloud model reads of a request, as text: the prompt, or the messages with their
    tool calls' arguments, and the tools' names, descriptions and schemas."""
    if request.prompt is not None:
        return request.prompt
    pieces: list[str] = []
    for message in request.messages:
        pieces.append(message.content)
        pieces.extend(call.arguments for call in message.tool_calls)
    for tool in request.tools:
        pieces.append(tool.name)
        if tool.description:
            pieces.append(tool.description)
        if tool.parameters is not None:
            pieces.append(json.dumps(tool.parameters))
    return "\n".join(pieces)
