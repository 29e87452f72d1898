"""The bodies of the daemon's admin API (docs/events.md), as frozen dataclasses.

The daemon is the one that defines these shapes; the monitor only reads them.  Parsing is
lenient where that costs nothing (unknown keys are ignored, so a newer daemon that adds fields
still works) and strict where a wrong type would show a wrong figure (a string where a cost
belongs is an error, never a zero).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import TypeAdapter, ValidationError

from hybrid.errors import HybridError

MODES: tuple[str, ...] = ("auto", "local-only", "cloud-only")
"""The routing modes ``POST /v1/hybrid/mode`` accepts, in the order the ``m`` key cycles."""


class MalformedEventError(HybridError):
    """An event's body is not what docs/events.md defines for its name."""


@dataclass(frozen=True)
class Totals:
    """Counts and money over a period (``today`` or ``all_time``).

    Attributes:
        requests: Requests answered, failed or refused; ``local + lan + cloud + refused``.
        local: Of those, answered by the local model.
        cloud: Of those, sent to a cloud provider.
        errors: Of those, ended with ``status`` ``error``.
        prompt_tokens: Prompt tokens over all requests.
        completion_tokens: Completion tokens over all requests.
        cloud_spend_usd: What the cloud providers charged.
        cost_avoided_usd: What the local and LAN answers would have cost in the cloud, less
            what running them cost.
        local_share: ``local / (local + lan + cloud)``, 0 when there were none.
        refused: Of the requests, turned away before any model ran (0 from an older daemon).
        lan: Of the requests, answered by a team's LAN server (0 from an older daemon).
        off_cloud_share: ``(local + lan) / (local + lan + cloud)``, 0 when there were none
            (and from an older daemon, which has no LAN tier: read it only when ``lan``).
    """

    requests: int = 0
    local: int = 0
    cloud: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cloud_spend_usd: float = 0.0
    cost_avoided_usd: float = 0.0
    local_share: float = 0.0
    refused: int = 0
    lan: int = 0
    off_cloud_share: float = 0.0


@dataclass(frozen=True)
class Budget:
    """Cloud spend against the caps.

    Attributes:
        daily_spend_usd: Spent today (UTC).
        daily_cap_usd: The daily cap, None when not set.
        monthly_spend_usd: Spent this month (UTC).
        monthly_cap_usd: The monthly cap, None when not set.
        state: ``ok``, ``warning`` (past the soft percentage) or ``capped``.
    """

    daily_spend_usd: float = 0.0
    daily_cap_usd: float | None = None
    monthly_spend_usd: float = 0.0
    monthly_cap_usd: float | None = None
    state: str = "ok"


@dataclass(frozen=True)
class ModelInfo:
    """The local model the daemon serves.

    Attributes:
        id: Its name (``gemma-3-270m-q4_k_m``).
        state: ``ready``, ``loading`` or ``failed``, as the daemon says.
    """

    id: str
    state: str


@dataclass(frozen=True)
class LedgerInfo:
    """Where the daemon keeps its ledger.

    Attributes:
        shared: A PostgreSQL ledger (``ledger.url``) that several daemons may write; False for
            the daemon's own SQLite file.
        instance: This daemon's name in it (``ledger.instance``).
    """

    shared: bool = False
    instance: str = ""


@dataclass(frozen=True)
class Verdict:
    """One routing policy's say on a request.

    Attributes:
        policy: The policy's name (``privacy``, ``difficulty``).
        outcome: ``pass`` (no opinion), ``local`` or ``cloud``, or another word the policy uses.
        reason: The reason code it gave (``difficulty:0.21<=0.52``).
        score: Its score, when it computes one.
    """

    policy: str
    outcome: str
    reason: str
    score: float | None = None


@dataclass(frozen=True)
class RequestRecord:
    """A finished request: one ledger record (the ``request_finished`` body).

    Costs are None when ``price_known`` is false: an unknown price is never shown as 0.
    See docs/events.md for each field.
    """

    id: str
    time: float
    route: str
    api: str = "openai"
    reasons: tuple[str, ...] = ()
    verdicts: tuple[Verdict, ...] = ()
    score: float | None = None
    model_requested: str | None = None
    model: str | None = None
    provider: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    tokens_estimated: bool = False
    ttft_s: float | None = None
    latency_s: float | None = None
    status: str = "ok"
    error: str | None = None
    cloud_cost_usd: float | None = None
    counterfactual_model: str | None = None
    counterfactual_cost_usd: float | None = None
    energy_cost_usd: float | None = None
    cost_avoided_usd: float | None = None
    price_known: bool = True
    leg: str | None = None
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    decided: str | None = None

    @property
    def key(self) -> str:
        """Unique per record: the two legs of a cascade share the request's ``id``."""
        return f"{self.id}/{self.leg}" if self.leg else self.id


@dataclass(frozen=True)
class HardwareSample:
    """What the daemon's machine was doing (the ``hardware`` body).

    The GPU, VRAM and battery fields are None on a machine without them.
    """

    time: float
    cpu_percent: float | None = None
    memory_percent: float | None = None
    memory_available_bytes: int | None = None
    gpu_utilization_percent: float | None = None
    vram_used_bytes: int | None = None
    vram_total_bytes: int | None = None
    battery_percent: float | None = None
    on_battery: bool | None = None
    queue_depth: int = 0
    decode_tokens_per_s: float | None = None
    model: str | None = None
    model_state: str | None = None


@dataclass(frozen=True)
class Stats:
    """The body of ``GET /v1/hybrid/stats``.

    Attributes:
        today: Totals for today (UTC).
        all_time: Totals since the ledger began.
        budget: Spend against the caps.
        mode: The routing mode.
        model: The local model, None when the daemon did not say.
        version: The daemon's hybrid version.
        ledger: Where its ledger is kept, None from a daemon older than shared ledgers.
    """

    today: Totals
    all_time: Totals
    budget: Budget
    mode: str
    model: ModelInfo | None = None
    version: str | None = None
    ledger: LedgerInfo | None = None


@dataclass(frozen=True)
class Snapshot(Stats):
    """The first event of every stream: :class:`Stats` plus what happened just before.

    Attributes:
        recent: The last (up to 50) finished requests, newest first.
        hardware: The latest hardware sample, None when there is none yet.
    """

    recent: tuple[RequestRecord, ...] = field(default=())
    hardware: HardwareSample | None = None


@dataclass(frozen=True)
class RequestStarted:
    """A request arrived (the ``request_started`` body).

    Attributes:
        id: The id its ``request_finished`` will carry.
        time: When it arrived, Unix seconds.
        model_requested: The model the client named.
    """

    id: str
    time: float
    model_requested: str | None = None


@dataclass(frozen=True)
class ModeChange:
    """The routing mode changed (the ``mode`` body)."""

    mode: str


@dataclass(frozen=True)
class Instance:
    """One daemon writing a shared ledger: a row of the fleet view.

    Attributes:
        name: Its ``ledger.instance`` (empty for records older than instances).
        today: Its totals today (UTC): empty when it wrote nothing today.
        all_time: Its totals since the ledger began.
        last_time: When it wrote its newest record, Unix seconds; None when not known.
    """

    name: str
    today: Totals
    all_time: Totals
    last_time: float | None = None


@dataclass(frozen=True)
class Fleet:
    """The daemons that write the ledger (``GET /v1/hybrid/stats?by=instance``).

    Attributes:
        ledger: Where the ledger is kept, None from a daemon that does not say.
        instances: One per daemon, by name.
    """

    ledger: LedgerInfo | None
    instances: tuple[Instance, ...]

    @property
    def shared(self) -> bool:
        """Whether the ledger is shared (PostgreSQL): a fleet rather than one daemon."""
        return self.ledger is not None and self.ledger.shared


@dataclass(frozen=True)
class _Group:
    key: str
    totals: Totals
    last_time: float | None = None


@dataclass(frozen=True)
class _Groups:
    today: list[_Group]
    all_time: list[_Group]


@dataclass(frozen=True)
class _ByInstance:
    groups: _Groups
    ledger: LedgerInfo | None = None


DaemonEvent = Snapshot | RequestStarted | RequestRecord | HardwareSample | Budget | ModeChange
"""A parsed event of ``GET /v1/hybrid/events``."""

# Compiled once, like a regex: building a validator is the expensive part of pydantic.
_EVENTS: dict[str, TypeAdapter[Any]] = {
    "snapshot": TypeAdapter(Snapshot),
    "request_started": TypeAdapter(RequestStarted),
    "request_finished": TypeAdapter(RequestRecord),
    "hardware": TypeAdapter(HardwareSample),
    "budget": TypeAdapter(Budget),
    "mode": TypeAdapter(ModeChange),
}
_STATS: TypeAdapter[Stats] = TypeAdapter(Stats)
_BY_INSTANCE: TypeAdapter[_ByInstance] = TypeAdapter(_ByInstance)


def parse_event(name: str, data: object) -> DaemonEvent | None:
    """Read one event of ``GET /v1/hybrid/events``.

    Args:
        name: The ``event:`` field.
        data: The decoded JSON of its ``data:`` line.

    Returns:
        The event's body, or None for an event name this monitor does not know (a newer
        daemon may send more kinds; they are skipped, not an error).  Keys it does not know
        are ignored.

    Raises:
        MalformedEventError: A required key is missing or a value has the wrong type.
    """
    adapter = _EVENTS.get(name)
    if adapter is None:
        return None
    event: DaemonEvent = _validate(adapter, data, f"the {name!r} event")
    return event


def parse_stats(data: object) -> Stats:
    """Read the body of ``GET /v1/hybrid/stats``.

    Raises:
        MalformedEventError: A required key is missing or a value has the wrong type.
    """
    stats: Stats = _validate(_STATS, data, "the stats body")
    return stats


def parse_fleet(data: object) -> Fleet:
    """Read the body of ``GET /v1/hybrid/stats?by=instance``: today's and all-time groups
    merged into one :class:`Instance` per daemon, ordered by name (the unnamed last).

    Raises:
        MalformedEventError: The groups are missing, or a value has the wrong type.
    """
    body: _ByInstance = _validate(_BY_INSTANCE, data, "the stats body (by instance)")
    today = {group.key: group for group in body.groups.today}
    every = {group.key: group for group in body.groups.all_time}
    instances = []
    # By name; records from before daemons were named ('') last.
    for name in sorted(today.keys() | every.keys(), key=lambda name: (not name, name)):
        ever, now = every.get(name), today.get(name)
        last = next((g.last_time for g in (ever, now) if g and g.last_time is not None), None)
        instances.append(
            Instance(
                name=name,
                today=now.totals if now else Totals(),
                all_time=ever.totals if ever else (now.totals if now else Totals()),
                last_time=last,
            )
        )
    return Fleet(ledger=body.ledger, instances=tuple(instances))


def _validate(adapter: TypeAdapter[Any], data: object, what: str) -> Any:
    try:
        return adapter.validate_python(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the body"
        raise MalformedEventError(
            f"{what} does not match docs/events.md ({where}: {first['msg']}); the daemon and "
            f"the monitor are probably different versions of hybrid"
        ) from exc
