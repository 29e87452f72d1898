"""Private data: answer on this machine, or refuse rather than leak.

A request the privacy policy pinned (:mod:`hybrid.routing.privacy`) is started by
:meth:`PrivateRoute.start`, whatever its model name or ``X-Hybrid-Route`` header asked for:

1. on the local model; when it would have gone to the cloud without its pin and
   ``routing.privacy.allow_lan`` lets it, on a LAN server marked trusted first (too hard for
   this machine, it stays in the team's hands);
2. when the local model cannot answer it (busy, too small, not ready, or lacking the tools or
   images it needs), on a trusted LAN server (``allow_lan``, unless one was tried first), then
   in the cloud (``routing.privacy.allow_cloud``), its reason ending ``;local_unavailable``;
3. otherwise it is refused: a :class:`~hybrid.errors.PrivateDataError` (a 503
   ``private_data_kept_local``) that names the privacy reason, never the data, and the
   setting that would let it out; never the local model's own advice to send the request to
   the cloud.  A request malformed in itself is not refused as private: its own error stands.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from hybrid.errors import (
    InvalidRequestError,
    LocalBackendError,
    ModelNotReadyError,
    PrivateDataError,
    QueueFullError,
)
from hybrid.generation import GenerationRequest
from hybrid.routing.answer import Answer, RoutePlan
from hybrid.routing.lan import LanMiss, LanTier, difficulty_messages
from hybrid.routing.local_leg import LocalLeg
from hybrid.routing.policy import RouteDecision


class PrivateRoute:
    """Starts the requests the privacy policy pinned to this machine.

    Args:
        local: The local model's part of a route.
        lan: The team's LAN servers (None: none configured).
        to_lan: Let a pinned request go to trusted LAN servers (``routing.privacy.allow_lan``,
            with servers configured).
        to_cloud: Let a pinned request go to the cloud when the local model cannot serve it
            (``routing.privacy.allow_cloud``).
    """

    def __init__(
        self, local: LocalLeg, lan: LanTier | None, *, to_lan: bool, to_cloud: bool
    ) -> None:
        self._local = local
        self._lan = lan
        self._to_lan = to_lan
        self._to_cloud = to_cloud

    async def start(
        self,
        request: GenerationRequest,
        plan: RoutePlan,
        *,
        cloud: Callable[[str], Awaitable[Answer]],
    ) -> Answer:
        """Answer on this machine, or refuse rather than leak (module docstring).

        The refusal is the same whether the local model is busy, too small, or lacks what the
        request needs (tools, images): a 503 ``private_data_kept_local``, never the local
        model's own advice to send the request to the cloud.

        Args:
            request: The pinned request.
            plan: Its route.
            cloud: Starts it in the cloud with the given reason (only with ``to_cloud``).

        Returns:
            The started answer.

        Raises:
            PrivateDataError: Nowhere it may go can answer it.
            InvalidRequestError: The request itself is malformed, wherever it would go.
        """
        decision = plan.decision
        lan_tried: LanMiss | None = None
        if self._to_lan and _unpinned_target(decision) == "cloud":
            # Too hard for this machine: a trusted server keeps it in the team's hands.
            started = await self._trusted_lan(request, decision.reason, decision.score)
            if isinstance(started, Answer):
                return started
            lan_tried = started
        cause: Exception
        try:
            return await self._local.start(request, decision.reason, plan, decision.score)
        except LocalBackendError as exc:
            cause = exc
            why = f"the local model cannot answer it: {exc}"
        except InvalidRequestError as exc:
            lacking = self._local.lacking(request)
            if not lacking:
                raise  # the request itself is malformed, wherever it would go
            what = " and ".join(sorted(lacking))
            cause = exc
            why = (
                f"the local model cannot handle the {what} it needs. Remove the private data "
                f"to let a cloud model answer, or load a local model that supports {what}."
            )
        if self._to_lan and lan_tried is None:
            reason = f"{decision.reason};local_unavailable"
            started = await self._trusted_lan(request, reason, decision.score)
            if isinstance(started, Answer):
                return started
            lan_tried = started
        if self._to_cloud:
            return await cloud(f"{decision.reason};local_unavailable")
        where = "on this machine"
        if lan_tried is not None:
            where = f"on this machine and trusted LAN servers ({lan_tried.code})"
        raise PrivateDataError(
            f"the request holds private data ({decision.reason}) and stays {where}, "
            f"but {why} To let such requests go to the cloud instead, set "
            f"routing.privacy.allow_cloud = true"
            + (
                "."
                if self._lan is None or self._to_lan
                else "; to trusted LAN servers, routing.privacy.allow_lan = true."
            ),
            should_retry=isinstance(cause, QueueFullError | ModelNotReadyError),
        ) from cause

    async def _trusted_lan(
        self, request: GenerationRequest, reason: str, score: float | None
    ) -> Answer | LanMiss:
        assert self._lan is not None
        return await self._lan.start(
            request, reason, messages=difficulty_messages(request), trusted_only=True, score=score
        )


def _unpinned_target(decision: RouteDecision) -> str:
    """Where a pinned request would have gone without its pin: the first other opinion."""
    for verdict in decision.verdicts:
        if not verdict.pin and verdict.outcome != "pass":
            return verdict.outcome
    return "local"
