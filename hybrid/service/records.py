"""Making a request's ledger record: its tokens counted, its costs priced, its fields filled.

:class:`~hybrid.service.accounting.Accountant` decides which records a request gets (see
:mod:`hybrid.service.accounting`); :class:`RecordMaker` makes them:

- tokens are the usage the backend reported; without it (a stream cut short, a provider that
  does not report usage in streams) they are counted, and marked ``tokens_estimated``.  Only
  texts of up to :data:`COUNTED_CHARS` characters are tokenized, a few milliseconds of work; a
  longer text is estimated from its size, one token per four bytes, so that a multi-MB prompt
  that failed costs no tokenizer time to be recorded;
- a local answer costs the process CPU time since the request arrived, plus the GPUs' energy
  across the answer (or their time at ``energy.gpu_watts`` without an energy counter), and
  avoids what its cloud model would have charged; a LAN answer is priced as
  :meth:`~hybrid.ledger.costing.Costing.for_lan` says; a cloud answer costs its tokens;
- a cascade's discarded local answer costs its energy and avoids nothing, and so does a local
  shadow answer (:meth:`RecordMaker.unanswered_local`), metered across it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

from hybrid.generation import GenerationRequest
from hybrid.ledger.costing import Costing, Costs
from hybrid.ledger.record import Decided, LedgerRecord, Route, VerdictRecord
from hybrid.routing.answer import Answer, DiscardedLeg
from hybrid.routing.policy import Verdict
from hybrid.service.recorded import Seen, Ticket

# Longest text the accountant tokenizes; longer ones are estimated from their size.  The
# embedded model's tokenizer reads about a byte per microsecond: at most ~4 ms here.
COUNTED_CHARS = 4096
# The size estimate: bytes per token of English text in common tokenizers.
_BYTES_PER_TOKEN = 4


class RecordMaker:
    """Makes the ledger records of requests (see the module docstring).

    Args:
        costing: Prices a record.
        count_tokens: Tokens in a text by the local tokenizer (an estimate when the local
            model is not loaded); only called with texts of up to :data:`COUNTED_CHARS`
            characters.
        instance: ``ledger.instance``, stamped on every record.
        gpu_energy: Joules the GPUs have used so far (NVML's counter), None without one.
        gpu_offloaded: Whether the local model runs (partly) on a GPU.
        perf: A monotonic clock in seconds.
        cpu: Process CPU seconds.
    """

    def __init__(
        self,
        costing: Costing,
        count_tokens: Callable[[str], int],
        *,
        instance: str = "",
        gpu_energy: Callable[[], float | None] = lambda: None,
        gpu_offloaded: Callable[[], bool] = lambda: False,
        perf: Callable[[], float] = time.perf_counter,
        cpu: Callable[[], float] = time.process_time,
    ) -> None:
        self._costing = costing
        self._count_tokens = count_tokens
        self._instance = instance
        self._gpu_energy = gpu_energy
        self._gpu_offloaded = gpu_offloaded
        self._perf = perf
        self._cpu = cpu

    @property
    def costing(self) -> Costing:
        """Prices records."""
        return self._costing

    def elapsed(self, ticket: Ticket) -> float:
        """Seconds since the request arrived."""
        return max(self._perf() - ticket.started, 0.0)

    def local_started(self, ticket: Ticket) -> None:
        """Note the GPUs' energy counter as a local answer starts (its energy is the
        difference across it)."""
        ticket.gpu_joules_started = self._gpu_energy()

    def answered(
        self,
        ticket: Ticket,
        answer: Answer,
        request: GenerationRequest,
        seen: Seen,
        *,
        status: Literal["ok", "error", "cancelled"],
        error: str | None = None,
    ) -> LedgerRecord:
        """The record of an answer that ended (how is ``status``); the ``cascade_cloud`` leg
        when it replaced a local answer the cascade discarded."""
        prompt_tokens, completion_tokens, estimated = self.tokens(request, seen)
        usage = seen.done.usage if seen.done is not None and not estimated else None
        cache_read_tokens = usage.cache_read_tokens if usage is not None else 0
        cache_write_tokens = usage.cache_write_tokens if usage is not None else 0
        # A cloud answer's provider, or a LAN answer's server: the part before the slash.
        provider = "local" if answer.route == "local" else answer.model.split("/", 1)[0]
        costs = self.costs(
            ticket,
            answer.route,
            answer.model,
            answer.counterfactual,
            prompt_tokens,
            completion_tokens,
            cache_read_tokens,
            cache_write_tokens,
        )
        reasons = tuple(answer.reason.split(";"))
        return self.record(
            ticket,
            route=answer.route,
            reasons=reasons,
            verdicts=verdict_records(answer.verdicts),
            score=answer.score,
            model=answer.model,
            provider=provider,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            tokens_estimated=estimated,
            ttft_s=seen.ttft_s,
            status=status,
            error=error,
            costs=costs,
            leg="cascade_cloud" if replaced(answer) is not None else None,
            cache_read_tokens=cache_read_tokens,
            cache_write_tokens=cache_write_tokens,
            decided=answer.decided,
        )

    def discarded(
        self,
        ticket: Ticket,
        leg: DiscardedLeg,
        verdicts: tuple[Verdict, ...],
        score: float | None,
        decided: Decided | None,
    ) -> LedgerRecord:
        """The record of a cascade's discarded local answer, as its own leg
        (``cascade_local``)."""
        return self.record(
            ticket,
            route="local",
            reasons=(leg.reason,),
            verdicts=verdict_records(verdicts),
            score=score,
            model=leg.model,
            provider="local",
            prompt_tokens=leg.prompt_tokens,
            completion_tokens=leg.completion_tokens,
            tokens_estimated=False,
            ttft_s=None,
            status="ok",
            error=None,
            costs=self._costing.for_discarded_local(
                cpu_seconds=max(self._cpu() - ticket.cpu_started, 0.0)
            ),
            leg="cascade_local",
            decided=decided,
        )

    def cpu_seconds(self) -> float:
        """Process CPU seconds so far (local work's energy is the difference across it)."""
        return self._cpu()

    def gpu_joules(self) -> float | None:
        """The GPUs' energy counter now, in joules; None without one."""
        return self._gpu_energy()

    def unanswered_local(
        self, *, cpu_seconds: float, gpu_joules: float | None, busy_s: float
    ) -> Costs:
        """The cost fields of local work no client got (a local shadow answer), priced as a
        local answer's electricity is, with nothing avoided.

        Args:
            cpu_seconds: Process CPU seconds while the local model worked on it.
            gpu_joules: The GPUs' energy across it, None without a counter: its time
                (``busy_s``) is then priced at ``energy.gpu_watts`` when the model runs on a
                GPU.
            busy_s: Seconds the local model worked on it (its waits for the model left out).
        """
        gpu_seconds = busy_s if gpu_joules is None and self._gpu_offloaded() else None
        return self._costing.for_discarded_local(
            cpu_seconds=max(cpu_seconds, 0.0), gpu_joules=gpu_joules, gpu_seconds=gpu_seconds
        )

    def costs(
        self,
        ticket: Ticket,
        route: Literal["local", "lan", "cloud"],
        model: str,
        counterfactual: str | None,
        prompt_tokens: int,
        completion_tokens: int,
        cache_read_tokens: int = 0,
        cache_write_tokens: int = 0,
    ) -> Costs:
        """The cost fields of an answer on ``route`` (see the module docstring)."""
        if route == "lan":
            # Priced against the cloud model it would have gone to, less what the server costs.
            return self._costing.for_lan(counterfactual, prompt_tokens, completion_tokens)
        if route == "local":
            gpu_joules = gpu_seconds = None
            if ticket.gpu_joules_started is not None:
                now = self._gpu_energy()
                gpu_joules = None if now is None else max(now - ticket.gpu_joules_started, 0.0)
            if gpu_joules is None and self._gpu_offloaded():
                gpu_seconds = self.elapsed(ticket)
            return self._costing.for_local(
                counterfactual,
                prompt_tokens,
                completion_tokens,
                cpu_seconds=max(self._cpu() - ticket.cpu_started, 0.0),
                gpu_joules=gpu_joules,
                gpu_seconds=gpu_seconds,
            )
        return self._costing.for_cloud(
            model, prompt_tokens, completion_tokens, cache_read_tokens, cache_write_tokens
        )

    def tokens(self, request: GenerationRequest, seen: Seen) -> tuple[int, int, bool]:
        """The prompt and completion tokens of what was ``seen``, and whether they were
        counted here (an estimate) rather than reported."""
        if seen.done is not None:
            usage = seen.done.usage
            reported = usage.prompt_tokens > 0 or usage.completion_tokens > 0
            if reported or not seen.text:
                return usage.prompt_tokens, usage.completion_tokens, False
        # No usage: the stream was cut, or a provider that does not report it in streams.
        prompt = seen.prompt_tokens
        if prompt is None:
            prompt = self.count_tokens(prompt_text(request))
        return prompt, self.count_tokens("".join(seen.text)), True

    def count_tokens(self, text: str) -> int:
        """Tokens in a text: by the local tokenizer up to :data:`COUNTED_CHARS` characters
        (an estimate while no model is loaded), else by its size."""
        if len(text) <= COUNTED_CHARS:
            return self._count_tokens(text)
        return -(-len(text.encode("utf-8")) // _BYTES_PER_TOKEN)

    def record(
        self,
        ticket: Ticket,
        *,
        route: Route,
        reasons: tuple[str, ...],
        verdicts: tuple[VerdictRecord, ...],
        score: float | None,
        model: str,
        provider: str,
        prompt_tokens: int,
        completion_tokens: int,
        tokens_estimated: bool,
        ttft_s: float | None,
        status: Literal["ok", "error", "cancelled", "refused"],
        error: str | None,
        costs: Costs,
        leg: Literal["cascade_local", "cascade_cloud"] | None = None,
        cache_read_tokens: int = 0,
        cache_write_tokens: int = 0,
        decided: Decided | None,
    ) -> LedgerRecord:
        """A record of the request ``ticket`` accounts for, with these fields."""
        return LedgerRecord(
            id=ticket.id,
            time=ticket.time,
            api=ticket.api,
            route=route,
            reasons=reasons,
            verdicts=verdicts,
            score=score,
            model_requested=ticket.model_requested,
            model=model,
            provider=provider,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            tokens_estimated=tokens_estimated,
            ttft_s=ttft_s,
            latency_s=self.elapsed(ticket),
            status=status,
            error=error,
            leg=leg,
            cache_read_tokens=cache_read_tokens,
            cache_write_tokens=cache_write_tokens,
            decided=decided,
            instance=self._instance,
            **costs.fields(),
        )


def replaced(answer: Answer) -> DiscardedLeg | None:
    """The cascade's local answer this one replaced, recorded as its own leg; None when there
    was none, or when this is that answer itself, given after its escalation failed
    (:attr:`~hybrid.routing.answer.DiscardedLeg.replayed`: one generation, one record)."""
    leg = answer.discarded
    return leg if leg is not None and not leg.replayed else None


def verdict_records(verdicts: tuple[Verdict, ...]) -> tuple[VerdictRecord, ...]:
    """The policies' verdicts, as the record keeps them."""
    return tuple(VerdictRecord(v.policy, v.outcome, v.reason, v.score) for v in verdicts)


def prompt_text(request: GenerationRequest) -> str:
    """The text of a request's prompt, to count its tokens."""
    if request.prompt is not None:
        return request.prompt
    return "\n".join(message.content for message in request.messages)
