"""One ledger record per request: what was asked, where it went and why, what it cost.

The fields are exactly the keys of the ``request_finished`` event (``docs/events.md``), which
sends a record as stored.  Costs are in USD; a cost is None (``null``), never 0, when the model
that answered (or the cloud model a local answer is compared with) has no price.

A cascade that escalated writes two records with the same ``id``: the discarded local attempt
(``leg="cascade_local"``: its tokens and energy) and the answer (``leg="cascade_cloud"``, also
when a LAN server gave it: its ``route`` says ``lan``; the name is kept so that every version of
a fleet reads the other's records), or the escalation's failure or cancellation (its
``status``).  A cascade whose local answer stood writes one ordinary
local record (``leg=None``), and so does one whose escalation failed and whose local answer,
already read, was given after all (local fallback).

A local answer picked for shadow sampling (``routing.learn.shadow_rate``) is also sent to the
cloud after the client has its answer; that call is recorded as ``leg="shadow"`` (and a judge's
call, when one grades the two answers, as ``leg="shadow_judge"``), with the request's ``id``:
its cost counts like any cloud call, but it is not a request of its own.  The other way round
(``routing.learn.local_shadow_rate``), a request the router escalated may also be answered by
the local model in the background; that answer is recorded as ``leg="local_shadow"`` (route
``local``, the local model's tokens and energy): it answered no client, so it avoided no cloud
call (its cost avoided is minus its energy, as a discarded cascade leg's) and is not a request
of its own either.

A request turned away before any model ran (an invalid request, an unknown model, a full
queue, a spend cap) is recorded with ``route="none"`` and ``status="refused"``: it is neither a
local nor a cloud answer, and it has no tokens, costs or savings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, dataclass, fields
from typing import Any, Literal, get_args

Route = Literal["local", "lan", "cloud", "none"]
Status = Literal["ok", "error", "cancelled", "refused"]
Leg = Literal["cascade_local", "cascade_cloud", "shadow", "shadow_judge", "local_shadow"]
Decided = Literal["router", "client", "mode"]

ROUTES: tuple[str, ...] = get_args(Route)
STATUSES: tuple[str, ...] = get_args(Status)
LEGS: tuple[str, ...] = get_args(Leg)
NOT_REQUESTS: tuple[str, ...] = ("cascade_local", "shadow", "shadow_judge", "local_shadow")
"""The legs that are not requests of their own: a cascade's discarded local answer, the cloud
calls of shadow sampling and the local shadow answers (their cost counts, the request was
counted once already)."""
DECIDERS: tuple[str, ...] = get_args(Decided)


@dataclass(frozen=True)
class VerdictRecord:
    """One routing policy's verdict, as recorded.

    Attributes:
        policy: The policy's name (``difficulty``).
        outcome: What it said (``local``, ``cloud``, ``pass``).
        reason: Its reason code (``difficulty:0.21<=0.52``).
        score: Its score, when it computes one.
    """

    policy: str
    outcome: str
    reason: str
    score: float | None

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON object of this verdict."""
        return {
            "policy": self.policy,
            "outcome": self.outcome,
            "reason": self.reason,
            "score": self.score,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> VerdictRecord:
        """Read a verdict from its JSON object.

        Raises:
            ValueError: A key is missing.
        """
        try:
            score = data["score"]
            return cls(
                policy=str(data["policy"]),
                outcome=str(data["outcome"]),
                reason=str(data["reason"]),
                score=None if score is None else float(score),
            )
        except KeyError as exc:
            raise ValueError(f"a verdict needs the key {exc}") from exc


@dataclass(frozen=True)
class LedgerRecord:
    """What happened to one request (or one leg of a cascade).

    Attributes:
        id: The request's id (shared by the two legs of a cascade).
        time: When the request arrived, Unix seconds.
        api: The wire API it came in on: ``openai`` or ``anthropic``.
        route: ``local``, ``lan`` (a team's server) or ``cloud``: where it was answered;
            ``none`` for a refused request.
        reasons: The routing reasons, deciding one first.
        verdicts: Every policy's verdict.
        score: The difficulty score, when one was computed.
        model_requested: The model name the client sent.
        model: The model that answered.
        provider: ``local``, the LAN server's name or the cloud provider's name.
        prompt_tokens: Input tokens.
        completion_tokens: Output tokens (what was generated, also when cancelled).
        tokens_estimated: The counts come from the local tokenizer because a cloud stream
            ended before the provider reported usage (or the request failed before any
            answer); a text of over 4,096 characters is counted by its size instead, a token
            per four bytes.
        ttft_s: Seconds to the first token, or None when there was none.
        latency_s: Seconds from arrival to the last byte.
        status: ``ok``, ``error``, ``cancelled`` (the client went away; for a
            ``local_shadow`` leg, a client request stopped it) or ``refused`` (turned away
            before any model ran; always with ``route="none"``).
        error: The error message, for ``status="error"``.
        cloud_cost_usd: What the cloud charged (0.0 for a local or LAN answer), None when
            unpriced.
        counterfactual_model: For a local or LAN answer, the cloud model it is compared with.
        counterfactual_cost_usd: What that cloud model would have charged, None when unpriced.
        energy_cost_usd: What running the answer on owned hardware cost: electricity for a
            local answer, ``lan.usd_per_1m_tokens`` for a LAN answer.
        cost_avoided_usd: Counterfactual cost minus ``energy_cost_usd``, None when unpriced.
        price_known: False when a model that needed a price had none (or had no rate for
            the prompt-cache tokens the answer used).
        leg: None, or which leg of a cascade (``cascade_local``, ``cascade_cloud``) or of shadow
            sampling (``shadow``, ``shadow_judge``, ``local_shadow``) this is.
        cache_read_tokens: Of ``prompt_tokens``, those the cloud provider read from its prompt
            cache (priced at the cached-input rate), or, for a local answer, those its slot's
            KV cache supplied (prefill saved; the cost avoided still prices them all).
        cache_write_tokens: Of ``prompt_tokens``, those the cloud provider wrote to its prompt
            cache (priced at the cache-write rate).
        decided: Who chose the route: ``router`` (hybrid's policies), ``client`` (the model
            name or the ``X-Hybrid-Route`` header pinned it) or ``mode`` (the server-wide
            routing mode); None for a request that was refused or failed before a route was
            taken.
        instance: The daemon that answered (``ledger.instance``, the host name by default),
            so that records from a fleet sharing a ledger can be told apart; ``''`` in records
            written before schema version 6.
    """

    id: str
    time: float
    api: str
    route: Route
    reasons: tuple[str, ...]
    verdicts: tuple[VerdictRecord, ...]
    score: float | None
    model_requested: str | None
    model: str
    provider: str
    prompt_tokens: int
    completion_tokens: int
    tokens_estimated: bool
    ttft_s: float | None
    latency_s: float
    status: Status
    error: str | None
    cloud_cost_usd: float | None
    counterfactual_model: str | None
    counterfactual_cost_usd: float | None
    energy_cost_usd: float | None
    cost_avoided_usd: float | None
    price_known: bool
    leg: Leg | None
    # Added in schema version 3; records written before it lack them.
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    decided: Decided | None = None
    # Added in schema version 6.
    instance: str = ""

    def __post_init__(self) -> None:
        """Reject values outside the documented sets, so a typo never reaches the ledger.

        Raises:
            ValueError: ``route``, ``status``, ``leg`` or ``decided`` is not one of its
                documented values, or only one of ``route`` and ``status`` says refused.
        """
        if self.route not in ROUTES:
            raise ValueError(f"route must be one of {ROUTES}, not {self.route!r}")
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, not {self.status!r}")
        if (self.route == "none") != (self.status == "refused"):
            raise ValueError(
                f"a refused request has route 'none' and only it does "
                f"(route {self.route!r}, status {self.status!r})"
            )
        if self.leg is not None and self.leg not in LEGS:
            raise ValueError(f"leg must be None or one of {LEGS}, not {self.leg!r}")
        if self.decided is not None and self.decided not in DECIDERS:
            raise ValueError(f"decided must be None or one of {DECIDERS}, not {self.decided!r}")

    @property
    def is_request(self) -> bool:
        """Whether this record counts as a request: every record but a discarded cascade leg,
        a shadow call and a local shadow answer."""
        return self.leg not in NOT_REQUESTS

    def to_dict(self) -> dict[str, Any]:
        """Return the record as the ``request_finished`` JSON object (lists for tuples)."""
        data = {name: getattr(self, name) for name in _FIELD_NAMES}
        data["reasons"] = list(self.reasons)
        data["verdicts"] = [verdict.to_dict() for verdict in self.verdicts]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LedgerRecord:
        """Read a record from its JSON object (as :meth:`to_dict` writes it).

        Args:
            data: The object; keys beyond the record's fields are ignored, and the keys added
                in schema versions 3 and 6 take their defaults when absent (an older server's
                record).

        Raises:
            ValueError: A key is missing or a value is out of its documented set.
        """
        missing = [name for name in _REQUIRED if name not in data]
        if missing:
            raise ValueError(f"a ledger record needs the keys {', '.join(missing)}")
        values = {name: data[name] for name in _FIELD_NAMES if name in data}
        values["reasons"] = tuple(str(reason) for reason in data["reasons"])
        values["verdicts"] = tuple(VerdictRecord.from_dict(v) for v in data["verdicts"])
        values["tokens_estimated"] = bool(data["tokens_estimated"])
        values["price_known"] = bool(data["price_known"])
        return cls(**values)


# Every record is turned into a dict at least once on the request path: look the names up once.
_FIELD_NAMES = tuple(field.name for field in fields(LedgerRecord))
_REQUIRED = tuple(field.name for field in fields(LedgerRecord) if field.default is MISSING)
