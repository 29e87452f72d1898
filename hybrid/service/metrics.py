"""hybrid's Prometheus metrics (served at ``GET /metrics``), in a registry of their own.

Counters follow the ledger: each record adds to them once, as it is written, so the metrics and
the ledger agree by construction (``hybrid_local_prefill_tokens_saved_total`` adds up the local
records' ``cache_read_tokens``).  The local model's gauges (queue depth, answers decoding
together, slots, decode speed) follow the ``hardware`` events.  Labels are kept to small sets:
the route (``local``, ``lan``, ``cloud``, ``none``), the model, the status, and the *kind* of the
deciding reason (``difficulty``, ``privacy``, ``budget``, ``lan``...), never its numbers, which
would give every request a series of its own.  A LAN answer is never cloud spend: its server
never appears under ``hybrid_cloud_spend_usd``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from hybrid.ledger.budget import BudgetGate
from hybrid.ledger.record import LedgerRecord

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    """The metrics of one server.

    Args:
        registry: Where they are registered (a fresh one when None).
    """

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._children: dict[tuple[object, ...], Any] = {}
        r = self.registry
        self._requests = Counter(
            "hybrid_requests",
            "Requests answered, failed or refused (route none), by route, model, status and "
            "reason kind.",
            ["route", "model", "status", "reason"],
            registry=r,
        )
        self._tokens = Counter(
            "hybrid_tokens", "Tokens, by route and kind.", ["route", "kind"], registry=r
        )
        # A gauge, not a counter: a local answer that cost more electricity than the cloud
        # would have charged (or a LAN answer priced above it) lowers it, as it lowers the
        # ledger's sum.
        self._avoided = Gauge(
            "hybrid_cost_avoided_usd",
            "USD the cloud would have charged for the local and LAN answers, less what running "
            "them cost, by who decided the route (router, client, mode).",
            ["decided"],
            registry=r,
        )
        self._spend = Counter(
            "hybrid_cloud_spend_usd", "USD charged by cloud providers.", ["provider"], registry=r
        )
        self._unpriced = Counter(
            "hybrid_unpriced_requests", "Requests whose model has no price.", registry=r
        )
        self._latency = Histogram(
            "hybrid_request_latency_seconds",
            "Request to last byte.",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self._ttft = Histogram(
            "hybrid_time_to_first_token_seconds",
            "Request to first token.",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self._in_flight = Gauge("hybrid_requests_in_flight", "Requests being answered.", registry=r)
        self.queue_depth = Gauge("hybrid_local_queue_depth", "Local requests waiting.", registry=r)
        self.decode_speed = Gauge(
            "hybrid_local_decode_tokens_per_second",
            "Measured local decode speed of one answer decoding alone.",
            registry=r,
        )
        self._prefill_saved = Counter(
            "hybrid_local_prefill_tokens_saved",
            "Prompt tokens local answers reused from the local model's KV cache instead of "
            "evaluating them (prefix reuse).",
            registry=r,
        )
        self.running = Gauge(
            "hybrid_local_running_requests",
            "Local answers being decoded now, together in one batch.",
            registry=r,
        )
        self.slots = Gauge(
            "hybrid_local_slots", "Local answers the model can decode at once.", registry=r
        )
        self._hardware = Gauge(
            "hybrid_hardware", "The latest hardware sample.", ["measure"], registry=r
        )
        self._budget_left = Gauge(
            "hybrid_budget_remaining_usd",
            "Cloud budget left under each cap: the cap less what is spent and what requests in "
            "flight have reserved.",
            ["period"],
            registry=r,
        )

    def started(self) -> None:
        """A request arrived."""
        self._in_flight.inc()

    def observe(self, record: LedgerRecord) -> None:
        """Count one ledger record."""
        route = record.route
        if record.is_request:
            self._in_flight.dec()
            reason = record.reasons[0].split(":", 1)[0] if record.reasons else "none"
            self._child(self._requests, route, record.model, record.status, reason).inc()
            self._child(self._latency, route).observe(record.latency_s)
            if record.ttft_s is not None:
                self._child(self._ttft, route).observe(record.ttft_s)
        self._child(self._tokens, route, "prompt").inc(record.prompt_tokens)
        self._child(self._tokens, route, "completion").inc(record.completion_tokens)
        if record.route == "local" and record.cache_read_tokens > 0:
            self._prefill_saved.inc(record.cache_read_tokens)
        if record.cloud_cost_usd:
            self._child(self._spend, record.provider).inc(record.cloud_cost_usd)
        if record.cost_avoided_usd:
            self._child(self._avoided, record.decided or "none").inc(record.cost_avoided_usd)
        if not record.price_known:
            self._unpriced.inc()

    def _child(self, metric: Any, *labels: str) -> Any:
        # labels() takes a lock and checks its arguments on every call; each request would
        # pay that several times over for the same few series.
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def budget(self, budget: BudgetGate) -> None:
        """Show what is left under each cap that is set: the cap less what is spent and what
        the requests in flight have reserved (of the whole fleet, on a shared budget)."""
        data = budget.to_dict()
        for period in ("daily", "monthly"):
            cap = data[f"{period}_cap_usd"]
            if cap is not None:
                held = data[f"{period}_spend_usd"] + data[f"{period}_reserved_usd"]
                self._budget_left.labels(period).set(max(cap - held, 0.0))

    def hardware(self, sample: Mapping[str, Any]) -> None:
        """Show a ``hardware`` event's readings."""
        for measure in (
            "cpu_percent",
            "memory_percent",
            "gpu_utilization_percent",
            "battery_percent",
            "vram_used_bytes",
        ):
            value = sample.get(measure)
            if value is not None:
                self._hardware.labels(measure).set(value)
        self.queue_depth.set(sample.get("queue_depth") or 0)
        self.running.set(sample.get("running") or 0)
        slots = sample.get("slots")
        if slots is not None:
            self.slots.set(slots)
        speed = sample.get("decode_tokens_per_s")
        if speed is not None:
            self.decode_speed.set(speed)

    def render(self) -> bytes:
        """The metrics in Prometheus' text format."""
        return generate_latest(self.registry)
