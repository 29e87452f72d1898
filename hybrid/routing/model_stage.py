"""The model stage of the difficulty decision: the local model's own view of an unsure prompt.

The policy chain decides first.  When the deciding verdict is the difficulty policy's and its
feature-stage score falls inside the probe's band (:class:`~hybrid.routing.difficulty.probe.
ProbeStage`), the router asks the local model for its vector of the prompt
(:meth:`~hybrid.routing.local_model.LocalAnswerer.prompt_embedding`), and the probe's score of
it, blended with the feature stage's score (:meth:`~hybrid.routing.difficulty.probe.
ProbeStage.settle`), decides instead.  Clear cases never reach the model; every other policy
(privacy, capability, length, capacity) stays ahead and unchanged.

The vector costs the prompt's prefill on the local model's queue.  When the probe keeps the
request local, the answer starts from the prompt already in the context's cache and from the
logits its vector's decode left, evaluating no prompt token again; when it escalates, that
prefill is the price of asking.  The look
is a hand-off on the local queue: background work (calibration) waits for the answer that
follows it, so that it does not evict the prompt in between; an escalation releases it.

Asked for every request instead (``routing.difficulty.model_stage = "every"``, for a probe
fitted with its threshold for it), the model stage settles every decision the difficulty
policy makes, on :meth:`~hybrid.routing.difficulty.probe.ProbeStage.every`: the feature score
and the probe's score, each read beside the recent requests most like it, averaged.  Then every
request pays its prefill before the decision (kept by the answer of one that stays local), and
it is asked only while a slot is free: a request never waits for the local model to be
decided; when every slot is busy, the feature stage decides (``probe_unavailable:busy``).

A request the feature stage keeps local outside the band can still have its vector read
(``learn``: ``routing.learn.prompt_vectors``), on the same terms: its answer starts from the
prompt already in the cache, so the vector costs a queue hand-off and the hidden state's
read, not a prefill.  It is read only while a slot is free, so that it never waits.  The
decision does not change; the ledger keeps the vector with the request's signal, so that a
refit from labelled traffic can refit the model stage too
(:mod:`hybrid.routing.calibration.probe_refit`).  When it cannot be read, there is none.

The decision then says both stages: the reason ``difficulty:0.41~probe:0.73>0.50``, the score
(``X-Hybrid-Score``) the settled one (after ``probe:``), and a ``probe`` verdict after the
difficulty one (whose score stays the feature stage's).  When the probe cannot run (the
queue is full, the model is not ready, a probe fitted for another model), the feature stage's
decision stands, with a reason that says why:
``difficulty:0.41<=0.50~probe_unavailable:queue_full``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import numpy as np

from hybrid.errors import (
    ContextLengthExceededError,
    HybridError,
    InvalidRequestError,
    ModelNotReadyError,
    QueueFullError,
)
from hybrid.generation import GenerationRequest
from hybrid.routing.choices import options_of
from hybrid.routing.difficulty.probe import ProbeStage
from hybrid.routing.local_model import LocalCapacity, Prepared
from hybrid.routing.policies.difficulty import DifficultyPolicy
from hybrid.routing.policy import RouteDecision, Router, Verdict

log = logging.getLogger("hybrid.routing")

PROBE = "probe"
"""The name of the model stage's verdict."""

Stage = Literal["feature", "model", "feature_fallback"]


@dataclass(frozen=True, eq=False)
class Settled:
    """The decision after the model stage, and the prompt vector it read, if any.

    Attributes:
        decision: The decision, settled by the probe when it applied.
        vector: The local model's vector of the prompt, when the probe read one (the ledger
            keeps it for refits from traffic).
    """

    decision: RouteDecision
    vector: np.ndarray | None = None


async def settle(
    decision: RouteDecision,
    request: GenerationRequest,
    prepared: Prepared | None,
    *,
    router: Router,
    local: LocalCapacity[Prepared],
    auto: bool,
    learn: bool = False,
) -> Settled:
    """Let the probe settle a difficulty decision in its band; otherwise change nothing.

    Args:
        decision: The policy chain's decision.
        request: The request.
        prepared: The request prepared for the local model (None: it does not fit there, or
            the model was not ready when the route was planned).
        router: The chain that decided (its difficulty policy knows the probe).
        local: The local model.
        auto: The route is the router's to choose (no model name, header or server-wide
            mode fixed it).
        learn: Read the vector of a prompt kept local outside the band too, for learning.

    Returns:
        The decision, settled by the probe when it applies (see the module docstring), and the
        vector read, if any.
    """
    if not auto or decision.pinned or prepared is None:
        return Settled(decision)
    deciding = _deciding(decision)
    if deciding is None or deciding.score is None:
        return Settled(decision)
    policy = next((p for p in router.policies if isinstance(p, DifficultyPolicy)), None)
    if policy is None or deciding.policy != policy.name:
        return Settled(decision)
    probe = policy.probe()
    if probe is None:
        return Settled(decision)
    every = policy.asks_every(probe)
    if not every and not probe.in_band(deciding.score):
        if learn and decision.target == "local":
            return Settled(decision, await _vector_to_keep(request, prepared, local, probe))
        return Settled(decision)
    if local.state != "ready":
        return Settled(_fall_back(decision, deciding, f"not_{local.state}"))
    try:
        backend = local.backend()
        if backend.embedding_size != probe.dim:
            log.warning(
                "the difficulty probe reads %d-value vectors and the local model gives %d: "
                "run `hybrid calibrate` for this model; routing on the feature stage",
                probe.dim,
                backend.embedding_size,
            )
            return Settled(_fall_back(decision, deciding, "mismatch"))
        if every and backend.queue.expected_wait_s() > 0:
            # Asked for every request, the model stage never makes one wait for a slot.
            return Settled(_fall_back(decision, deciding, "busy"))
        vector = await backend.prompt_embedding(request, prepared=prepared)
        own = probe.score(vector)
        options = options_of(request)
        if every:
            read = policy.read_probe(probe, vector, own)
            score = probe.every(deciding.score, policy.guessed(read, options))
        else:
            score = probe.settle(deciding.score, policy.guessed(own, options))
    except QueueFullError:
        return Settled(_fall_back(decision, deciding, "queue_full"))
    except ModelNotReadyError:
        return Settled(_fall_back(decision, deciding, f"not_{local.state}"))
    except (ContextLengthExceededError, InvalidRequestError):
        return Settled(_fall_back(decision, deciding, "refused"))
    except (HybridError, ValueError) as exc:
        backend.release_hand_off()
        log.warning("the difficulty probe failed on %s: %s", request.request_id, exc)
        return Settled(_fall_back(decision, deciding, "failed"))
    settled = _settled(decision, deciding, probe, score, every=every)
    if settled.target != "local":
        backend.release_hand_off()  # no answer follows on the local model
    return Settled(settled, vector)


async def _vector_to_keep(
    request: GenerationRequest,
    prepared: Prepared,
    local: LocalCapacity[Prepared],
    probe: ProbeStage,
) -> np.ndarray | None:
    """The vector of a prompt the local model is about to answer, for learning; None when the
    model cannot give it now, or when every slot is busy: then the vector would wait for one
    and delay the answer (the decision stands either way)."""
    if local.state != "ready":
        return None
    try:
        backend = local.backend()
        if backend.embedding_size != probe.dim or backend.queue.expected_wait_s() > 0:
            return None
        return await backend.prompt_embedding(request, prepared=prepared)
    except (QueueFullError, ModelNotReadyError, ContextLengthExceededError, InvalidRequestError):
        return None
    except (HybridError, ValueError) as exc:
        backend.release_hand_off()
        log.debug("no prompt vector kept for %s: %s", request.request_id, exc)
        return None


def stage_of(decision: RouteDecision) -> Stage | None:
    """Which difficulty stage decided: ``model`` (the probe), ``feature_fallback`` (the probe
    could not run), ``feature``, or None when the difficulty policy did not decide."""
    if any(v.policy == PROBE and v.outcome != "pass" for v in decision.verdicts):
        return "model"
    if any(v.policy == PROBE for v in decision.verdicts):
        return "feature_fallback"
    deciding = _deciding(decision)
    if deciding is not None and deciding.policy == DifficultyPolicy.name and not decision.pinned:
        return "feature"
    return None


def _deciding(decision: RouteDecision) -> Verdict | None:
    """The verdict that decided (the chain's first opinion), when one did."""
    return next((v for v in decision.verdicts if v.outcome != "pass"), None)


def _settled(
    decision: RouteDecision, deciding: Verdict, probe: ProbeStage, score: float, *, every: bool
) -> RouteDecision:
    escalate = probe.escalates(score, every=every)
    sign = ">" if escalate else "<="
    threshold = probe.every_threshold if every else probe.threshold
    own = f"{PROBE}:{score:.2f}{sign}{threshold:.2f}"
    verdict = Verdict(PROBE, "cloud" if escalate else "local", own, score=score)
    reason = f"{_feature_part(deciding)}~{own}"
    return RouteDecision(
        "cloud" if escalate else "local",
        (reason, *decision.reasons[1:]),
        score,
        False,
        _after(decision.verdicts, deciding, verdict),
    )


def _fall_back(decision: RouteDecision, deciding: Verdict, why: str) -> RouteDecision:
    verdict = Verdict(PROBE, "pass", f"{PROBE}:unavailable:{why}")
    reason = f"{decision.reason}~{PROBE}_unavailable:{why}"
    return RouteDecision(
        decision.target,
        (reason, *decision.reasons[1:]),
        decision.score,
        decision.pinned,
        _after(decision.verdicts, deciding, verdict),
    )


def _feature_part(verdict: Verdict) -> str:
    """``difficulty:0.41`` from ``difficulty:0.41>0.30`` (the feature threshold no longer
    decides)."""
    name = verdict.reason.split(":", 1)[0]
    return f"{name}:{verdict.score:.2f}"


def _after(verdicts: tuple[Verdict, ...], deciding: Verdict, added: Verdict) -> tuple[Verdict, ...]:
    index = verdicts.index(deciding) + 1
    return (*verdicts[:index], added, *verdicts[index:])
