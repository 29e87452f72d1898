"""``DashboardState``: folds the daemon's events into the figures the monitor shows.

No Textual and no I/O here: events go in with the time they arrived, a frozen
:class:`Dashboard` comes out, so every figure is tested with a made-up clock.

Where the figures come from:

- totals (today, all time), budget, mode, model: the ``snapshot`` that starts every stream,
  then kept up to date by ``request_finished``, ``budget`` and ``mode`` events.  A reconnect
  brings a new snapshot, which replaces them, so nothing missed while away is lost.
- requests per minute and latency: ``request_finished`` times, bucketed by minute over the
  last :data:`CHART_MINUTES`.
- decode speed and the hardware panel: ``hardware`` samples.
- the request log: ``request_finished`` bodies, newest first, at most :data:`LOG_SIZE`.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime

from hybrid.monitor.wire import (
    Budget,
    DaemonEvent,
    HardwareSample,
    LedgerInfo,
    MalformedEventError,
    ModeChange,
    ModelInfo,
    RequestRecord,
    RequestStarted,
    Snapshot,
    Totals,
    parse_event,
)

# Legs that are not requests of their own (docs/events.md): a cascade's discarded local answer,
# the cloud calls of shadow sampling and the local shadow answers.
NOT_REQUESTS = ("cascade_local", "shadow", "shadow_judge", "local_shadow")

LOG_SIZE = 500
"""Finished requests the log keeps; older ones drop off the end."""
CHART_MINUTES = 30
"""Minutes the per-minute charts span, the current (partial) minute last."""
LATENCY_WINDOW_MINUTES = 5
"""Minutes the headline p50/p95 latency covers."""
DECODE_WINDOW_S = 10 * 60.0
"""Seconds of hardware samples the decode-speed chart spans."""
# A request_started whose request_finished never came (the daemon restarted between them)
# stops counting as in flight after this long.
IN_FLIGHT_EXPIRY_S = 15 * 60.0


@dataclass(frozen=True)
class Dashboard:
    """Everything the monitor shows, at one instant.

    Series are oldest first and end at the current minute; a minute without requests is 0.

    Attributes:
        synced: A snapshot has arrived; before that the figures are empty, not zero.
        today: Totals for today (UTC).
        all_time: Totals since the daemon's ledger began.
        budget: Cloud spend against the caps.
        mode: The routing mode, None before the first snapshot.
        model: The local model, from the latest hardware sample or the snapshot.
        version: The daemon's version.
        local_per_minute: Requests answered locally, per minute.
        cloud_per_minute: Requests sent to the cloud, per minute.
        lan_per_minute: Requests answered by a team's LAN server, per minute.
        latency_p50_s: Median latency of the requests that finished well over the last
            :data:`LATENCY_WINDOW_MINUTES`; None without any.
        latency_p95_s: Their 95th percentile.
        latency_p50_per_minute: The median per minute (0 for a minute without requests).
        latency_p95_per_minute: The 95th percentile per minute.
        decode_tokens_per_s: The local model's decode speed over the last
            :data:`DECODE_WINDOW_S`, one value per hardware sample.
        hardware: The latest hardware sample.
        in_flight: Requests started and not yet finished.
        log: Finished requests, newest first.
        malformed_events: Events that did not match docs/events.md and were skipped.
        problem: What was wrong with the last of those.
        ledger: Where the daemon keeps its ledger (shared by a fleet or its own), None
            before the first snapshot or from a daemon that does not say.
    """

    synced: bool = False
    today: Totals = field(default_factory=Totals)
    all_time: Totals = field(default_factory=Totals)
    budget: Budget = field(default_factory=Budget)
    mode: str | None = None
    model: ModelInfo | None = None
    version: str | None = None
    local_per_minute: tuple[int, ...] = ()
    cloud_per_minute: tuple[int, ...] = ()
    lan_per_minute: tuple[int, ...] = ()
    latency_p50_s: float | None = None
    latency_p95_s: float | None = None
    latency_p50_per_minute: tuple[float, ...] = ()
    latency_p95_per_minute: tuple[float, ...] = ()
    decode_tokens_per_s: tuple[float, ...] = ()
    hardware: HardwareSample | None = None
    in_flight: int = 0
    log: tuple[RequestRecord, ...] = ()
    malformed_events: int = 0
    problem: str | None = None
    ledger: LedgerInfo | None = None

    @property
    def shared_ledger(self) -> bool:
        """Whether the daemon writes a ledger that other daemons share (``ledger.url``)."""
        return self.ledger is not None and self.ledger.shared


@dataclass
class _Minute:
    """What finished in one minute (mutable: filled as events arrive)."""

    local: int = 0
    cloud: int = 0
    lan: int = 0
    latencies: list[float] = field(default_factory=list)


class DashboardState:
    """Accumulates events; :meth:`view` turns them into a :class:`Dashboard`.

    Usage::

        state = DashboardState()
        state.receive("snapshot", data, now=clock())
        dashboard = state.view(now=clock())

    ``now`` is always the caller's clock (Unix seconds), never read here.
    """

    def __init__(self) -> None:
        self._snapshot: Snapshot | None = None
        self._today = Totals()
        self._all_time = Totals()
        self._today_date: date | None = None
        self._budget = Budget()
        self._mode: str | None = None
        self._hardware: HardwareSample | None = None
        self._log: deque[RequestRecord] = deque(maxlen=LOG_SIZE)
        self._minutes: dict[int, _Minute] = {}
        self._counted: set[str] = set()
        self._decode: deque[tuple[float, float]] = deque()
        self._in_flight: dict[str, float] = {}
        self._malformed = 0
        self._problem: str | None = None

    def receive(self, name: str, data: object, *, now: float) -> None:
        """Fold in one event as it came off the stream.

        An event that does not match docs/events.md is counted and described in
        :attr:`Dashboard.problem`, not raised: one bad event must not blank the screen.
        Unknown event names are ignored.

        Args:
            name: The event's name.
            data: Its decoded JSON.
            now: When it arrived.
        """
        try:
            event = parse_event(name, data)
        except MalformedEventError as exc:
            self._malformed += 1
            self._problem = str(exc)
            return
        if event is not None:
            self.apply(event, now=now)

    def apply(self, event: DaemonEvent, *, now: float) -> None:
        """Fold in one parsed event.

        Args:
            event: The event's body.
            now: When it arrived.
        """
        if isinstance(event, Snapshot):
            self._apply_snapshot(event, now)
        elif isinstance(event, RequestRecord):
            self._apply_finished(event, now)
        elif isinstance(event, RequestStarted):
            self._in_flight[event.id] = now
        elif isinstance(event, HardwareSample):
            self._apply_hardware(event)
        elif isinstance(event, Budget):
            self._budget = event
        elif isinstance(event, ModeChange):
            self._mode = event.mode

    def set_mode(self, mode: str) -> None:
        """Record a mode the daemon confirmed to a ``POST /v1/hybrid/mode``."""
        self._mode = mode

    def view(self, *, now: float) -> Dashboard:
        """The figures as of ``now``.

        Args:
            now: The current time; it decides which minutes the charts cover and whether
                "today" has rolled over to a new UTC day since the last event.

        Returns:
            The dashboard; every field is a copy, safe to keep.  What no chart can show any
            more (minutes and samples older than their window) is forgotten here, so ``now``
            should not go backwards.
        """
        self._forget_before(now)
        current = int(now // 60)
        minutes = range(current - CHART_MINUTES + 1, current + 1)
        buckets = [self._minutes.get(minute) for minute in minutes]
        recent: list[float] = []
        for minute in range(current - LATENCY_WINDOW_MINUTES + 1, current + 1):
            if (bucket := self._minutes.get(minute)) is not None:
                recent.extend(bucket.latencies)
        today = self._today if self._today_date == _utc_date(now) else Totals()
        snapshot = self._snapshot
        hardware = self._hardware
        model = snapshot.model if snapshot is not None else None
        if hardware is not None and hardware.model is not None:
            model = ModelInfo(hardware.model, hardware.model_state or "ready")
        return Dashboard(
            synced=snapshot is not None,
            today=today,
            all_time=self._all_time,
            budget=self._budget,
            mode=self._mode,
            model=model,
            version=snapshot.version if snapshot is not None else None,
            local_per_minute=tuple(b.local if b else 0 for b in buckets),
            cloud_per_minute=tuple(b.cloud if b else 0 for b in buckets),
            lan_per_minute=tuple(b.lan if b else 0 for b in buckets),
            latency_p50_s=percentile(recent, 0.5),
            latency_p95_s=percentile(recent, 0.95),
            latency_p50_per_minute=tuple(_series(buckets, 0.5)),
            latency_p95_per_minute=tuple(_series(buckets, 0.95)),
            decode_tokens_per_s=tuple(value for _, value in self._decode),
            hardware=hardware,
            in_flight=len(self._in_flight),
            log=tuple(self._log),
            malformed_events=self._malformed,
            problem=self._problem,
            ledger=snapshot.ledger if snapshot is not None else None,
        )

    def _apply_snapshot(self, snapshot: Snapshot, now: float) -> None:
        # The snapshot is the daemon's own account: it replaces whatever was folded so far.
        self._snapshot = snapshot
        self._today = snapshot.today
        self._today_date = _utc_date(now)
        self._all_time = snapshot.all_time
        self._budget = snapshot.budget
        self._mode = snapshot.mode
        if snapshot.hardware is not None:
            self._apply_hardware(snapshot.hardware)
        # Whatever was in flight before a reconnect finished (or died) while we were away.
        self._in_flight.clear()
        # `recent` overlaps what the log already holds when this is a reconnect; what is new
        # finished while the monitor was away, so it is newer than everything logged.
        known = {record.key for record in self._log}
        missed = [record for record in snapshot.recent if record.key not in known]
        for record in reversed(missed):
            self._log.appendleft(record)
            self._count(record)

    def _apply_hardware(self, sample: HardwareSample) -> None:
        self._hardware = sample
        # A reconnect's snapshot repeats the last sample the stream already delivered.
        fresh = not self._decode or sample.time > self._decode[-1][0]
        if sample.decode_tokens_per_s is not None and fresh:
            self._decode.append((sample.time, sample.decode_tokens_per_s))

    def _apply_finished(self, record: RequestRecord, now: float) -> None:
        self._in_flight.pop(record.id, None)
        if self._today_date != (day := _utc_date(now)):
            # The first request of a new UTC day: the daemon's "today" started over too.
            self._today = Totals()
            self._today_date = day
        self._today = _add(self._today, record)
        self._all_time = _add(self._all_time, record)
        self._log.appendleft(record)
        self._count(record)

    def _count(self, record: RequestRecord) -> None:
        """Add a record to its minute's chart bucket, once."""
        if record.key in self._counted:
            return
        self._counted.add(record.key)
        bucket = self._minutes.setdefault(int(record.time // 60), _Minute())
        if record.route == "cloud":
            bucket.cloud += 1
        elif record.route == "local":
            bucket.local += 1
        elif record.route == "lan":
            bucket.lan += 1
        if record.status == "ok" and record.latency_s is not None:
            bucket.latencies.append(record.latency_s)

    def _forget_before(self, now: float) -> None:
        """Drop what no chart can show any more, so a week-long session stays small."""
        oldest_minute = int(now // 60) - CHART_MINUTES + 1
        for minute in [m for m in self._minutes if m < oldest_minute]:
            del self._minutes[minute]
        if not self._minutes:
            self._counted.clear()
        elif len(self._counted) > 4 * LOG_SIZE:
            # Only ids still in a chart's window or in the log can come back in a snapshot.
            self._counted = {r.key for r in self._log if int(r.time // 60) >= oldest_minute}
        while self._decode and self._decode[0][0] < now - DECODE_WINDOW_S:
            self._decode.popleft()
        for request_id, started in list(self._in_flight.items()):
            if started < now - IN_FLIGHT_EXPIRY_S:
                del self._in_flight[request_id]


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile of ``values`` by linear interpolation (numpy's default).

    Args:
        values: The sample, in any order.
        q: The quantile, 0..1 (0.5 is the median).

    Returns:
        The quantile, None for an empty sample.
    """
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _series(buckets: Sequence[_Minute | None], q: float) -> list[float]:
    return [
        (percentile(b.latencies, q) or 0.0) if b is not None and b.latencies else 0.0
        for b in buckets
    ]


def _add(totals: Totals, record: RequestRecord) -> Totals:
    """Totals with one more finished request, counted as the daemon's ledger counts it.

    A cascade's discarded local leg is not a request of its own (its tokens and energy still
    count); the cloud leg that replaced it is.  A shadow call (``shadow``, ``shadow_judge``)
    is not a request either; its cloud spend counts.  Nor is a local shadow answer
    (``local_shadow``); its tokens count, and its energy is taken off the cost avoided.  A
    refused request (route ``none``) is a request but answered by no model, so the local share
    is ``local / (local + lan + cloud)`` and the share kept off the cloud
    ``(local + lan) / (local + lan + cloud)``.  A LAN answer's
    cost avoided counts like a local one's; its ``cloud_cost_usd`` is 0, never cloud spend.
    """
    counts = record.leg not in NOT_REQUESTS
    local = totals.local + (counts and record.route == "local")
    lan = totals.lan + (counts and record.route == "lan")
    cloud = totals.cloud + (counts and record.route == "cloud")
    answered = local + lan + cloud
    return replace(
        totals,
        requests=totals.requests + counts,
        local=local,
        lan=lan,
        cloud=cloud,
        errors=totals.errors + (counts and record.status == "error"),
        refused=totals.refused + (counts and record.status == "refused"),
        prompt_tokens=totals.prompt_tokens + record.prompt_tokens,
        completion_tokens=totals.completion_tokens + record.completion_tokens,
        # An unknown price adds nothing: the daemon's totals skip it the same way.
        cloud_spend_usd=totals.cloud_spend_usd + (record.cloud_cost_usd or 0.0),
        cost_avoided_usd=totals.cost_avoided_usd + (record.cost_avoided_usd or 0.0),
        local_share=local / answered if answered else 0.0,
        off_cloud_share=(local + lan) / answered if answered else 0.0,
    )


def _utc_date(now: float) -> date:
    return datetime.fromtimestamp(now, UTC).date()


def log_matches(record: RequestRecord, query: str) -> bool:
    """Whether a request passes the log's filter.

    Every word of ``query`` must match (case-insensitively): ``local``, ``lan`` and ``cloud``
    match the route exactly; ``ok``, ``error``, ``cancelled`` and ``refused`` match the status
    exactly; ``router``, ``client`` and ``mode`` match who decided the route; any other word
    matches part of a reason, a verdict's reason, the model, the provider or the requested
    model.  An empty query matches everything.

    Args:
        record: The request.
        query: What the user typed after ``/``.

    Returns:
        True when the request should be shown.
    """
    for word in query.lower().split():
        if word in ("local", "lan", "cloud"):
            if record.route != word:
                return False
        elif word in ("ok", "error", "cancelled", "refused"):
            if record.status != word:
                return False
        elif word in ("router", "client", "mode"):
            if record.decided != word:
                return False
        elif not any(word in field.lower() for field in _searchable(record)):
            return False
    return True


def _searchable(record: RequestRecord) -> list[str]:
    fields = [*record.reasons, *(verdict.reason for verdict in record.verdicts)]
    fields += [f for f in (record.model, record.provider, record.model_requested) if f]
    return fields
