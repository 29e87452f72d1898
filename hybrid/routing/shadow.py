"""Shadow sampling: grade local answers against the cloud's answer to the same request.

With ``routing.learn.shadow_rate`` above 0, that share of the requests the router kept local
is also sent to the cloud model it would have escalated to (with no cloud, to the first LAN
server able to answer it, ``[[lan.servers]]``), *after* the client has its answer, on a
background task: the client's answer is never delayed or changed.  The two
answers are compared (by word agreement, :mod:`hybrid.routing.agreement`, or by a judge) and
the result becomes a label for the local answer (``good`` when they agree), which
``hybrid calibrate --from-ledger`` learns from.

Never shadowed: requests pinned to this machine by the privacy policy, requests whose route the
client or the server-wide mode chose (``model: local``, ``X-Hybrid-Route: local``,
``local-only``), local answers given because the cloud failed or a spend cap was reached,
requests with tools, images or audio, and answers that did not end normally.  A comparison
whose other answer is empty or did not end normally (:func:`gradable`: a content filter, a
reasoning model that spent ``max_tokens`` before writing anything) gives no label: it says
nothing about the answer it would grade.  A provider at a spend cap is not called, and each
call (the shadow call, then the judge's) first reserves its estimated cost like any other cloud
call (:mod:`hybrid.routing.reserving`): one that does not fit under a cap is not sent.  Every
call made is recorded in the ledger by whoever receives the :class:`ShadowOutcome`, which
settles the call's reservation with its real cost; a reservation its record did not settle is
released when the comparison ends, however it ends.

**The other way round** (``routing.learn.local_shadow_rate``): that share of the requests the
router *escalated* is also answered by the local model, on its low-priority lane (a job there
starts only while no client request waits or runs), after the client has the cloud's answer,
and the local answer is graded against the cloud's in the same way.  No cloud call is made.
Labels from local answers alone come from the requests the router already finds easiest (with
the shipped calibration of the embedded model it keeps a few percent of real prompts local), so
a refit sees few wrong answers and none of the requests it escalates; this labels those too.
The sample (:class:`Sample`) counts only the escalated requests a local answer could be given
for: text-only ones with a non-empty cloud answer, offered while fewer than
:data:`LOCAL_PENDING` such answers wait or run and background work is not held (on battery
power).  The others are neither answered nor counted, so exactly one in each run of
``1 / local_shadow_rate`` of those that could be answered is.  Each local answer started is
reported (:class:`~hybrid.routing.shadow_meter.LocalShadowAnswer`: its tokens, and the process
CPU seconds and GPU energy while the local model worked on it, its waits for the lane left out,
to price its electricity as a local answer's), whether it graded or not, so that its receiver
records it as a ledger leg: one that a client request stopped (preempted) or that failed
mid-answer with what it generated until then (counted from its events: the local model streams
a piece per token), while one that never started (the model not ready, its queue full, the
prompt too long) or that the server's shutdown cut short is not reported.

The local answer is labelled good when the agreement reaches ``routing.learn.shadow_agreement``
(0.5 by default).  **With a judge** (``routing.learn.judge_model``,
:mod:`hybrid.routing.shadow_judge`), a cloud model, or a LAN server's model (the judge named
``server/model`` by a ``[[lan.servers]]`` name, asked on that server at no cloud cost), reads the
question, the reference answer and the local answer, and says ``yes`` or ``no``; an unreadable
verdict, or a LAN judge that did not answer, falls back to the overlap grade.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from random import Random
from typing import Any, Literal

import numpy as np

from hybrid.backend import collect
from hybrid.cloud.provider import CloudProvider
from hybrid.errors import HybridError
from hybrid.generation import FinishReason, GenerationRequest, Usage
from hybrid.ledger.budget import Reservation
from hybrid.routing.agreement import Grade, asked, gradable, grade_overlap, question_of
from hybrid.routing.cascade import Tallied, Tally
from hybrid.routing.lan import LanMiss, LanTier, difficulty_messages
from hybrid.routing.local_model import LocalAnswerer
from hybrid.routing.names import CloudTarget
from hybrid.routing.reserving import Reserving
from hybrid.routing.shadow_judge import judge_request, read_verdict
from hybrid.routing.shadow_meter import LocalShadowAnswer, Meter

log = logging.getLogger("hybrid.routing")

LOCAL_PENDING = 2
"""Local shadow answers waiting or running at most (each takes the low-priority lane in turn)."""

SAMPLE_SEED = 0
"""Seed of the samples' generator when none is given, so which requests a replay or a test sees
shadowed is the same from run to run (see :class:`Sample`: the positions are still drawn, blind
to what the requests say, and a start never waits long for its first sample)."""

LOCAL_MAX_TOKENS = 256
"""A local shadow answer's output cap, beside the request's own (about as long as the cloud's
answer, which is what it is compared with, and at most this)."""


@dataclass(frozen=True)
class ShadowCall:
    """One call made for shadow sampling, to the cloud or a LAN server, for the ledger.

    Attributes:
        target: The model called: a cloud model, or a LAN server's (``gpu-box/qwen2.5-32b``).
        text: What it answered (empty when it failed).
        usage: Its token counts, None when it failed before reporting any.
        latency_s: Seconds the call took.
        error: Why it failed, None when it answered.
        reservation: The budget reservation the call's record settles, None without a budget.
        finish_reason: How its answer ended, None when it failed.
        route: ``cloud``, or ``lan`` for a LAN server's answer.
    """

    target: CloudTarget
    text: str
    usage: Usage | None
    latency_s: float
    error: str | None = None
    reservation: Reservation | None = None
    finish_reason: FinishReason | None = None
    route: Literal["cloud", "lan"] = "cloud"


@dataclass(frozen=True)
class ShadowOutcome:
    """What a shadow comparison found.

    Attributes:
        request_id: The request compared.
        shadow: The cloud call that answered the request again; None when the local model
            answered it again instead (a local shadow).
        grade: The local answer's grade; None when the cloud call failed or its answer
            cannot grade another (:func:`gradable`), or when a local shadow answer stopped
            early or cannot be graded.
        judge: The judge's call, when one graded.
        against: The cloud model whose answer the local answer was graded against.
        vector: The local model's vector of the prompt, read from the prefill of a local
            shadow answer (``routing.learn.prompt_vectors``); None otherwise.
        local: The local shadow answer, for its ledger leg; None for a cloud shadow call.
    """

    request_id: str
    shadow: ShadowCall | None
    grade: Grade | None
    judge: ShadowCall | None = None
    against: CloudTarget | None = None
    vector: np.ndarray | None = field(default=None, compare=False)
    local: LocalShadowAnswer | None = None

    @property
    def note(self) -> str:
        """How the grade was reached, for the label."""
        method = self.grade.method if self.grade is not None else "no grade"
        if self.shadow is None:
            reference = self.against.qualified if self.against is not None else "the cloud"
            return f"{method}: a local answer in the background against {reference}"
        return f"{method} against {self.shadow.target.qualified}"


class Sample:
    """Which of a run of offers to take, ``rate`` of them: exactly one in each run of
    ``1 / rate`` offers, at a place in the run drawn at random.

    Offer *n* (from 0) covers ``[n * rate, (n + 1) * rate)`` of a running total, and run *k*
    has its mark at *k* plus a uniform draw in [0, 1): the offer whose stretch holds a mark is
    taken.  So the share taken is ``rate`` over any stretch of offers (not only on average, as
    with a coin toss per offer), the first is taken within the first ``1 / rate`` offers of a
    start (a server restarted every day under light traffic still samples), and no fixed period
    can line up with a client's own cycle of requests.

    Args:
        rate: The share to take, 0 to 1 (0 takes none, 1 every offer).
        rng: Draws the places.
    """

    def __init__(self, rate: float, rng: Random) -> None:
        self._rate = rate
        self._rng = rng
        self._offers = 0
        self._mark = rng.random() if rate > 0 else math.inf

    def draw(self) -> bool:
        """Count one offer; whether it is taken."""
        if self._rate <= 0:
            return False
        self._offers += 1
        if self._offers * self._rate <= self._mark:
            return False
        # Two marks in one offer's stretch (a rate near 1): the next offer takes the second.
        self._mark = math.floor(self._mark) + 1 + self._rng.random()
        return True


class Shadowing:
    """Samples local answers and compares them with the cloud's in the background.

    Args:
        rate: Share of eligible local answers to shadow (0 turns it off).
        providers: The cloud providers by name.
        usable: Whether a provider may be called (it has its key).
        budget: Reserves each call's estimated cost before it is sent (None: no budget).
        agreement: The overlap grade's threshold (``routing.learn.shadow_agreement``).
        judge: The judge model, or None to grade by word overlap: a cloud model, or a LAN
            server's (``gpu-box/qwen2.5-32b-instruct``), asked on that server.
        rng: Draws the sample (None: one seeded with :data:`SAMPLE_SEED`).
        perf: Monotonic seconds, for the calls' latency.
        local_rate: Share of the requests the router escalated that the local model answers
            again in the background (0 turns it off).
        local: The local model on its low-priority lane (raises :class:`HybridError` while it
            is not ready); None: no local shadow.
        vectors: Read the local model's vector of the prompt from a local shadow answer's
            prefill (``routing.learn.prompt_vectors``), for the model stage's refits.
        held: Why the local model's background work waits now (on battery power), or None;
            no local shadow answer starts while it holds.
        cpu: Process CPU seconds, read as each job of a local shadow answer starts on the
            local model and ends, for its energy (:class:`~hybrid.routing.shadow_meter.Meter`).
        gpu_energy: The GPUs' energy counter in joules (None without one), read likewise.
        lan: The team's LAN servers: with no cloud model to escalate to, a sampled local
            answer is graded against a LAN server's answer (None: none configured).
    """

    def __init__(
        self,
        *,
        rate: float,
        providers: Mapping[str, CloudProvider],
        usable: Callable[[str], bool],
        budget: Reserving | None,
        agreement: float,
        judge: CloudTarget | None = None,
        rng: Random | None = None,
        perf: Callable[[], float] = time.perf_counter,
        local_rate: float = 0.0,
        local: Callable[[], LocalAnswerer[Any]] | None = None,
        vectors: bool = False,
        held: Callable[[], str | None] = lambda: None,
        cpu: Callable[[], float] = time.process_time,
        gpu_energy: Callable[[], float | None] = lambda: None,
        lan: LanTier | None = None,
    ) -> None:
        self._rate = rate
        self._lan = lan
        self._cpu = cpu
        self._gpu_energy = gpu_energy
        self._held = held
        self._vectors = vectors
        self._local_rate = local_rate if local is not None else 0.0
        self._rng = rng if rng is not None else Random(SAMPLE_SEED)
        self._sample = Sample(rate, self._rng)
        self._local_sample = Sample(self._local_rate, self._rng)
        self._local = local
        self._local_pending = 0
        self._providers = providers
        self._usable = usable
        self._budget = budget
        self._agreement = agreement
        self._judge = judge
        # A judge named by a LAN server's name (and no cloud provider's) is asked there.
        self._judge_on_lan = (
            judge is not None
            and lan is not None
            and judge.provider not in providers
            and any(server.name == judge.provider for server in lan.pool.servers)
        )
        self._perf = perf
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def pending(self) -> int:
        """Shadow comparisons still running."""
        return len(self._tasks)

    def offer(
        self,
        request: GenerationRequest,
        local_text: str,
        target: CloudTarget | None,
        report: Callable[[ShadowOutcome], None],
    ) -> bool:
        """Maybe shadow a local answer: draw the sample, and start the comparison on a task.

        The caller has checked that the request may leave this machine (see the module
        docstring); this checks the rate, the request's needs and the provider.

        Args:
            request: The client's request, answered locally.
            local_text: The local answer's text.
            target: The cloud model the request would have escalated to; None with no cloud,
                when LAN servers are configured: the LAN tier's first server able to answer
                it is asked instead.
            report: Receives the outcome (and records it in the ledger), on the event loop.

        Returns:
            Whether a comparison was started.
        """
        if self._rate <= 0 or request.needs or not local_text.strip():
            return False
        if target is None and self._lan is None:
            return False
        if not self._sample.draw():
            return False
        if target is not None and not self._callable(target.provider):
            return False
        task = asyncio.get_running_loop().create_task(
            self._compare(request, local_text, target, report)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    def offer_local(
        self,
        request: GenerationRequest,
        cloud_text: str,
        against: CloudTarget,
        report: Callable[[ShadowOutcome], None],
    ) -> bool:
        """Maybe have the local model answer an escalated request too, in the background.

        The caller has checked that the router escalated the request (see the module
        docstring); this checks the rate, the request's needs, how many wait already and
        whether background work is held (on battery power).

        Args:
            request: The client's request, answered by the cloud.
            cloud_text: The cloud's answer.
            against: The cloud model that answered it.
            report: Receives the outcome (and records the local answer as a ledger leg, and
                the label), on the event loop.

        Returns:
            Whether a comparison was started.
        """
        if self._local_rate <= 0 or request.needs or not cloud_text.strip():
            return False
        if self._local_pending >= LOCAL_PENDING or self._held() is not None:
            return False  # not counted: the sample is of the requests that could be answered
        if not self._local_sample.draw():
            return False
        self._local_pending += 1
        task = asyncio.get_running_loop().create_task(
            self._compare_local(request, cloud_text, against, report)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def aclose(self) -> None:
        """Cancel the comparisons still running and wait for them (at server shutdown)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def drain(self) -> None:
        """Wait for the comparisons running now to finish (tests, and a graceful drain)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _callable(self, provider: str) -> bool:
        if provider not in self._providers or not self._usable(provider):
            return False
        return self._budget is None or self._budget.capped(provider) is None

    async def _compare(
        self,
        request: GenerationRequest,
        local_text: str,
        target: CloudTarget | None,
        report: Callable[[ShadowOutcome], None],
    ) -> None:
        held: list[Reservation] = []
        try:
            if target is None:
                shadow = await self._ask_lan(dataclasses.replace(request, stream=False))
            else:
                shadow_request = dataclasses.replace(request, model=target.model, stream=False)
                shadow = await self._call(target, shadow_request, held)
            if shadow is None:
                return  # its estimate did not fit under a cap, or no LAN server took it
            if shadow.error is not None or not gradable(shadow.text, shadow.finish_reason):
                # Reported all the same: the call's record settles its cost.
                report(ShadowOutcome(request.request_id, shadow, None))
                return
            grade, judged = await self._grade(request, local_text, shadow.text, held)
            report(ShadowOutcome(request.request_id, shadow, grade, judged))
        except Exception:
            # A background comparison must never take anything else down with it.
            log.exception("shadow comparison of %s failed", request.request_id)
        finally:
            self._free(held)

    async def _compare_local(
        self,
        request: GenerationRequest,
        cloud_text: str,
        against: CloudTarget,
        report: Callable[[ShadowOutcome], None],
    ) -> None:
        held: list[Reservation] = []
        try:
            assert self._local is not None
            local = self._local()
            cap = min(request.params.max_tokens or LOCAL_MAX_TOKENS, LOCAL_MAX_TOKENS)
            asked = dataclasses.replace(
                request,
                model=None,
                stream=False,
                params=dataclasses.replace(request.params, max_tokens=cap),
            )
            # Metered only while the model works on it: not its waits for the lane.
            meter = Meter(self._perf, self._cpu, self._gpu_energy)
            prepared = await local.prepare(asked)
            vector = None
            if self._vectors:
                vector = await self._vector(local, asked, prepared, meter)
            generation = await local.start(asked, prepared=prepared, running=meter.running)
            tally = Tally()
            try:
                answered = await collect(Tallied(generation, tally))
            except HybridError as exc:
                # Stopped or failed mid-answer: what it generated until then was spent.
                prompt = len(prepared.tokens)
                stopped = meter.read(local.model_id, prompt, tally.tokens, exc)
                report(
                    ShadowOutcome(request.request_id, None, None, against=against, local=stopped)
                )
                raise
            usage = answered.done.usage
            spent = meter.read(local.model_id, usage.prompt_tokens, usage.completion_tokens)
            if not gradable(answered.text, answered.done.finish_reason):
                # Reported all the same: its record counts the energy it took.
                report(ShadowOutcome(request.request_id, None, None, against=against, local=spent))
                return
            grade, judged = await self._grade(request, answered.text, cloud_text, held)
            outcome = ShadowOutcome(request.request_id, None, grade, judged, against, vector, spent)
            report(outcome)
        except HybridError as exc:
            log.info("local shadow answer of %s not given: %s", request.request_id, exc)
        except Exception:
            log.exception("local shadow comparison of %s failed", request.request_id)
        finally:
            self._local_pending -= 1
            self._free(held)

    def _free(self, held: list[Reservation]) -> None:
        """Release a comparison's reservations: what its reported records settled is free
        already; this frees the rest (a cancelled comparison, a failed report)."""
        if self._budget is not None:
            for reservation in held:
                self._budget.release(reservation)

    @staticmethod
    async def _vector(
        local: LocalAnswerer[Any], request: GenerationRequest, prepared: object, meter: Meter
    ) -> np.ndarray | None:
        """The local model's vector of the prompt, read in the context that then answers it
        (its answer reuses the prefill, so the meter counts the prefill here); None when it
        cannot be read."""
        try:
            return await local.prompt_embedding(request, prepared=prepared, running=meter.running)
        except HybridError as exc:
            log.info("no prompt vector for the local shadow answer: %s", exc)
            return None

    async def _grade(
        self,
        request: GenerationRequest,
        local_text: str,
        cloud_text: str,
        held: list[Reservation],
    ) -> tuple[Grade, ShadowCall | None]:
        """The local answer's grade against the cloud's, and the judge's call when one
        graded (by word overlap when there is no judge or its verdict is unreadable)."""
        question = question_of(asked(request))
        grade = grade_overlap(local_text, cloud_text, threshold=self._agreement, question=question)
        judge = self._judge
        if judge is None:
            return grade, None
        judging = judge_request(request, local_text, cloud_text, judge.model)
        if self._judge_on_lan:
            judged = await self._ask_lan(judging, on=judge)
        elif self._callable(judge.provider):
            judged = await self._call(judge, judging, held)
        else:
            return grade, None
        verdict = None
        if judged is not None and judged.error is None:
            verdict = read_verdict(judged.text)
        if verdict is not None:
            grade = Grade(verdict, 1.0 if verdict else 0.0, "judge")
        return grade, judged

    async def _ask_lan(
        self, request: GenerationRequest, *, on: CloudTarget | None = None
    ) -> ShadowCall | None:
        """Ask the LAN server the LAN tier puts first among those holding a model able to
        answer, or the judge's server ``on`` for its model (no cloud budget: a LAN answer is
        no cloud spend); None when no server was asked (none up, free or able), a failed call
        when every server asked failed."""
        assert self._lan is not None
        started = self._perf()
        reason = "shadow" if on is None else "shadow_judge"
        messages = difficulty_messages(request)
        answer = await self._lan.start(request, reason, messages=messages, on=on)
        if isinstance(answer, LanMiss):
            if not answer.failures:
                log.info("shadow call of %s not sent: %s", request.request_id, answer.code)
                return None
            # Servers were asked and failed: the first one's failure is recorded, as a cloud
            # shadow call's is.
            server, _, model = answer.asked[0].partition("/")
            detail = answer.failures[0].detail
            log.warning("shadow call to %s failed: %s", answer.asked[0], detail)
            elapsed = self._perf() - started
            return ShadowCall(CloudTarget(server, model), "", None, elapsed, detail, route="lan")
        server, _, model = answer.model.partition("/")
        target = CloudTarget(server, model)
        try:
            completion = await collect(answer.generation)
        except HybridError as exc:
            log.warning("shadow call to %s failed: %s", target.qualified, exc)
            elapsed = self._perf() - started
            return ShadowCall(target, "", None, elapsed, str(exc), route="lan")
        elapsed = self._perf() - started
        done = completion.done
        return ShadowCall(
            target, completion.text, done.usage, elapsed, None, None, done.finish_reason, "lan"
        )

    async def _call(
        self, target: CloudTarget, request: GenerationRequest, held: list[Reservation]
    ) -> ShadowCall | None:
        """Reserve, then call; None when the budget refused the call (nothing sent)."""
        provider = self._providers[target.provider]
        reservation: Reservation | None = None
        if self._budget is not None:
            reserved = await self._budget.reserve(request, target)
            if isinstance(reserved, str):
                log.info("shadow call to %s not sent: %s", target.qualified, reserved)
                return None
            reservation = reserved
            held.append(reservation)
        started = self._perf()
        try:
            completion = await collect(await provider.start(request))
        except HybridError as exc:
            log.warning("shadow call to %s failed: %s", target.qualified, exc)
            elapsed = self._perf() - started
            return ShadowCall(target, "", None, elapsed, str(exc), reservation)
        elapsed = self._perf() - started
        usage = completion.done.usage
        finish = completion.done.finish_reason
        return ShadowCall(target, completion.text, usage, elapsed, None, reservation, finish)
