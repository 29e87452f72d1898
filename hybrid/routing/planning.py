"""Deciding where a request goes, before anything starts.

:meth:`Planner.plan` gives a :class:`~hybrid.routing.answer.RoutePlan`: the route mode (from the
model name, the ``X-Hybrid-Route`` header and the server-wide mode), the cloud target, and the
router's decision with its reasons, settled by the model stage when the difficulty score falls
in the probe's band (:mod:`hybrid.routing.model_stage`).  The dispatcher starts what the plan
says (:mod:`hybrid.routing.dispatcher`); ``hybrid route`` shows the plan without starting it.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any

from hybrid.errors import InvalidRequestError
from hybrid.generation import GenerationRequest
from hybrid.hardware.snapshot import LiveSample
from hybrid.routing import model_stage
from hybrid.routing.answer import Decided, Mode, RouteOverride, RoutePlan
from hybrid.routing.context import route_context
from hybrid.routing.local_model import LocalCapacity
from hybrid.routing.names import ModelNames
from hybrid.routing.policy import RouteDecision, Router, Verdict

LONG_TEXT_CHARS = 256 * 1024
"""Requests whose text has this many characters or more are decided on a worker thread."""


class Planner:
    """Plans each request's route (see the module docstring).

    Args:
        local: The local model (its runtime).
        names: Resolves model names.
        router: The policy chain that decides ``auto`` requests (and pins private ones).
        load: The latest live hardware sample, for the capacity policy.
        lan: Whether LAN servers are configured (``[[lan.servers]]``).
        prompt_vectors: Read the local model's vector of every prompt the router keeps local,
            for learning (:func:`~hybrid.routing.model_stage.settle`'s ``learn``).
    """

    def __init__(
        self,
        local: LocalCapacity[Any],
        names: ModelNames,
        router: Router,
        load: Callable[[], LiveSample | None],
        *,
        lan: bool,
        prompt_vectors: bool = False,
    ) -> None:
        self._runtime = local
        self._names = names
        self._router = router
        self._load = load
        self._lan = lan
        self._prompt_vectors = prompt_vectors

    async def plan(
        self,
        request: GenerationRequest,
        *,
        model: str | None,
        override: RouteOverride | None = None,
        server_mode: Mode = "auto",
    ) -> RoutePlan:
        """Decide where a request goes, without starting it (``hybrid route`` shows this).

        Args:
            request: The request.
            model: The model name the client asked for.
            override: The ``X-Hybrid-Route`` header, when the client sent one.
            server_mode: The server-wide routing mode (``local-only`` and ``cloud-only`` override
                the client and the router, but not the privacy policy's pin).

        Returns:
            The mode, the cloud target and the router's decision.

        Raises:
            ModelNotFoundError: The model name is unknown.
            InvalidRequestError: ``lan`` was asked for and no LAN server is configured.
        """
        resolved = self._names.resolve(model, local_id=self._runtime.model_id)
        mode = override or resolved.mode
        if mode == "lan" and not self._lan:
            raise InvalidRequestError(
                "X-Hybrid-Route: lan asks for the team's LAN servers, and none is configured: "
                "add them under [[lan.servers]] in the config, or send auto, local or cloud",
                param="X-Hybrid-Route",
            )
        target = resolved.target or self._names.default_target
        fixed_by = "explicit"
        decided: Decided = "router" if mode == "auto" else "client"
        if server_mode == "local-only" or (server_mode == "cloud-only" and mode == "auto"):
            mode = "local" if server_mode == "local-only" else "cloud"
            fixed_by = decided = "mode"
        if mode == "local":
            code = "mode:local-only" if fixed_by == "mode" else "explicit:local"
            explicit = Verdict(fixed_by, "local", code)
            decision = RouteDecision("local", (explicit.reason,), verdicts=(explicit,))
            return RoutePlan(mode, target, decision, None, self._runtime.model_id, decided)
        # An explicit cloud or LAN route only needs the privacy check, which reads text: no
        # tokens.
        off_machine = mode in ("cloud", "lan")
        context, prepared, unfit = await route_context(
            self._runtime, request, count_tokens=not off_machine, load=self._load()
        )
        decide = functools.partial(self._router.decide, context, pins_only=off_machine)
        # The privacy scan reads the whole text (about 8 ms a megabyte): a long one is read on a
        # worker thread, so that it does not hold the event loop.
        decision = (
            decide() if len(context.text) < LONG_TEXT_CHARS else await asyncio.to_thread(decide)
        )
        # A difficulty score in the probe's band is settled by the local model's own view.
        settled = await model_stage.settle(
            decision,
            request,
            prepared,
            router=self._router,
            local=self._runtime,
            # Something off this machine can take it: a cloud model, or a LAN server.
            auto=mode == "auto" and (target is not None or self._lan),
            learn=self._prompt_vectors,
        )
        decision = settled.decision
        if off_machine and not decision.pinned:
            code = "mode:cloud-only" if fixed_by == "mode" else f"explicit:{mode}"
            explicit = Verdict(fixed_by, "cloud", code)
            decision = RouteDecision(
                "cloud", (explicit.reason,), decision.score, False, (explicit, *decision.verdicts)
            )
        elif target is None and decision.target == "cloud" and not self._lan:
            # Nothing to escalate to: the local model answers, and says what it would have done.
            reasons = ("local:no_cloud_configured", *decision.reasons)
            decision = RouteDecision("local", reasons, decision.score, False, decision.verdicts)
        if decision.pinned:
            decided = "router"  # a policy (privacy) overrode what the client or mode asked
        return RoutePlan(
            mode,
            target,
            decision,
            prepared,
            self._runtime.model_id,
            decided,
            unfit,
            settled.vector,
        )
