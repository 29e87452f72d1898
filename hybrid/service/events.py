"""The live event stream behind ``GET /v1/hybrid/events``: publish once, every follower gets it.

Events are published on the event loop's thread (requests, hardware ticks, budget and mode
changes) and fanned out to one bounded queue per follower.  A follower that stops reading loses
its oldest events rather than holding the server's memory or slowing a response: the stream is
for watching, and the ledger is the record.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hybrid.hardware.snapshot import LiveSample
    from hybrid.local.runtime import LocalRuntime

Event = tuple[str, Mapping[str, Any]]
CLOSED: Event = ("", {})
"""The last event a follower gets: the bus is closed and its stream should end."""

# What a new follower is shown of the past (docs/events.md: the snapshot's "recent").
RECENT_REQUESTS = 50


class EventBus:
    """Fans events out to followers, and remembers the latest requests and hardware sample.

    Args:
        max_queue: Events held for a follower that is not reading; older ones are dropped.
    """

    def __init__(self, max_queue: int = 1000) -> None:
        self._max_queue = max_queue
        self._followers: set[asyncio.Queue[Event]] = set()
        self._recent: collections.deque[Mapping[str, Any]] = collections.deque(
            maxlen=RECENT_REQUESTS
        )
        self._hardware: Mapping[str, Any] | None = None
        self._closed = False
        self.dropped = 0

    @property
    def followers(self) -> int:
        """How many followers are subscribed."""
        return len(self._followers)

    @property
    def recent(self) -> list[Mapping[str, Any]]:
        """The latest ``request_finished`` bodies, newest first."""
        return list(reversed(self._recent))

    @property
    def hardware(self) -> Mapping[str, Any] | None:
        """The latest ``hardware`` body, or None before the first sample."""
        return self._hardware

    def publish(self, name: str, data: Mapping[str, Any]) -> None:
        """Send an event to every follower; never blocks.

        Args:
            name: The event name (``request_finished``, ``hardware``, ...).
            data: Its JSON-ready body.
        """
        if name == "request_finished":
            self._recent.append(data)
        elif name == "hardware":
            self._hardware = data
        for follower in self._followers:
            if follower.full():
                follower.get_nowait()
                self.dropped += 1
            follower.put_nowait((name, data))

    def close(self) -> None:
        """End every follower's stream, now and from now on: the server is shutting down.

        Each follower's queue gets :data:`CLOSED` as its last event, so that an open event
        stream does not hold a graceful shutdown for its whole timeout.
        """
        self._closed = True
        for follower in self._followers:
            if follower.full():
                follower.get_nowait()
            follower.put_nowait(CLOSED)

    @contextlib.contextmanager
    def follow(self) -> Iterator[asyncio.Queue[Event]]:
        """Subscribe for the duration of a ``with`` block.

        Yields:
            The queue this follower's events arrive on, in publication order, ending with
            :data:`CLOSED` once the bus is closed.
        """
        queue: asyncio.Queue[Event] = asyncio.Queue(self._max_queue)
        if self._closed:
            queue.put_nowait(CLOSED)
        self._followers.add(queue)
        try:
            yield queue
        finally:
            self._followers.discard(queue)


def hardware_event(sample: LiveSample | None, runtime: LocalRuntime) -> dict[str, Any]:
    """The body of a ``hardware`` event: the latest sample, the local queue and the model.

    ``running`` counts the local answers decoding now (together, in one batch) and ``slots``
    how many it can decode at once (None while no model is ready).

    Args:
        sample: The sampler's latest reading (None before the first: its readings are null).
        runtime: The local model's runtime.
    """
    queue_depth, running, slots, speed = 0, 0, None, None
    if runtime.state == "ready":
        backend = runtime.backend()
        queue, speed = backend.queue, backend.speed.decode_tokens_per_s
        queue_depth, running, slots = queue.depth, queue.running, queue.slots
    return {
        "time": sample.taken_at if sample is not None else None,
        "cpu_percent": sample.cpu_percent if sample is not None else None,
        "memory_percent": sample.memory_percent if sample is not None else None,
        "memory_available_bytes": sample.memory_available_bytes if sample is not None else None,
        "gpu_utilization_percent": sample.gpu_utilization_percent if sample is not None else None,
        "vram_used_bytes": sample.vram_used_bytes if sample is not None else None,
        "vram_total_bytes": sample.vram_total_bytes if sample is not None else None,
        "battery_percent": sample.battery_percent if sample is not None else None,
        "on_battery": sample.on_battery if sample is not None else None,
        "queue_depth": queue_depth,
        "running": running,
        "slots": slots,
        "decode_tokens_per_s": speed,
        "model": runtime.model_id,
        "model_state": runtime.state,
    }
