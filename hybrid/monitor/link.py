"""Staying connected: follow the daemon's event stream, and reconnect when it drops.

:func:`follow` knows nothing of Textual: it calls back with each event and each change of
:class:`LinkStatus`, so the reconnect logic is tested with a fake daemon and a fake sleep.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from hybrid.monitor.client import DaemonUnreachable
from hybrid.monitor.wire import Fleet


class DaemonLink(Protocol):
    """What the monitor needs from the daemon (:class:`~hybrid.monitor.client.DaemonClient`)."""

    @property
    def url(self) -> str:
        """The daemon's base URL, shown to the user."""
        ...

    def events(self) -> AsyncIterator[tuple[str, object]]:
        """Follow ``GET /v1/hybrid/events``: ``(name, data)`` pairs.

        Raises:
            DaemonUnreachable: The stream could not be opened, or it dropped.
        """
        ...

    async def set_mode(self, mode: str) -> str:
        """Set the routing mode; returns the mode the daemon confirms.

        Raises:
            DaemonUnreachable: The daemon cannot be reached or refused.
        """
        ...

    async def aclose(self) -> None:
        """Release the connections."""
        ...


@runtime_checkable
class FeedbackLink(Protocol):
    """A daemon link that can label answers (:class:`~hybrid.monitor.client.DaemonClient`)."""

    async def send_feedback(self, request_id: str, good: bool) -> str | None:
        """Label the answer to a request; None when a refit can learn from the label, else
        why not.

        Raises:
            FeedbackRefused: The daemon holds no such request, or it has no answer.
            DaemonUnreachable: The daemon cannot be reached or refused.
        """
        ...


@runtime_checkable
class ModelLink(Protocol):
    """A daemon link that can switch the local model
    (:class:`~hybrid.monitor.client.DaemonClient`)."""

    async def local_models(self) -> tuple[str, list[str]]:
        """The served model's id and the names it can switch to (``GET /v1/hybrid/model``).

        Raises:
            DaemonUnreachable: The daemon cannot be reached or refused.
        """
        ...

    async def switch_model(self, name: str) -> str:
        """Start switching to ``name``; returns the model now loading.

        Raises:
            DaemonUnreachable: The daemon cannot be reached or refused (the message says
                why: an unknown name, a model that does not fit, a switch already loading).
        """
        ...


@runtime_checkable
class FleetLink(Protocol):
    """A daemon link that can list the daemons sharing its ledger
    (:class:`~hybrid.monitor.client.DaemonClient`)."""

    async def fleet(self) -> Fleet:
        """Every daemon writing the ledger (``GET /v1/hybrid/stats?by=instance``).

        Raises:
            DaemonUnreachable: The daemon cannot be reached, refused, or its ledger is down.
        """
        ...


@dataclass(frozen=True)
class Backoff:
    """How long to wait between reconnect attempts: doubling from ``first_s`` up to ``max_s``.

    A daemon restart takes a second or two, so the cap is short: the monitor is back soon
    after the daemon is, and one failed attempt a couple of seconds on loopback costs nothing.

    Attributes:
        first_s: The wait after the first failure.
        max_s: The longest wait.
    """

    first_s: float = 0.25
    max_s: float = 2.0

    def after(self, delay_s: float) -> float:
        """The wait that follows a wait of ``delay_s``."""
        return min(self.max_s, max(self.first_s, delay_s * 2))


@dataclass(frozen=True)
class LinkStatus:
    """Whether the monitor is receiving the daemon's events.

    Attributes:
        state: ``connecting`` (first attempt), ``live`` (events are arriving) or ``offline``
            (the last attempt failed or the stream dropped; retrying).
        detail: For ``offline``, what went wrong and what to do (a DaemonUnreachable
            message); empty otherwise.
        retry_in_s: For ``offline``, the wait before the next attempt.
    """

    state: Literal["connecting", "live", "offline"]
    detail: str = ""
    retry_in_s: float | None = None


async def follow(
    daemon: DaemonLink,
    *,
    on_event: Callable[[str, object], object],
    on_status: Callable[[LinkStatus], object],
    backoff: Backoff,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Deliver the daemon's events for as long as the caller lets this run.

    Args:
        daemon: Where the events come from.
        on_event: Called with each event's name and data, in order.
        on_status: Called when the link goes live (its first event, a ``snapshot``) and each
            time an attempt fails or the stream drops; starts with ``connecting``.
        backoff: The waits between attempts; back to ``first_s`` once an attempt succeeds.
        sleep: Waits between attempts (``asyncio.sleep``; tests pass a fake).

    Returns:
        Never: it ends only by cancellation (the app's worker is cancelled when it exits).
    """
    on_status(LinkStatus("connecting"))
    delay = backoff.first_s
    while True:
        live = False
        try:
            async for name, data in daemon.events():
                if not live:
                    live = True
                    delay = backoff.first_s
                    on_status(LinkStatus("live"))
                on_event(name, data)
            detail = f"the daemon at {daemon.url} ended the event stream"
        except DaemonUnreachable as exc:
            detail = str(exc)
        on_status(LinkStatus("offline", detail, retry_in_s=delay))
        await sleep(delay)
        delay = backoff.after(delay)
