"""Accounting for every answered request: one durable ledger record, live events and metrics.

Every answer starts through :func:`hybrid.service.answering.start_answer`, which opens a
:class:`~hybrid.service.recorded.Ticket` and wraps the answer's generation in a
:class:`~hybrid.service.recorded.RecordedGeneration`.  The wrapper watches the events as they
pass (first token, text, usage) and writes the record:

- when the closing event arrives, *before* handing it on, so the record is committed before the
  response's last bytes leave (a SIGKILL after a completed response cannot lose its record;
  the commit waits on the writer thread, never on the event loop);
- when the backend fails mid-answer (status ``error``; the route then sends its error event);
- when the client goes away first (status ``cancelled``): what was generated counts, from the
  local tokenizer when the provider never reported usage.

Counts the accountant makes itself are estimates (``tokens_estimated``), and cheap
(:mod:`hybrid.service.records` makes and prices the records).  A failed request's prompt is
counted on a worker thread; an answer cut short is counted where it ends (possibly a cancelled
task, which cannot await).

A request that fails before any answer starts gets a record too.  One turned away before any
model ran (an invalid request, an unknown model, a full queue, a model still loading, private
data with nowhere to go, a spend cap) is ``refused``, with route ``none``: it is neither a
local nor a cloud answer, and has no tokens or costs.  One whose cloud targets all failed is a
cloud ``error``; one the local model failed to start is a local ``error``, and so is one whose
local answer failed while the cascade read it, with what it generated until then counted and
priced (as for a client that left then, below).  When the cascade
discarded a local answer before its escalation failed, that answer is recorded too, as the
``cascade_local`` leg beside the failure, as it is beside an escalation that answers.  When
the local model answered instead of the failed escalation with the discarded answer itself,
as it was read (:attr:`~hybrid.routing.answer.DiscardedLeg.replayed`), that one generation is
one ordinary local record (no leg), whose reasons say why the cloud did not answer, then the
cascade's verdict (``cloud_unavailable:openai:unavailable``, ``cascade:declined``).

A request cancelled while its answer started (its client left a whole answer then: a cascade
reading the local answer, a cloud call) is recorded as ``cancelled`` on the route its plan took,
with its prompt and what the local model generated while the cascade read its answer, if it
was reading one (:meth:`Accountant.abandoned`).

A cloud answer's budget reservation (made before it was sent, :mod:`hybrid.routing.reserving`)
is settled with the record's ``cloud_cost_usd`` when the record is written, whichever way the
answer ended; a cloud cost without a reservation is simply added to the spend.

A LAN answer (route ``lan``, one of a team's servers) is priced as
:meth:`~hybrid.ledger.costing.Costing.for_lan` says, with the server's name as its provider; it
is never cloud spend, so the budget never counts it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any, Literal

from hybrid.errors import (
    BudgetExceededError,
    ContextLengthExceededError,
    HybridError,
    InvalidRequestError,
    ModelNotFoundError,
    ModelNotReadyError,
    NoRouteError,
    PrivateDataError,
    ProviderError,
    QueueFullError,
)
from hybrid.generation import GenerationRequest
from hybrid.ledger.budget import BudgetGate, Reservation
from hybrid.ledger.costing import NOTHING, Costing
from hybrid.ledger.record import Decided, LedgerRecord
from hybrid.ledger.writer import LedgerWriter
from hybrid.routing.answer import (
    Answer,
    DiscardedLeg,
    PartialAnswer,
    RoutePlan,
    discarded_before,
    partial_before,
)
from hybrid.routing.policy import Verdict
from hybrid.service.events import EventBus
from hybrid.service.metrics import Metrics
from hybrid.service.recorded import Api, RecordedGeneration, Seen, Ticket
from hybrid.service.records import RecordMaker, prompt_text, replaced, verdict_records
from hybrid.wire.errors import wire_error

log = logging.getLogger("hybrid.ledger")

# What turns a request away before any model runs: it is recorded as refused.
_REFUSALS = (
    InvalidRequestError,
    ContextLengthExceededError,
    ModelNotFoundError,
    QueueFullError,
    ModelNotReadyError,
    PrivateDataError,
    BudgetExceededError,
)


class Accountant:
    """Writes the ledger record of each request, and tells the event stream and the metrics.

    Args:
        writer: The ledger's writer (started by :meth:`~hybrid.service.service.Service.start`).
        costing: Prices a record.
        budget: Cloud spend against the caps; each cloud record settles its reservation there,
            or adds its cost.
        bus: The live event stream.
        metrics: The Prometheus metrics.
        count_tokens: Tokens in a text by the local tokenizer (an estimate when the local
            model is not loaded), for answers whose usage the provider never reported; only
            called with texts of up to :data:`~hybrid.service.records.COUNTED_CHARS`
            characters.
        gpu_energy: Joules the GPUs have used so far (NVML's counter), None without one; a
            local answer's GPU energy is the difference across it.
        gpu_offloaded: Whether the local model runs (partly) on a GPU: without an energy
            counter, its GPU time is then priced at ``energy.gpu_watts``.
        clock: Unix time.
        perf: A monotonic clock in seconds.
        cpu: Process CPU seconds.
    """

    def __init__(
        self,
        writer: LedgerWriter,
        costing: Costing,
        budget: BudgetGate,
        bus: EventBus,
        metrics: Metrics,
        count_tokens: Callable[[str], int],
        *,
        gpu_energy: Callable[[], float | None] = lambda: None,
        gpu_offloaded: Callable[[], bool] = lambda: False,
        clock: Callable[[], float] = time.time,
        perf: Callable[[], float] = time.perf_counter,
        cpu: Callable[[], float] = time.process_time,
    ) -> None:
        self._writer = writer
        #: Cloud spend against the caps (replaced by ``Service.start`` once the ledger is read).
        self.budget: BudgetGate = budget
        self._bus = bus
        self._metrics = metrics
        self._clock = clock
        self._perf = perf
        self._cpu = cpu
        self._records = RecordMaker(
            costing,
            count_tokens,
            instance=writer.instance,
            gpu_energy=gpu_energy,
            gpu_offloaded=gpu_offloaded,
            perf=perf,
            cpu=cpu,
        )

    @property
    def costing(self) -> Costing:
        """Prices records (shadow calls are priced with it too)."""
        return self._records.costing

    def elapsed(self, ticket: Ticket) -> float:
        """Seconds since the request arrived."""
        return self._records.elapsed(ticket)

    @property
    def records(self) -> RecordMaker:
        """Makes and prices records (a local shadow answer's energy is metered with its
        readers and priced with it)."""
        return self._records

    def open(
        self, request_id: str, api: Api, model_requested: str | None, *, stream: bool
    ) -> Ticket:
        """Start accounting for a request and announce it (``request_started``)."""
        ticket = Ticket(request_id, api, model_requested, self._clock(), self._perf(), self._cpu())
        if self._bus.followers:  # nobody watching: no event to build
            self._bus.publish(
                "request_started",
                {
                    "id": request_id,
                    "time": ticket.time,
                    "api": api,
                    "model_requested": model_requested,
                    "stream": stream,
                },
            )
        self._metrics.started()
        return ticket

    async def watch(self, ticket: Ticket, answer: Answer, request: GenerationRequest) -> Answer:
        """The answer with its generation recorded as it is read.

        A cascade's discarded local answer is recorded now, as its own leg
        (``cascade_local``); the answer that replaced it is the ``cascade_cloud`` leg.  A
        discarded answer given after all, when its escalation failed, is the answer's own
        record only.
        """
        leg = replaced(answer)
        if leg is not None:
            self._discarded(ticket, leg, answer.verdicts, answer.score, answer.decided)
        if answer.route == "local":
            self._records.local_started(ticket)
        recorded = RecordedGeneration(self, ticket, answer, request)
        return dataclasses.replace(answer, generation=recorded)

    async def failed(
        self,
        ticket: Ticket,
        request: GenerationRequest,
        error: HybridError,
        plan: RoutePlan | None = None,
    ) -> None:
        """Record a request that failed before any answer started (see the module docstring).

        When the cascade discarded a local answer before the escalation failed
        (:func:`~hybrid.routing.answer.discarded_before`), that answer is recorded as the
        ``cascade_local`` leg, as when the escalation answers, and the failure as the
        ``cascade_cloud`` leg.  When the local model failed while the cascade read its answer
        (:func:`~hybrid.routing.answer.partial_before`), the tokens it generated until then
        count, and are priced, as in :meth:`abandoned`.

        Args:
            ticket: The request's ticket.
            request: The request.
            error: Why it failed.
            plan: Its route, when one was planned (the discarded leg's verdicts).
        """
        ticket.recorded = True
        leg = discarded_before(error)
        if leg is not None:
            if plan is None:
                self._discarded(ticket, leg, (), None, None)
            else:
                decision = plan.decision
                self._discarded(ticket, leg, decision.verdicts, decision.score, plan.decided)
        route: Literal["local", "cloud", "none"] = "local"
        status: Literal["error", "refused"] = "error"
        model, provider, costs = "none", "none", NOTHING
        prompt_tokens = completion_tokens = 0
        partial = partial_before(error)
        if isinstance(error, _REFUSALS):
            # No model read the prompt: not even tokenized, so a storm of 429s stays cheap.
            route, status = "none", "refused"
        elif partial is not None and plan is not None:
            # The local model failed while the cascade read its answer: what it generated
            # until then counts, as when the client leaves during the read.
            model, provider = plan.local_model, "local"
            counterfactual = plan.target.qualified if plan.target is not None else None
            prompt_tokens, completion_tokens = await asyncio.to_thread(
                self._read_tokens, request, partial
            )
            costs = self._records.costs(
                ticket, "local", model, counterfactual, prompt_tokens, completion_tokens
            )
        else:
            # Cloud failures (every target failed, a rejected request) are the cloud's.
            if isinstance(error, NoRouteError | ProviderError):
                route = "cloud"
            # Off the loop: even a short text takes the tokenizer a few milliseconds.
            prompt_tokens = await asyncio.to_thread(self.count_tokens, prompt_text(request))
        record = self._records.record(
            ticket,
            route=route,
            # The codes the error carries on the wire: the ledger and X-Hybrid-Reason agree.
            reasons=wire_error(error).reasons,
            verdicts=(),
            score=None,
            model=model,
            provider=provider,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            tokens_estimated=status == "error",
            ttft_s=None,
            status=status,
            error=str(error),
            costs=costs,
            leg="cascade_cloud" if leg is not None else None,
            decided=None,
        )
        await self.commit(record)

    def abandoned(
        self,
        ticket: Ticket,
        request: GenerationRequest,
        error: BaseException,
        plan: RoutePlan | None,
        *,
        local_model: str,
    ) -> None:
        """Record a request cancelled while its answer started: its client left (a whole
        answer's start races the client's disconnect), or the server shut down.

        It is recorded as an answer cancelled before its first token (status ``cancelled``,
        its prompt counted, nothing sent) on the route its plan took: the cloud target
        for a request decided for the cloud or escalated by the cascade (whose discarded local
        answer is recorded too, as in :meth:`failed`), a LAN server for ``X-Hybrid-Route:
        lan``, the local model otherwise.  A local answer the cascade was reading
        (:func:`~hybrid.routing.answer.partial_before`) counts what it generated until then.
        Callable from a cancelled task.

        Args:
            ticket: The request's ticket.
            request: The request.
            error: The cancellation.
            plan: Its route, or None when it was cancelled before one was planned (while a
                named local model loaded): the local model's, then.
            local_model: The local model's id.
        """
        if ticket.recorded:
            return
        ticket.recorded = True
        leg = discarded_before(error)
        route: Literal["local", "lan", "cloud"] = "local"
        model, score, decided = local_model, None, None
        reasons: tuple[str, ...] = ("local",)
        verdicts: tuple[Verdict, ...] = ()
        counterfactual: str | None = None
        if plan is not None:
            decision = plan.decision
            model, reasons, verdicts = plan.local_model, decision.reasons[:1], decision.verdicts
            score, decided = decision.score, plan.decided
            if plan.target is not None:
                counterfactual = plan.target.qualified
            if plan.mode == "lan":
                route, model = "lan", "lan"
            elif counterfactual is not None and (
                leg is not None or (decision.target == "cloud" and not decision.pinned)
            ):
                route, model = "cloud", counterfactual
        if leg is not None:
            self._discarded(ticket, leg, verdicts, score, decided)
            reasons = (leg.reason,)
        partial = partial_before(error)
        if partial is not None:  # the cascade was reading the local answer: it was generated
            prompt_tokens, completion_tokens = self._read_tokens(request, partial)
        else:
            prompt_tokens, _, _ = self._records.tokens(request, Seen())
            completion_tokens = 0
        costs = self._records.costs(
            ticket, route, model, counterfactual, prompt_tokens, completion_tokens
        )
        record = self._records.record(
            ticket,
            route=route,
            reasons=reasons,
            verdicts=verdict_records(verdicts),
            score=score,
            model=model,
            provider="local" if route == "local" else model.split("/", 1)[0],
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            tokens_estimated=True,
            ttft_s=None,
            status="cancelled",
            error=None,
            costs=costs,
            leg="cascade_cloud" if leg is not None else None,
            decided=decided,
        )
        self.commit_nowait(record)

    # -- building and writing records ---------------------------------------------------------

    def _read_tokens(self, request: GenerationRequest, partial: PartialAnswer) -> tuple[int, int]:
        """The prompt and completion tokens of a local answer the cascade was reading when its
        request ended (its client left, or the local model failed): what it generated until
        then, its prompt counted here when the generation did not know it."""
        seen = Seen(prompt_tokens=partial.prompt_tokens)
        prompt_tokens, _, _ = self._records.tokens(request, seen)
        return prompt_tokens, partial.completion_tokens

    def finish(
        self,
        ticket: Ticket,
        answer: Answer,
        request: GenerationRequest,
        seen: Seen,
        *,
        status: Literal["ok", "error", "cancelled"],
        error: str | None = None,
    ) -> LedgerRecord:
        """Build the record of an answer that ended (how is ``status``)."""
        return self._records.answered(ticket, answer, request, seen, status=status, error=error)

    def count_tokens(self, text: str) -> int:
        """Tokens in a text (see :meth:`~hybrid.service.records.RecordMaker.count_tokens`)."""
        return self._records.count_tokens(text)

    def _discarded(
        self,
        ticket: Ticket,
        leg: DiscardedLeg,
        verdicts: tuple[Verdict, ...],
        score: float | None,
        decided: Decided | None,
    ) -> None:
        """Record a cascade's discarded local answer, as its own leg (``cascade_local``)."""
        self.commit_nowait(self._records.discarded(ticket, leg, verdicts, score, decided))

    async def commit(self, record: LedgerRecord, reservation: Reservation | None = None) -> None:
        """Make a record durable (see :class:`LedgerWriter`), settle the budget reservation of
        the call it records, and announce it.

        Args:
            record: The record.
            reservation: The reservation made before the call was sent, if any: settled with
                the record's cloud cost.
        """
        self.commit_nowait(record, reservation)

    def commit_nowait(self, record: LedgerRecord, reservation: Reservation | None = None) -> None:
        """As :meth:`commit`, callable from a cancelled task, which cannot await."""
        data = record.to_dict()
        try:
            self._writer.write_nowait(record, data)
        except HybridError as exc:
            # The answer is worth more than its record: log, and let the response finish.
            log.error("the ledger could not record request %s: %s", record.id, exc)
        self._announce(record, data, reservation)

    def _announce(
        self, record: LedgerRecord, data: dict[str, Any], reservation: Reservation | None
    ) -> None:
        budget = self.budget
        before = budget.state()
        cost = record.cloud_cost_usd if record.route == "cloud" else None
        if reservation is not None:
            budget.settle(reservation, cost)
        elif cost:
            budget.add(record.provider, cost, record.time)
        self._metrics.observe(record)
        self._bus.publish("request_finished", data)
        if record.cloud_cost_usd or reservation is not None or budget.state() != before:
            self._bus.publish("budget", budget.to_dict())
            self._metrics.budget(budget)
