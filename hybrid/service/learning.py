"""Learning from traffic, as the server does it: signals, shadow comparisons, their ledger rows.

:func:`hybrid.service.answering.start_answer` hands every started answer to :meth:`Learner.watch`,
which wraps its generation.  Once the answer has ended normally and the route has closed it
(the client has its last bytes, or they are on their way), a callback on the event loop, never
the response's own task:

- writes the request's :class:`~hybrid.ledger.learning.Signal` when the difficulty policy
  scored it: the calibrated model's SHA-256, the prompt's features, the local model's prompt
  vector when one was computed, the route and the score (never the text); and, when the
  cascade discarded its local answer because it declined the request or was none of the
  answers the prompt offered, a ``cascade`` label (the local model was wrong there, whatever
  the cloud then said);
- offers a local answer to :class:`~hybrid.routing.shadow.Shadowing`, when the router chose the
  route and nothing pins the request to this machine; and the answer of the cloud or of a LAN
  server, when the difficulty policy escalated the request, for the local model to answer
  again in the background (``routing.learn.local_shadow_rate``).

A shadow comparison's cloud calls are recorded as ledger legs (``shadow``, ``shadow_judge``)
through the accountant, so that the budget, the metrics and the event stream count their
cost, and its grade becomes a ``shadow`` label.  A local shadow answer is recorded the same
way, as a ``local_shadow`` leg: route ``local``, the local model's tokens, its electricity
priced as a local answer's, no cloud spend and nothing avoided (it answered no client, so its
cost avoided is minus its energy), and not a request of its own.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from hybrid.backend import Generation, ObservedGeneration
from hybrid.errors import HybridError
from hybrid.generation import (
    GenerationDone,
    GenerationEvent,
    GenerationRequest,
    Message,
    TextDelta,
    ToolCallDelta,
)
from hybrid.ledger.costing import NOTHING
from hybrid.ledger.learning import Label, Signal
from hybrid.ledger.record import LedgerRecord
from hybrid.routing.answer import Answer
from hybrid.routing.cascade import DECLINED, OUTSIDE_OPTIONS
from hybrid.routing.difficulty.features import FEATURE_VERSION, extract
from hybrid.routing.names import CloudTarget
from hybrid.routing.shadow import ShadowCall, Shadowing, ShadowOutcome
from hybrid.routing.shadow_meter import LocalShadowAnswer

if TYPE_CHECKING:
    from hybrid.ledger.writer import LedgerWriter
    from hybrid.routing.difficulty.model import DifficultyModel
    from hybrid.routing.policies.difficulty import CalibratedModel
    from hybrid.service.accounting import Accountant

log = logging.getLogger("hybrid.ledger")

# Reasons a local answer was given instead of the cloud's: the cloud is failing or capped.
_FALLBACK_REASONS = ("cloud_unavailable:", "budget:")

# The cascade's reasons that say the local answer was wrong, with the note its label carries.
_WRONG = {
    DECLINED: "the local answer declined the request",
    OUTSIDE_OPTIONS: "the local answer was none of the answers the prompt offered",
}


@dataclass(frozen=True)
class ScoringModel:
    """The difficulty model the router scores with, and the local model it was fitted to.

    Attributes:
        sha256: The local model's GGUF SHA-256.
        model: The difficulty model.
    """

    sha256: str
    model: DifficultyModel


def scoring_model(calibrated: CalibratedModel) -> ScoringModel | None:
    """The difficulty model in use (a calibration, or the prior of an uncalibrated model),
    with the SHA-256 of the local model it scores for; None when there is none yet."""
    status = calibrated.status()
    model = status.model
    if model is None:
        return None
    sha = status.sha256 or model.meta.get("model_sha256")
    if not isinstance(sha, str) and status.found is not None:
        sha = Path(status.found.path).stem  # stored as <sha256>.json
    return ScoringModel(sha, model) if isinstance(sha, str) else None


class Learner:
    """Writes learning signals and runs shadow comparisons for finished answers.

    Args:
        ledger: The ledger's writer.
        accountant: Records the shadow calls and the local shadow answers (budget, metrics,
            events), and prices the local answers' electricity.
        scoring: The difficulty model in use, or None when there is none.
        shadowing: Runs shadow comparisons; None when ``routing.learn.shadow_rate`` is 0.
        keep_signals: 0 keeps no signals.
        prompt_vector: The local model's prompt vector for an answer, when it was computed.
        clock: Unix time.
    """

    def __init__(
        self,
        ledger: LedgerWriter,
        accountant: Accountant,
        scoring: Callable[[], ScoringModel | None],
        *,
        shadowing: Shadowing | None = None,
        keep_signals: int = 10_000,
        prompt_vector: Callable[[Answer], np.ndarray | None] = lambda answer: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._ledger = ledger
        self._accountant = accountant
        self._scoring = scoring
        self.shadowing = shadowing
        self._keep = keep_signals > 0
        self._prompt_vector = prompt_vector
        self._clock = clock

    def watch(
        self, answer: Answer, request: GenerationRequest, *, api: str, model: str | None
    ) -> Answer:
        """The answer, with its generation watched for its end (see the module docstring).

        Args:
            answer: The started (and accounted) answer.
            request: The client's request.
            api: The client's API (``openai``, ``anthropic``), for the shadow legs' records.
            model: The model name the client sent.
        """
        if not self._keep and self.shadowing is None:
            return answer
        watched = _WatchedGeneration(answer.generation, self, answer, request, api, model)
        return dataclasses.replace(answer, generation=watched)

    async def aclose(self) -> None:
        """Stop the shadow comparisons still running (at shutdown, before the providers)."""
        if self.shadowing is not None:
            await self.shadowing.aclose()

    def finished(self, ended: _Ended) -> None:
        """An answer ended normally and was closed: keep its signal, maybe shadow it.

        Never raises: learning must not disturb serving.
        """
        try:
            self._shadow(ended, self._signal(ended))
        except Exception:
            log.exception("learning from request %s failed", ended.request.request_id)

    def _signal(self, ended: _Ended) -> Signal | None:
        """Keep the request's signal, when it was scored; the signal kept, or None."""
        answer, request = ended.answer, ended.request
        scored = next(
            (v.score for v in answer.verdicts if v.policy == "difficulty" and v.score is not None),
            None,
        )
        if not self._keep or scored is None:
            return None
        scoring = self._scoring()
        if scoring is None:
            return None
        messages = _messages(request)
        signal = Signal.of(
            request_id=request.request_id,
            time=self._clock(),
            model_sha256=scoring.sha256,
            feature_version=FEATURE_VERSION,
            features=extract(messages),
            route=answer.route,
            score=scored,
            prompt_chars=sum(len(message.content) for message in messages),
            vector=self._prompt_vector(answer),
        )
        discarded = answer.discarded
        note = _WRONG.get(discarded.reason) if discarded is not None else None
        try:
            self._ledger.learn_nowait(signal)
            if note is not None:
                label = Label(request.request_id, "cascade", False, self._clock(), note=note)
                self._ledger.learn_nowait(label)
        except HybridError as exc:
            log.error("the ledger could not keep the signal of %s: %s", request.request_id, exc)
            return None
        return signal

    def _shadow(self, ended: _Ended, signal: Signal | None) -> None:
        answer = ended.answer
        if (
            self.shadowing is None
            or answer.decided != "router"
            or ended.tool_calls
            or any(verdict.pin for verdict in answer.verdicts)
            or any(part.startswith(_FALLBACK_REASONS) for part in answer.reason.split(";"))
        ):
            return
        report = functools.partial(self.shadowed, api=ended.api, model=ended.model, signal=signal)
        if answer.route == "local":
            # With no cloud (no counterfactual), a LAN server answers it, when one is configured.
            target = None
            if answer.counterfactual is not None:
                provider, _, name = answer.counterfactual.partition("/")
                target = CloudTarget(provider, name)
            self.shadowing.offer(ended.request, ended.text, target, report)
        elif answer.route in ("cloud", "lan") and answer.discarded is None and _escalated(answer):
            # A LAN server's answer (``gpu-box/qwen2.5-32b``) is the reference as the cloud's is.
            provider, _, name = answer.model.partition("/")
            target = CloudTarget(provider, name)
            self.shadowing.offer_local(ended.request, ended.text, target, report)

    def shadowed(
        self,
        outcome: ShadowOutcome,
        *,
        api: str,
        model: str | None,
        signal: Signal | None = None,
    ) -> None:
        """Record a shadow comparison: its cloud calls and its local answer as ledger legs,
        its grade as a label, and the prompt vector a local shadow answer read, with the
        request's ``signal``."""
        if outcome.local is not None:
            answered = self._local_leg(outcome.request_id, outcome.local, api=api, model=model)
            self._accountant.commit_nowait(answered)
        legs: tuple[tuple[ShadowCall | None, Literal["shadow", "shadow_judge"]], ...] = (
            (outcome.shadow, "shadow"),
            (outcome.judge, "shadow_judge"),
        )
        for call, leg in legs:
            if call is not None:
                record = self._leg(outcome.request_id, call, leg, api=api, model=model)
                self._accountant.commit_nowait(record, call.reservation)
        if outcome.grade is None:
            return
        if outcome.vector is not None and signal is not None and signal.vector is None:
            try:
                self._ledger.learn_nowait(signal.with_vector(outcome.vector))
            except HybridError as exc:
                log.error("the ledger could not keep the vector of %s: %s", signal.request_id, exc)
        label = Label(
            request_id=outcome.request_id,
            source="shadow",
            good=outcome.grade.good,
            time=self._clock(),
            note=outcome.note,
            agreement=outcome.grade.agreement,
        )
        try:
            self._ledger.learn_nowait(label)
        except HybridError as exc:
            log.error("the ledger could not keep the label of %s: %s", outcome.request_id, exc)

    def _leg(
        self,
        request_id: str,
        call: ShadowCall,
        leg: Literal["shadow", "shadow_judge"],
        *,
        api: str,
        model: str | None,
    ) -> LedgerRecord:
        usage = call.usage
        prompt = usage.prompt_tokens if usage is not None else 0
        completion = usage.completion_tokens if usage is not None else 0
        cache_read = usage.cache_read_tokens if usage is not None else 0
        cache_write = usage.cache_write_tokens if usage is not None else 0
        costing = self._accountant.costing
        if usage is None:
            costs = NOTHING
        elif call.route == "lan":
            costs = costing.for_unanswered_lan(prompt, completion)
        else:
            costs = costing.for_cloud(
                call.target.qualified, prompt, completion, cache_read, cache_write
            )
        return LedgerRecord(
            id=request_id,
            time=self._clock(),
            api=api,
            route=call.route,
            reasons=(leg.replace("_", ":"),),
            verdicts=(),
            score=None,
            model_requested=model,
            model=call.target.qualified,
            provider=call.target.provider,
            prompt_tokens=prompt,
            completion_tokens=completion,
            tokens_estimated=False,
            ttft_s=None,
            latency_s=call.latency_s,
            status="ok" if call.error is None else "error",
            error=call.error,
            leg=leg,
            cache_read_tokens=cache_read,
            cache_write_tokens=cache_write,
            decided="router",
            **costs.fields(),
        )

    def _local_leg(
        self, request_id: str, answer: LocalShadowAnswer, *, api: str, model: str | None
    ) -> LedgerRecord:
        """The ``local_shadow`` leg of a request: what the local model spent answering it in
        the background (see the module docstring)."""
        costs = self._accountant.records.unanswered_local(
            cpu_seconds=answer.cpu_s, gpu_joules=answer.gpu_joules, busy_s=answer.latency_s
        )
        return LedgerRecord(
            id=request_id,
            time=self._clock(),
            api=api,
            route="local",
            reasons=("local:shadow",),
            verdicts=(),
            score=None,
            model_requested=model,
            model=answer.model,
            provider="local",
            prompt_tokens=answer.prompt_tokens,
            completion_tokens=answer.completion_tokens,
            tokens_estimated=answer.estimated,
            ttft_s=None,
            latency_s=answer.latency_s,
            status=answer.status,
            error=answer.error,
            leg="local_shadow",
            decided="router",
            **costs.fields(),
        )


def _escalated(answer: Answer) -> bool:
    """Whether the difficulty policy sent the request off this machine, to the cloud or a LAN
    server (not its length, the machine's capacity or a rule)."""
    return any(v.policy == "difficulty" and v.outcome == "cloud" for v in answer.verdicts)


@dataclass(frozen=True)
class _Ended:
    """An answer that ended normally."""

    answer: Answer
    request: GenerationRequest
    api: str
    model: str | None
    text: str
    tool_calls: bool


class _WatchedGeneration(ObservedGeneration):
    """A generation that tells the learner, once closed, that it ended normally."""

    def __init__(
        self,
        inner: Generation,
        learner: Learner,
        answer: Answer,
        request: GenerationRequest,
        api: str,
        model: str | None,
    ) -> None:
        super().__init__(inner)
        self._learner = learner
        self._answer = answer
        self._request = request
        self._api = api
        self._model = model
        self._text: list[str] = []
        self._tool_calls = False
        self._ended = False
        self._told = False

    async def _observe(self, event: GenerationEvent) -> None:
        if isinstance(event, TextDelta):
            self._text.append(event.text)
        elif isinstance(event, ToolCallDelta):
            self._tool_calls = True
        elif isinstance(event, GenerationDone):
            self._ended = not event.cancelled

    def _closed(self) -> None:
        if self._ended and not self._told:
            self._told = True
            ended = _Ended(
                self._answer,
                self._request,
                self._api,
                self._model,
                "".join(self._text),
                self._tool_calls,
            )
            # On the loop's next turn, not on the response's task: its last bytes go first.
            asyncio.get_running_loop().call_soon(self._learner.finished, ended)


def _messages(request: GenerationRequest) -> tuple[Message, ...]:
    """The conversation the difficulty policy scored (a raw prompt as one user message)."""
    return request.messages or (Message("user", request.prompt or ""),)
