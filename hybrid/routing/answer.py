"""What the dispatcher hands back: a started answer, and a route decided but not started.

:class:`Answer` carries the running generation plus the route, model and reason that become the
``X-Hybrid-*`` response headers; :class:`RoutePlan` is the decision ``hybrid route`` shows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from hybrid.backend import Generation
from hybrid.errors import ContextLengthExceededError
from hybrid.routing.local_model import PreparedPrompt
from hybrid.routing.names import CloudTarget
from hybrid.routing.policy import RouteDecision, Verdict

if TYPE_CHECKING:
    import numpy as np

Route = Literal["local", "lan", "cloud"]
# What a client may pin with the X-Hybrid-Route header (``lan``: the team's LAN servers only).
RouteOverride = Literal["auto", "local", "cloud", "lan"]
ROUTE_OVERRIDES: tuple[RouteOverride, ...] = ("auto", "local", "cloud", "lan")
# Who chose a request's route: hybrid's policies, the client (a model name or X-Hybrid-Route
# that pins it), or the server-wide mode.
Decided = Literal["router", "client", "mode"]
# The server-wide routing mode (``POST /v1/hybrid/mode``).
Mode = Literal["auto", "local-only", "cloud-only"]
MODES: tuple[Mode, ...] = ("auto", "local-only", "cloud-only")


@dataclass(frozen=True)
class Answer:
    """A started answer and why it is answered where it is.

    Attributes:
        generation: The running generation; iterate it, then close it.
        route: ``local``, ``lan`` (a team's server, :mod:`hybrid.lan`) or ``cloud``.
        model: What answers: the local model's id, ``server/model`` or ``provider/model``.
        reason: A short code for ``X-Hybrid-Reason`` (``explicit:local``, ``length:9312>8192``,
            ``cloud_unavailable:openai:timeout``, ...).
        score: The difficulty score (``X-Hybrid-Score``), when the difficulty policy ran.
        verdicts: Every policy's verdict on the request.
        counterfactual: The cloud model (``provider/model``) the request would have gone to,
            which a local or LAN answer's saving is priced against; None when no cloud is
            configured.
        discarded: A cascade's local answer, read and thrown away before this one; or this
            one itself, given as read when the escalation failed (:attr:`DiscardedLeg.replayed`).
        decided: Who chose the route (see :attr:`RoutePlan.decided`).
        prompt_vector: The local model's vector of the prompt, when one was read (the model
            stage, or ``routing.learn.prompt_vectors`` on a request kept local).
    """

    generation: Generation
    route: Route
    model: str
    reason: str
    score: float | None = None
    verdicts: tuple[Verdict, ...] = ()
    counterfactual: str | None = None
    discarded: DiscardedLeg | None = None
    decided: Decided = "router"
    prompt_vector: np.ndarray | None = field(default=None, compare=False)

    def headers(self) -> dict[str, str]:
        """The ``X-Hybrid-*`` headers that describe this answer."""
        headers = {
            "X-Hybrid-Route": self.route,
            "X-Hybrid-Model": self.model,
            "X-Hybrid-Reason": self.reason,
        }
        if self.score is not None:
            headers["X-Hybrid-Score"] = f"{self.score:.3f}"
        return headers


@dataclass(frozen=True)
class DiscardedLeg:
    """A cascade's local answer that was not good enough, for the ledger.

    It travels with what replaced it: the answer that did (:attr:`Answer.discarded`), or the
    exception that ended the escalation, failed or cancelled (:meth:`note`).  When the
    escalation failed and the local model answers instead (``cloud.local_fallback``, a spend
    cap), the answer read whole is given after all (:attr:`replayed`), not generated again.

    Attributes:
        model: The local model's id.
        prompt_tokens: Its prompt.
        completion_tokens: What it generated.
        reason: Why it was discarded (``cascade:0.21<0.35``, ``cascade:declined``,
            ``cascade:opening:0.21<0.35``).
        replayed: The answer it travels with is this one, given as read when the escalation
            failed: one generation, recorded once, as that answer (no leg of its own).
    """

    model: str
    prompt_tokens: int
    completion_tokens: int
    reason: str
    replayed: bool = False

    def note(self, error: BaseException) -> None:
        """Note on the exception that ended the escalation replacing this answer that it was
        discarded first, so that the ledger records it all the same (:func:`discarded_before`).
        """
        setattr(error, _DISCARDED, self)


_DISCARDED = "hybrid_discarded_leg"


def discarded_before(error: BaseException) -> DiscardedLeg | None:
    """The cascade's local answer discarded before ``error`` ended the escalation that was to
    replace it (:meth:`DiscardedLeg.note`), or None."""
    leg = getattr(error, _DISCARDED, None)
    return leg if isinstance(leg, DiscardedLeg) else None


@dataclass(frozen=True)
class PartialAnswer:
    """A local answer the cascade was still reading when its request ended (its client left,
    the server shut down, the local model failed): what it generated until then, for the
    ledger.

    It travels with the exception that ended the read (:meth:`note`).

    Attributes:
        prompt_tokens: Its prompt, when the generation knew it.
        completion_tokens: What it generated before the read ended (the tokens read).
    """

    prompt_tokens: int | None
    completion_tokens: int

    def note(self, error: BaseException) -> None:
        """Note on the exception that ended the read what was read (:func:`partial_before`)."""
        setattr(error, _PARTIAL, self)


_PARTIAL = "hybrid_partial_answer"


def partial_before(error: BaseException) -> PartialAnswer | None:
    """The local answer the cascade was reading when ``error`` ended it
    (:meth:`PartialAnswer.note`), or None."""
    partial = getattr(error, _PARTIAL, None)
    return partial if isinstance(partial, PartialAnswer) else None


@dataclass(frozen=True)
class RoutePlan:
    """A request's route, decided but not started.

    Attributes:
        mode: ``local`` or ``cloud`` when the name or header fixed it (``lan`` when the header
            did), else ``auto``.
        target: The cloud model it escalates to (None when no cloud is configured).
        decision: The router's decision, with every policy's verdict.
        prepared: The request prepared for the local model, when it fits there.
        local_model: The local model's id.
        decided: ``client`` when the model name or the ``X-Hybrid-Route`` header fixed the
            route, ``mode`` when the server-wide mode did, else ``router`` (the policies,
            including a privacy pin that overrides a client's ``cloud``).
        unfit: The local model's refusal, when preparing the request found that it does not
            fit there; a later local attempt (a fallback) raises it instead of preparing the
            request again.
        prompt_vector: The local model's vector of the prompt, when one was read (the model
            stage, or ``routing.learn.prompt_vectors`` on a request kept local).
    """

    mode: RouteOverride
    target: CloudTarget | None
    decision: RouteDecision
    prepared: PreparedPrompt | None
    local_model: str
    decided: Decided = "router"
    unfit: ContextLengthExceededError | None = None
    prompt_vector: np.ndarray | None = field(default=None, compare=False)
