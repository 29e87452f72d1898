"""Answering on this machine: the local model's part of a route, and the reason it gives.

The dispatcher (:mod:`hybrid.routing.dispatcher`) starts every local answer through
:class:`LocalLeg`, whichever path led there:

- a request routed to the local model (:meth:`LocalLeg.start`): an idle-unloaded model is
  reloaded first, a request found too long when its route was planned raises that error (it
  is not tokenized a second time), and an answer with no reason of its own says why it fits
  (``length:812<=8192``);
- ``auto`` with no cloud configured (:meth:`LocalLeg.only`): the local model's own errors are
  the answer, a context error naming the cloud settings that would have taken the request;
- the local fallback after every cloud target failed (:meth:`LocalLeg.instead_of_cloud`):
  allowed by ``cloud.local_fallback`` (a spend cap falls back either way), its reason says why,
  then why the request was sent out (``cloud_unavailable:openai:timeout;difficulty:0.82>0.52``),
  and a local answer the cascade read whole and discarded is given as it was read, not
  generated again.

The local model is read through :mod:`hybrid.routing.local_model`'s narrow interface, never
through :mod:`hybrid.local`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from hybrid.backend import ReplayGeneration
from hybrid.errors import ContextLengthExceededError, InvalidRequestError, LocalBackendError
from hybrid.generation import GenerationRequest
from hybrid.routing import cascade
from hybrid.routing.answer import Answer, RoutePlan
from hybrid.routing.failover import NO_PROVIDER_HINT, CloudFailures
from hybrid.routing.local_model import LocalCapacity, SizedGeneration


class LocalLeg:
    """Starts answers on the local model.

    Args:
        local: The local model (its runtime: :class:`~hybrid.local.runtime.LocalRuntime`).
        fallback: Answer locally when every cloud target failed (``cloud.local_fallback``).
    """

    def __init__(self, local: LocalCapacity[Any], *, fallback: bool) -> None:
        # A prepared prompt is opaque here: it goes back to the backend that made it.
        self._runtime = local
        self._fallback = fallback

    @property
    def fallback(self) -> bool:
        """Whether the local model answers when what was asked for instead failed."""
        return self._fallback

    def lacking(self, request: GenerationRequest) -> frozenset[str]:
        """What the request needs that the local model cannot do (``tools``, ``images``)."""
        return request.needs - self._runtime.backend().supports

    async def start(
        self,
        request: GenerationRequest,
        reason: str | None,
        plan: RoutePlan,
        score: float | None = None,
    ) -> Answer:
        """Start the local model's answer.

        Args:
            request: The request.
            reason: The answer's reason; None: ``local``, or why the request fits the context.
            plan: Its route (the prompt prepared when it was planned, or why it did not fit).
            score: The difficulty score, for the answer.

        Returns:
            The started answer (route ``local``).

        Raises:
            LocalBackendError: The local model cannot take the request (context, queue, not
                ready).
            InvalidRequestError: The request is malformed, or needs what the model lacks.
        """
        if self._runtime.state == "unloaded":
            await self._runtime.wake()  # the reload; backend() then says if it failed
        backend = self._runtime.backend()
        if plan.unfit is not None:
            raise plan.unfit  # found when the route was planned: not tokenized a second time
        generation = await backend.start(request, prepared=plan.prepared)
        if reason is None:
            reason = "local"
            if isinstance(generation, SizedGeneration):
                needed = generation.prompt_tokens + generation.max_tokens
                reason = f"length:{needed}<={backend.context_length}"
        return Answer(generation, "local", backend.model_id, reason, score)

    async def only(
        self,
        request: GenerationRequest,
        plan: RoutePlan,
        reason: str | None = None,
        read: cascade.Discarded | None = None,
    ) -> Answer:
        """``auto`` with no cloud configured: the local model's own errors are the answer.

        Args:
            request: The request.
            plan: Its route.
            reason: The answer's reason (default: the decision's own).
            read: A local answer the cascade discarded for the LAN servers, none of which took
                it: given as it was read when it was read whole, not generated a second time.
        """
        decision = plan.decision
        # "local:no_cloud_configured;difficulty:0.82>0.52": what decided, and what it would have.
        if reason is None and decision.reason != "policies:pass":
            reason = ";".join(decision.reasons[:2])
        replay = _replayed(read, reason or decision.reason, decision.score)
        if replay is not None:
            return replay
        try:
            return await self.start(request, reason, plan, decision.score)
        except ContextLengthExceededError as exc:
            raise ContextLengthExceededError(
                prompt_tokens=exc.prompt_tokens,
                max_tokens=exc.max_tokens,
                context_length=exc.context_length,
                note=f"No cloud provider is configured to take it: {NO_PROVIDER_HINT}.",
                prompt_bytes=exc.prompt_bytes,
            ) from None

    async def instead_of_cloud(
        self,
        request: GenerationRequest,
        failed: CloudFailures,
        plan: RoutePlan,
        reason: str,
        score: float | None,
        read: cascade.Discarded | None = None,
    ) -> Answer:
        """The local answer given instead of the cloud's. Its reason says why, then why the
        request was sent out (``cloud_unavailable:openai:timeout;difficulty:0.82>0.52``), so
        the ledger and ``hybrid stats`` keep what the router decided; the score is kept too.

        A local answer the cascade read whole and discarded (``read``) is that answer, given
        as it was read: the local model does not generate it a second time.

        Raises:
            HybridError: The fallback is off, or the local model cannot take the request
                either (:meth:`~hybrid.routing.failover.CloudFailures.error`: every failure).
        """
        # A spend cap sends requests to the local model whether or not fallback is on: the cap
        # is the user's own rule, and local is what it asks for.
        if self._fallback or failed.capped is not None:
            instead = failed.fallback_reason
            if reason and reason != "policies:pass":
                instead = f"{instead};{reason}"
            replay = _replayed(read, instead, score)
            if replay is not None:
                return replay
            try:
                return await self.start(request, instead, plan, score)
            except (LocalBackendError, InvalidRequestError) as exc:
                # The local model cannot take it either (too long, busy, or it needs tools or
                # images): the client hears about the cloud failures and this, not only this.
                raise failed.error(f"local: {exc}") from None
        raise failed.error("local fallback is off (cloud.local_fallback)")


def _replayed(read: cascade.Discarded | None, reason: str, score: float | None) -> Answer | None:
    """The local answer the cascade read whole and discarded, given as it was read (None: no
    answer was discarded, or only a stream's opening was read)."""
    if read is None or read.whole is None:
        return None
    leg = dataclasses.replace(read.leg, replayed=True)
    return Answer(ReplayGeneration(read.whole), "local", leg.model, reason, score, discarded=leg)
