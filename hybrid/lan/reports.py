"""How busy a LAN server is (:class:`ServerLoad`), read from what each kind of server reports.

Each reader takes a body exactly as the server sent it and returns a :class:`ServerLoad`, or
None when the body is not that kind of report (an error page, another server's format, a
malformed body); none of them raises.

========================  ==============================================================
source                    what the server sends
========================  ==============================================================
llama-server /slots       a JSON array, one object per slot, each with ``is_processing``
                          (older builds: ``state``, 0 when idle): running and slots, no
                          queue length
llama-server /metrics     Prometheus text (``--metrics``): ``llamacpp:requests_processing``
                          and ``llamacpp:requests_deferred``
llama-server /slots+      both of the above together: slots, running and waiting
/metrics
vllm /metrics             Prometheus text: ``vllm:num_requests_running`` and
                          ``vllm:num_requests_waiting``, one sample per engine and model,
                          summed
ollama /api/ps            ``{"models": [{"name": ...}, ...]}``: the models in memory; Ollama
                          says nothing of running or waiting requests
hybrid /health            another hybrid: ``slots.total``, ``slots.busy``,
                          ``queue.waiting`` and the loaded ``model.id``
in-flight                 nothing from the server: hybrid's own count of requests it has
                          sent there and not yet had answered (:meth:`ServerLoad.from_in_flight`)
========================  ==============================================================
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from prometheus_client.parser import text_string_to_metric_families

LoadSource = Literal[
    "llama-server /slots",
    "llama-server /slots+/metrics",
    "llama-server /metrics",
    "vllm /metrics",
    "ollama /api/ps",
    "hybrid /health",
    "in-flight",
]


@dataclass(frozen=True)
class ServerLoad:
    """How busy one LAN server was when it was asked.

    Attributes:
        running: Requests being generated; None when the server does not say (Ollama).
        waiting: Requests queued for a free slot; None when the server does not say
            (llama-server's ``/slots`` alone, Ollama).
        slots_total: Requests it can generate at once, when it says (llama-server's slots,
            another hybrid's); None otherwise.
        slots_idle: Of those, the ones free; None when `slots_total` is.
        source: Which endpoint said so (see the module docstring).
        models_loaded: The models in memory, when the server lists them (Ollama's
            ``/api/ps``, another hybrid's model); None when it does not.
        measured_at: When it was read, on the prober's clock (``time.monotonic`` unless
            another was given).
    """

    running: int | None
    waiting: int | None
    slots_total: int | None
    slots_idle: int | None
    source: LoadSource
    models_loaded: tuple[str, ...] | None
    measured_at: float

    @classmethod
    def from_in_flight(cls, in_flight: int, measured_at: float) -> ServerLoad:
        """The load of a server that reports none: hybrid's own requests in flight to it.

        Args:
            in_flight: Requests hybrid has sent there and not yet had answered.
            measured_at: Now, on the caller's clock.
        """
        return cls(in_flight, None, None, None, "in-flight", None, measured_at)

    def demand(self, in_flight: int = 0) -> int:
        """Requests the server holds, running and waiting.

        Args:
            in_flight: hybrid's own requests in flight to the server now.  It stands in for
                `running` when the server does not say, and raises it when it is larger
                (requests sent since the server was asked are not in its count yet).

        Returns:
            ``max(running, in_flight) + waiting``, unknown parts counted as 0.
        """
        return max(self.running or 0, in_flight) + (self.waiting or 0)

    def utilisation(self, in_flight: int = 0, max_concurrency: int | None = None) -> float:
        """:meth:`demand` over what the server can run at once, to compare servers by.

        Args:
            in_flight: As for :meth:`demand`.
            max_concurrency: The configured limit, used when the server does not report its
                slots.

        Returns:
            0 when idle; 1 when every slot is busy; above 1 when requests queue.  With
            neither slots nor a limit known, the demand itself.
        """
        capacity = self.slots_total or max_concurrency
        demand = self.demand(in_flight)
        return demand / capacity if capacity else float(demand)

    def to_json(self) -> dict[str, Any]:
        """The fields as a JSON object (for ``/health`` and ``hybrid probe``)."""
        return {
            "running": self.running,
            "waiting": self.waiting,
            "slots_total": self.slots_total,
            "slots_idle": self.slots_idle,
            "source": self.source,
            "models_loaded": list(self.models_loaded) if self.models_loaded is not None else None,
        }


def read_slots(body: bytes, measured_at: float) -> ServerLoad | None:
    """llama-server's ``GET /slots``: a non-empty array of slot objects."""
    slots = _json(body)
    if not isinstance(slots, list) or not slots:
        return None
    busy = 0
    for slot in slots:
        if not isinstance(slot, dict):
            return None
        processing = slot.get("is_processing")
        if processing is None and _count(slot.get("state")) is not None:
            processing = slot["state"] != 0  # builds before is_processing: 0 is idle
        if not isinstance(processing, bool):
            return None
        busy += processing
    total = len(slots)
    return ServerLoad(busy, None, total, total - busy, "llama-server /slots", None, measured_at)


def read_metrics(body: bytes, measured_at: float) -> ServerLoad | None:
    """Prometheus text from llama-server's or vLLM's ``GET /metrics``; None for any other
    (hybrid's own, an exporter's) or for text that is not Prometheus'."""
    gauges = _gauges(body)
    if gauges is None:
        return None
    running = gauges.get("llamacpp:requests_processing")
    if running is not None:
        waiting = gauges.get("llamacpp:requests_deferred")
        return ServerLoad(running, waiting, None, None, "llama-server /metrics", None, measured_at)
    running = gauges.get("vllm:num_requests_running")
    if running is not None:
        waiting = gauges.get("vllm:num_requests_waiting")
        return ServerLoad(running, waiting, None, None, "vllm /metrics", None, measured_at)
    return None


def combine_slots_and_metrics(slots: ServerLoad, metrics: ServerLoad) -> ServerLoad:
    """One llama-server's ``/slots`` reading with the queue length from its ``/metrics``."""
    return ServerLoad(
        slots.running,
        metrics.waiting,
        slots.slots_total,
        slots.slots_idle,
        "llama-server /slots+/metrics",
        None,
        slots.measured_at,
    )


def read_ollama_ps(body: bytes, measured_at: float) -> ServerLoad | None:
    """Ollama's ``GET /api/ps``: the models in memory, and nothing about requests."""
    payload = _json(body)
    if not isinstance(payload, dict) or not isinstance(payload.get("models"), list):
        return None
    names: list[str] = []
    for entry in payload["models"]:
        name = entry.get("name", entry.get("model")) if isinstance(entry, dict) else None
        if not isinstance(name, str):
            return None
        names.append(name)
    return ServerLoad(None, None, None, None, "ollama /api/ps", tuple(names), measured_at)


def read_hybrid_health(body: bytes, measured_at: float) -> ServerLoad | None:
    """Another hybrid's ``GET /health``, once its model is ready (``slots`` and ``queue``)."""
    payload = _json(body)
    if not isinstance(payload, dict):
        return None
    slots, queue = payload.get("slots"), payload.get("queue")
    if not isinstance(slots, dict) or not isinstance(queue, dict):
        return None
    total, busy = _count(slots.get("total")), _count(slots.get("busy"))
    waiting = _count(queue.get("waiting"))
    if total is None or busy is None or waiting is None:
        return None
    model = payload.get("model")
    model_id = model.get("id") if isinstance(model, dict) else None
    loaded = (model_id,) if isinstance(model_id, str) else None
    idle = max(total - busy, 0)
    return ServerLoad(busy, waiting, total, idle, "hybrid /health", loaded, measured_at)


def _json(body: bytes) -> object:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


def _count(value: object) -> int | None:
    """A JSON request count: a non-negative integer (not a bool)."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def _gauges(body: bytes) -> dict[str, int] | None:
    """Every sample's value, summed over its label sets and rounded; None when the body is not
    Prometheus text.  Samples that are not finite (``nan`` before a first request) or are
    negative are left out."""
    try:
        text = body.decode("utf-8")
        families = list(text_string_to_metric_families(text))
    except (UnicodeDecodeError, ValueError, IndexError, KeyError, TypeError):
        # The parser reports malformed text with ValueError, and some truncated lines with
        # the others.
        return None
    sums: dict[str, float] = {}
    for family in families:
        for sample in family.samples:
            value = float(sample.value)
            if math.isfinite(value) and value >= 0:
                sums[sample.name] = sums.get(sample.name, 0.0) + value
    return {name: round(value) for name, value in sums.items()}
