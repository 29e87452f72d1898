"""Starting an answer: pick the backend for a request, start it, fail over when it fails.

The HTTP routes hand every request to :meth:`Dispatcher.start` and get back an :class:`Answer`:
the running generation plus the route, the model and the reason, which become the
``X-Hybrid-*`` response headers.

The order of things:

1. The model name and the ``X-Hybrid-Route`` header give the mode (``local``, ``cloud`` or
   ``auto``; the header also ``lan``: the team's LAN servers only, never the cloud) and the
   cloud target (:mod:`hybrid.routing.names`), and the policies decide (the plan:
   :mod:`hybrid.routing.planning`).
2. ``auto`` tries the local model first; it escalates when the prompt and requested output do
   not fit the local context (``length:9312>8192``), when the local queue is full, or when the
   local model is not ready.  (The router of a later layer replaces this rule.)  A difficulty
   score the text features are unsure of is settled by the local model's own view of the
   prompt (:mod:`hybrid.routing.model_stage`).
3. With LAN servers configured (``[[lan.servers]]``), a request escalated from this machine
   goes first to the least-loaded team server holding a model able to answer it
   (:mod:`hybrid.routing.lan`); a private one only to trusted servers, and only with
   ``routing.privacy.allow_lan``.  LAN servers with no cloud are an escalation target all the
   same: the model stage settles the band and the cascade reads local answers for them, and a
   discarded answer no server takes is the local answer as it was read (``lan:busy``).
4. The cloud target, then each ``cloud.failover`` target, is started in turn
   (:mod:`hybrid.routing.failover`); a provider retries by itself before its first byte.  A
   request the provider rejects as malformed is not failed over: it would fail everywhere.
5. When every cloud target failed, the local model answers if it can
   (``cloud_unavailable:openai:timeout;difficulty:0.82>0.52``: why, then why it was sent
   out); otherwise :class:`NoRouteError` names every failure.  A request the cascade
   escalated (``routing.cascade``) has a local answer already: when the cascade read it to its
   end, that answer is given as it was read, not generated again
   (``cloud_unavailable:openai:timeout;cascade:declined``; :mod:`hybrid.routing.cascade` says
   why a longer stream is generated again).  Every local answer, this one included, is started
   by :mod:`hybrid.routing.local_leg`.

A request with private data, pinned to this machine by the privacy policy, takes none of these
paths: :mod:`hybrid.routing.private_route` answers it on this machine or refuses it.

The local model is read through :mod:`hybrid.routing.local_model`'s narrow interface, never
through :mod:`hybrid.local`.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from hybrid.cloud.provider import CloudProvider
from hybrid.errors import (
    InvalidRequestError,
    LocalBackendError,
    ModelNotReadyError,
    NoRouteError,
    QueueFullError,
)
from hybrid.generation import GenerationRequest
from hybrid.hardware.snapshot import LiveSample
from hybrid.routing import cascade, choices
from hybrid.routing.answer import Answer, Mode, RouteOverride, RoutePlan
from hybrid.routing.failover import Failover
from hybrid.routing.lan import LanTier, difficulty_messages
from hybrid.routing.local_leg import LocalLeg
from hybrid.routing.local_model import LocalCapacity
from hybrid.routing.names import CloudTarget, ModelNames
from hybrid.routing.planning import Planner
from hybrid.routing.policy import Router
from hybrid.routing.private_route import PrivateRoute
from hybrid.routing.reserving import Reserving

log = logging.getLogger("hybrid.routing")


class Dispatcher:
    """Chooses and starts the backend for each request.

    Args:
        local: The local model (its runtime: :class:`~hybrid.local.runtime.LocalRuntime`).
        providers: The cloud providers by name.
        names: Resolves model names.
        router: The policy chain that decides ``auto`` requests (and pins private ones).
        failover: Cloud targets tried, in order, after the chosen one fails.
        local_fallback: Answer locally when every cloud target failed.
        private_to_cloud: Let a pinned (private) request go to the cloud when the local model
            cannot serve it, instead of refusing it.
        load: The latest live hardware sample, for the capacity policy.
        cascade: When set, answers kept local are read first (whole ones to their end,
            streamed ones as far as their opening) and escalated when
            :meth:`~hybrid.routing.cascade.Cascade.verdict` discards them (None: no cascade).
        budget: Reserves each cloud call's estimated cost before it is sent, refusing it at a
            spend cap (``budget:daily_cap``); None for no budget.
        lan: The team's LAN servers, tried before the cloud (None: none configured).
        private_to_lan: Let a pinned (private) request go to trusted LAN servers.
        prompt_vectors: Read the local model's vector of every prompt the router keeps local
            (the answer reuses its prefill), for learning from traffic
            (``routing.learn.prompt_vectors``).
        clock: Monotonic seconds, for the wait a client is told (:mod:`hybrid.routing.failover`).
    """

    def __init__(
        self,
        local: LocalCapacity[Any],
        providers: Mapping[str, CloudProvider],
        names: ModelNames,
        *,
        router: Router | None = None,
        failover: Sequence[CloudTarget] = (),
        local_fallback: bool = True,
        private_to_cloud: bool = False,
        load: Callable[[], LiveSample | None] = lambda: None,
        cascade: cascade.Cascade | None = None,
        budget: Reserving | None = None,
        lan: LanTier | None = None,
        private_to_lan: bool = False,
        prompt_vectors: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # A prepared prompt is opaque here: it goes back to the backend that made it.
        self._runtime = local
        self._local = LocalLeg(local, fallback=local_fallback)
        self._names = names
        self._router = router if router is not None else Router([])
        self._failover = Failover(providers, names, failover, budget, clock)
        self._cascade = cascade
        self._lan = lan
        self._private = PrivateRoute(
            self._local,
            lan,
            to_lan=private_to_lan and lan is not None,
            to_cloud=private_to_cloud,
        )
        self._planner = Planner(
            local, names, self._router, load, lan=lan is not None, prompt_vectors=prompt_vectors
        )
        self.mode: Mode = "auto"

    @property
    def names(self) -> ModelNames:
        """The model-name resolver."""
        return self._names

    @property
    def lan(self) -> LanTier | None:
        """The LAN tier, when servers are configured."""
        return self._lan

    @property
    def router(self) -> Router:
        """The policy chain."""
        return self._router

    async def start(
        self,
        request: GenerationRequest,
        *,
        model: str | None,
        override: RouteOverride | None = None,
    ) -> Answer:
        """Start answering a request: :meth:`plan` its route, then :meth:`start_planned` it.

        Args:
            request: What to generate (its ``model`` field is filled in for a cloud target).
            model: The model name the client asked for (``hybrid``, ``local``, a cloud model,
                or None).
            override: The ``X-Hybrid-Route`` header, when the client sent one.

        Returns:
            The started answer.

        Raises:
            ModelNotFoundError: The model name is unknown.
            NoRouteError: Nothing can serve the request.
            PrivateDataError: The request holds private data and the local model cannot
                answer it.
            ProviderRejectedError: The cloud provider rejected the request itself.
            LocalBackendError: The local model refused a request routed to it (context, queue).
        """
        plan = await self.plan(request, model=model, override=override)
        return await self.start_planned(request, plan)

    async def start_planned(self, request: GenerationRequest, plan: RoutePlan) -> Answer:
        """Start answering a request on the route :meth:`plan` decided for it.

        An exception raised after the cascade discarded the local answer (its escalation
        failed, or was cancelled) carries that answer, for the ledger
        (:func:`~hybrid.routing.answer.discarded_before`); one raised while the cascade read it
        (its client left) carries what was read (:func:`~hybrid.routing.answer.partial_before`).

        Args:
            request: What to generate.
            plan: Its route.

        Returns:
            The started answer.

        Raises:
            NoRouteError: Nothing can serve the request.
            PrivateDataError: The request holds private data and the local model cannot
                answer it.
            ProviderRejectedError: The cloud provider rejected the request itself.
            LocalBackendError: The local model refused a request routed to it (context, queue).
        """
        answer = await self._start(request, plan)
        counterfactual = plan.target.qualified if plan.target is not None else None
        return dataclasses.replace(
            answer,
            verdicts=plan.decision.verdicts,
            counterfactual=counterfactual,
            decided=plan.decided,
            prompt_vector=plan.prompt_vector,
        )

    async def _start(self, request: GenerationRequest, plan: RoutePlan) -> Answer:
        decision, target = plan.decision, plan.target
        if plan.mode not in ("cloud", "lan") and self._runtime.state == "unloaded":
            # A request that may be answered locally reloads an idle-unloaded model, also when
            # this one goes to the cloud meanwhile (the reload's future is kept by the runtime).
            self._runtime.wake()
        if plan.mode == "local":
            return await self._local.start(request, decision.reason, plan)
        if decision.pinned:
            return await self._private.start(
                request, plan, cloud=lambda reason: self._cloud(request, target, reason, plan)
            )
        if plan.mode == "cloud":
            return await self._cloud(request, target, decision.reason, plan)
        if plan.mode == "lan":
            return await self._lan_only(request, plan)
        if target is None and self._lan is None:
            return await self._local.only(request, plan)
        if decision.target == "cloud":
            return await self._escalate(request, target, decision.reason, plan, decision.score)
        try:
            if self.reads_answer(request, plan):
                return await self._cascaded(request, target, plan)
            return await self._local.start(request, decision.reason, plan, decision.score)
        except QueueFullError as exc:
            reason = f"capacity:queue_full:{exc.depth}"
        except ModelNotReadyError:
            reason = f"capacity:local_{self._runtime.state}"
        return await self._escalate(request, target, reason, plan, decision.score)

    @property
    def lan_names(self) -> tuple[str, ...]:
        """The names of the LAN servers a request sent off the machine is offered first."""
        return () if self._lan is None else tuple(s.name for s in self._lan.pool.servers)

    @property
    def answer_cascade(self) -> cascade.Cascade | None:
        """What discards a local answer for the cloud's (``routing.cascade``); None when off."""
        return self._cascade

    def reads_answer(self, request: GenerationRequest, plan: RoutePlan) -> bool:
        """Whether the cascade reads the local answer to ``request`` before it is sent: the
        router kept it local (no header, model name or privacy pin fixed the route), a cloud
        model or a LAN server can take it if the answer is discarded, and its output is free
        text.  An answer held to JSON (``response_format``) is not read: the grammar chooses
        among the tokens, so their probabilities measure the format it forces, not how sure
        the model was (a right answer reads 0.1-0.2), and it can neither decline nor pick an
        option."""
        decision = plan.decision
        return (
            self._cascade is not None
            and (plan.target is not None or self._lan is not None)
            and plan.mode == "auto"
            and not decision.pinned
            and decision.target == "local"
            and request.params.response_format is None
        )

    async def _escalate(
        self,
        request: GenerationRequest,
        target: CloudTarget | None,
        reason: str,
        plan: RoutePlan,
        score: float | None,
        read: cascade.Discarded | None = None,
    ) -> Answer:
        """Off this machine: a LAN server first, when any is configured, then the cloud
        (``read``: the local answer the cascade discarded, for a local fallback)."""
        if self._lan is not None:
            started = await self._lan.start(
                request, reason, messages=difficulty_messages(request), score=score
            )
            if isinstance(started, Answer):
                return started
            reason = f"{reason};{started.code}"
        if target is None:
            # No cloud to escalate to: the local model answers (the answer the cascade
            # discarded, when it read it whole), and says what it would have done.
            reason = f"local:no_cloud_configured;{reason}"
            return await self._local.only(request, plan, reason, read)
        return await self._cloud(request, target, reason, plan, score=score, read=read)

    async def plan(
        self,
        request: GenerationRequest,
        *,
        model: str | None,
        override: RouteOverride | None = None,
    ) -> RoutePlan:
        """Decide where a request goes, without starting it (``hybrid route`` shows this); see
        :meth:`hybrid.routing.planning.Planner.plan`."""
        return await self._planner.plan(
            request, model=model, override=override, server_mode=self.mode
        )

    async def _cascaded(
        self, request: GenerationRequest, target: CloudTarget | None, plan: RoutePlan
    ) -> Answer:
        """Answer locally, read the answer (whole, or a stream as far as its opening:
        :meth:`~hybrid.routing.cascade.Cascade.read`), and escalate it if the model was unsure,
        declined, or answered with none of the answers the prompt offered."""
        assert self._cascade is not None
        decision = plan.decision
        # The prepared prompt serves the request with log-probabilities as it is.
        asking = cascade.with_logprobs(request)
        local = await self._local.start(asking, decision.reason, plan, decision.score)
        keep_logprobs = request.params.top_logprobs is not None
        read = await self._cascade.read(
            local,
            stream=request.stream,
            logprobs=keep_logprobs,
            options=choices.options_of(request),
        )
        if isinstance(read, Answer):
            return read
        return await self._discarded(request, target, plan, read)

    async def _discarded(
        self,
        request: GenerationRequest,
        target: CloudTarget | None,
        plan: RoutePlan,
        read: cascade.Discarded,
    ) -> Answer:
        """The answer of a LAN server or the cloud in place of a local one the cascade
        discarded (``read``); or, when the escalation fails and the local model answers
        instead, that local answer (:meth:`~hybrid.routing.local_leg.LocalLeg.instead_of_cloud`,
        or :meth:`~hybrid.routing.local_leg.LocalLeg.only` with no cloud)."""
        leg = read.leg
        asking = [] if self._lan is None else ["the LAN servers"]
        if target is not None:
            asking.append(target.qualified)
        log.info(
            "cascade: local answer to %s discarded (%s); asking %s",
            request.request_id,
            leg.reason,
            ", then ".join(asking),
        )
        score = plan.decision.score
        try:
            answer = await self._escalate(request, target, leg.reason, plan, score, read)
        except BaseException as exc:
            # The local answer was generated all the same: the ledger records it either way.
            leg.note(exc)
            raise
        if answer.discarded is not None:
            return answer  # the discarded answer itself, given by the local fallback
        return dataclasses.replace(answer, discarded=leg)

    async def _lan_only(self, request: GenerationRequest, plan: RoutePlan) -> Answer:
        """``X-Hybrid-Route: lan``: a LAN server, never the cloud; when none takes it, the
        local model answers if ``cloud.local_fallback`` allows, as after a cloud failure.
        Otherwise the NoRouteError carries what is left of the soonest wait the servers set
        (:meth:`~hybrid.routing.lan.LanMiss.retry_after`), and is a rate limit when every
        server was rate limiting (:attr:`~hybrid.routing.lan.LanMiss.rate_limited`), as after
        the cloud's."""
        assert self._lan is not None  # plan() refuses lan without servers
        reason = plan.decision.reason
        started = await self._lan.start(request, reason, messages=difficulty_messages(request))
        if isinstance(started, Answer):
            return started
        details = [f"{f.where}: {f.detail}" for f in started.failures] or [started.code]
        if self._local.fallback:
            try:
                unavailable = f"lan_unavailable:{started.code.removeprefix('lan:')};{reason}"
                return await self._local.start(request, unavailable, plan)
            except (LocalBackendError, InvalidRequestError) as exc:
                details.append(f"local: {exc}")
        else:
            details.append("local fallback is off (cloud.local_fallback)")
        lead = "no LAN server answered the request"
        if started.rate_limited:
            lead = "every LAN server is rate limiting requests"
        tried = (*started.failures, *started.paused)
        raise NoRouteError(
            f"{lead} ({started.code}), and it was asked not to go to the cloud "
            f"(X-Hybrid-Route: lan): {'; '.join(details)}",
            failures=[f"lan:{f.code}" for f in tried] or [started.code],
            should_retry=started.code != "lan:no_model",
            retry_after=started.retry_after(),
            rate_limited=started.rate_limited,
        )

    async def _cloud(
        self,
        request: GenerationRequest,
        target: CloudTarget | None,
        reason: str,
        plan: RoutePlan,
        *,
        score: float | None = None,
        read: cascade.Discarded | None = None,
    ) -> Answer:
        # The router's count of the prompt, when it made one, is the reservation's too.
        prepared = plan.prepared
        counted = len(prepared.tokens) if prepared is not None else None
        if counted is None and plan.unfit is not None and plan.unfit.prompt_bytes is None:
            counted = plan.unfit.prompt_tokens  # a count, not a lower bound from the size
        started = await self._failover.start(
            request, target, reason, score=score, prompt_tokens=counted
        )
        if isinstance(started, Answer):
            return started
        return await self._local.instead_of_cloud(request, started, plan, reason, score, read)
