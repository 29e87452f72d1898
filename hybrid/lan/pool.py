"""The team's LAN servers as hybrid sees them: up or down, how busy, and which to ask first.

:class:`LanPool` holds one :class:`LanServer` per ``[[lan.servers]]`` entry.  Each has its own
:class:`~hybrid.lan.provider.LanProvider` (pooled HTTP client, retries before the first byte,
circuit breaker) and a :class:`~hybrid.lan.load.LoadProbe`.  A background task keeps what the
pool knows fresh:

* every ``lan.load_interval_s``, the load of each server that is up (what the server reports,
  else hybrid's own requests in flight to it, :class:`~hybrid.lan.reports.ServerLoad`);
* a server found down (at start, or when its breaker opened) is checked again after the
  breaker's pause (``cloud.breaker_reset_s``), and used again once it answers.

A server whose models are not configured serves what its model list says: the list is read
when it is checked, and again (:meth:`LanPool.relist`) when it answers with another model
than the one asked for.

:meth:`LanPool.ranked` orders the servers able to take one more request: by utilisation
(demand over slots, :meth:`~hybrid.lan.reports.ServerLoad.utilisation`; fewer requests of
hybrid's own in flight, then the configured order, break ties) or, with
``lan.strategy = "round_robin"``, each in turn.  A server is left out while it is down, while
its breaker is open, when hybrid already has ``max_concurrency`` requests in flight there, or
when its queue is as long as what it runs (:data:`SATURATED`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from hybrid.backend import Generation, ObservedGeneration
from hybrid.cloud.client import cloud_client
from hybrid.cloud.policy import ReliabilityPolicy
from hybrid.lan.health import ServerHealth, probe_health
from hybrid.lan.load import LoadProbe
from hybrid.lan.provider import LanProvider
from hybrid.lan.reports import ServerLoad
from hybrid.settings.lan import LanServerSettings, LanSettings

log = logging.getLogger("hybrid.lan")

SATURATED = 2.0
"""Utilisation from which a server that reports its slots is passed over: as many requests
queued as it runs at once.  A server that reports no slots is judged by its queue alone
(:meth:`LanServer.saturated`)."""

STALE_LOADS = 3
"""A load report older than this many ``load_interval_s`` is not trusted: hybrid's own count
of requests in flight stands in for it."""


@dataclass
class LanServer:
    """One LAN server and what is known of it.

    Attributes:
        settings: Its ``[[lan.servers]]`` entry.
        provider: Its API client.
        probe: Asks it for its load.
        in_flight: hybrid's requests sent to it and not yet answered.
        load: Its latest load report, when it gives one.
        health: Its latest health check (None before the first).
        down_until: While down, when to check it again (monotonic); None while up.
        answered: Answers it started.
        down_reason: Why it was last found down (a check, or a request it refused); None
            while up.
    """

    settings: LanServerSettings
    provider: LanProvider
    probe: LoadProbe
    in_flight: int = 0
    load: ServerLoad | None = None
    health: ServerHealth | None = None
    down_until: float | None = None
    answered: int = 0
    down_reason: str | None = None
    _turn: int = field(default=0, repr=False)

    @property
    def name(self) -> str:
        return self.settings.name

    @property
    def trusted(self) -> bool:
        """Private data may go to it (``privacy = "trusted"``, with ``allow_lan``)."""
        return self.settings.privacy == "trusted"

    @property
    def models(self) -> tuple[str, ...]:
        """The models it serves: as configured, else as its model list says."""
        if self.settings.models:
            return tuple(self.settings.models)
        return self.health.models if self.health is not None else ()

    def utilisation(self, now: float, fresh_s: float) -> float:
        """Demand over what it runs at once: its report when fresh, else hybrid's count."""
        limit = self.settings.max_concurrency
        load = self.load
        if load is not None and now - load.measured_at <= fresh_s:
            return load.utilisation(self.in_flight, limit)
        return self.in_flight / limit

    def next_check_in_s(self, now: float) -> float | None:
        """Seconds at ``now`` (monotonic) until it is checked again while down, 0 once that is
        due (the background task checks it on its next round); None while up."""
        if self.down_until is None:
            return None
        return max(0.0, self.down_until - now)

    def unavailable(self, now: float, fresh_s: float) -> str | None:
        """Why it cannot take one more request now (``down``, ``circuit_open``, ``full``,
        ``saturated``), or None when it can."""
        if self.down_until is not None:
            return "down"
        if self.provider.breaker.state == "open" and (self.provider.breaker.retry_in_s() or 0) > 0:
            return "circuit_open"
        if self.in_flight >= self.settings.max_concurrency:
            return "full"
        if self.saturated(now, fresh_s):
            return "saturated"
        return None

    def saturated(self, now: float, fresh_s: float) -> bool:
        """Whether its queue is as long as what it runs, by its fresh report.

        With its slots reported, that is a utilisation of :data:`SATURATED`.  Without them
        (vLLM, llama-server's ``/metrics`` alone) ``max_concurrency`` says nothing of what the
        server runs at once, so its queue (``waiting``) is held against what it runs
        (``running``, or hybrid's requests in flight there when more).  A server that reports
        no queue, or no fresh report, is never saturated: ``max_concurrency`` alone limits it.
        """
        load = self.load
        if load is None or now - load.measured_at > fresh_s:
            return False
        if load.slots_total:
            return load.utilisation(self.in_flight) >= SATURATED
        waiting = load.waiting or 0
        return waiting > 0 and waiting >= max(load.running or 0, self.in_flight)

    def to_json(self, now: float, fresh_s: float) -> dict[str, Any]:
        """What ``/health`` and ``hybrid probe`` show of it (never its key)."""
        health = self.provider.health()
        next_check = self.next_check_in_s(now)
        return {
            "name": self.name,
            "base_url": health["base_url"],
            "models": list(self.models),
            "trusted": self.trusted,
            "up": self.down_until is None and self.health is not None,
            "error": self.down_reason or (None if self.health is None else self.health.error),
            "next_check_in_s": None if next_check is None else round(next_check, 1),
            "in_flight": self.in_flight,
            "max_concurrency": self.settings.max_concurrency,
            "utilisation": round(self.utilisation(now, fresh_s), 3),
            "load": None if self.load is None else self.load.to_json(),
            "load_endpoint": self.probe.endpoint,
            "answered": self.answered,
            "circuit": health["circuit"],
            "has_key": health["has_key"],
        }


class LanPool:
    """The LAN servers, their health and load, and the order to ask them in.

    Args:
        settings: The ``[lan]`` settings.
        policy: Timeouts, retries and breaker thresholds (the cloud's, with
            ``lan.connect_timeout_s`` and ``lan.max_attempts``).
        redact: Removes secrets from the servers' error messages.
        clock: Monotonic seconds; injectable for tests.

    Raises:
        ConfigError: A server's base URL or key is unusable.
    """

    def __init__(
        self,
        settings: LanSettings,
        policy: ReliabilityPolicy,
        *,
        redact: Callable[[str], str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._policy = dataclasses.replace(
            policy,
            connect_timeout_s=settings.connect_timeout_s,
            max_attempts=settings.max_attempts,
        )
        self._clock = clock
        self._client = cloud_client(self._policy)
        self._servers = tuple(self._server(entry, redact) for entry in settings.servers)
        self._turns = itertools.count()
        self._task: asyncio.Task[None] | None = None
        self._relisting: set[str] = set()

    def _server(self, entry: LanServerSettings, redact: Callable[[str], str] | None) -> LanServer:
        key = entry.api_key.get_secret_value() if entry.api_key is not None else None
        provider = LanProvider(
            name=entry.name,
            base_url=entry.base_url,
            api_key=entry.api_key,
            models=entry.models,
            client=self._client,
            policy=self._policy,
            redact=redact,
            clock=self._clock,
        )
        kind = None if entry.kind == "auto" else entry.kind
        probe = LoadProbe(self._client, entry.base_url, key, kind_hint=kind, clock=self._clock)
        return LanServer(entry, provider, probe)

    @property
    def servers(self) -> tuple[LanServer, ...]:
        return self._servers

    @property
    def clock(self) -> Callable[[], float]:
        """The monotonic clock of the pool and of its servers' circuit breakers."""
        return self._clock

    @property
    def strategy(self) -> str:
        return self._settings.strategy

    @property
    def _fresh_s(self) -> float:
        return STALE_LOADS * self._settings.load_interval_s

    def ranked(self, *, trusted_only: bool = False) -> tuple[list[LanServer], list[str]]:
        """The servers able to take one more request, the one to ask first first.

        Args:
            trusted_only: Only servers marked ``privacy = "trusted"``.

        Returns:
            The servers, and for each one left out ``name:why`` (``gpu-box:full``).
        """
        now = self._clock()
        able: list[LanServer] = []
        skipped: list[str] = []
        for server in self._servers:
            if trusted_only and not server.trusted:
                continue
            why = server.unavailable(now, self._fresh_s)
            if why is None:
                able.append(server)
            else:
                skipped.append(f"{server.name}:{why}")
        if self._settings.strategy == "round_robin":
            turn = next(self._turns)
            shift = turn % len(able) if able else 0
            return able[shift:] + able[:shift], skipped
        order = {id(server): index for index, server in enumerate(self._servers)}
        able.sort(key=lambda s: (s.utilisation(now, self._fresh_s), s.in_flight, order[id(s)]))
        return able, skipped

    def acquire(self, server: LanServer) -> None:
        """Count a request in flight on a server from the moment it is sent: requests decided
        together must see each other.  Then :meth:`release` it (it failed to start) or
        :meth:`track` its answer."""
        server.in_flight += 1

    def release(self, server: LanServer) -> None:
        """A request counted by :meth:`acquire` ended without an answer."""
        server.in_flight -= 1

    def track(self, server: LanServer, generation: Generation) -> Generation:
        """Keep an acquired request counted in flight until its answer is closed."""
        server.answered += 1
        return _InFlight(generation, server)

    def went_down(self, server: LanServer, why: str) -> None:
        """Mark a server down (no connection could be made: refused, or not accepted within the
        connect timeout); checked again after the pause."""
        if server.down_until is None:
            log.warning(
                "LAN server %s is down (%s); checking it again in %.0f s",
                server.name,
                why,
                self._policy.breaker_reset_s,
            )
        server.down_until = self._clock() + self._policy.breaker_reset_s
        server.down_reason = why

    async def relist(self, server: LanServer) -> None:
        """Read again the model list of a server that answered with another model than it
        listed (it was restarted with another model), so that requests ask for what it
        serves now.

        A configured ``models`` list is the user's word and is not read again; neither is a
        list already being read for another request.  The server is checked as after a pause
        (:meth:`refresh`): one that no longer answers is marked down.

        Args:
            server: One of :attr:`servers`.
        """
        if server.settings.models or server.name in self._relisting:
            return
        self._relisting.add(server.name)
        try:
            before = server.models
            await self._check(server)
        finally:
            self._relisting.discard(server.name)
        if server.models != before:
            log.info(
                "LAN server %s now lists %s (it listed %s)",
                server.name,
                ", ".join(server.models) or "no model",
                ", ".join(before) or "no model",
            )

    # -- the background task ----------------------------------------------------------------

    async def start(self) -> None:
        """Check every server once, then keep their health and load fresh in the background."""
        await asyncio.gather(*(self._check(server) for server in self._servers))
        if self._servers and self._task is None:
            self._task = asyncio.create_task(self._watch(), name="hybrid-lan-watch")

    async def refresh(self) -> None:
        """One round of the background task: health of servers due a check, load of the rest."""
        now = self._clock()
        due = [s for s in self._servers if s.down_until is not None and now >= s.down_until]
        up = [s for s in self._servers if s.down_until is None]
        await asyncio.gather(
            *(self._check(server) for server in due), *(self._measure(server) for server in up)
        )

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._settings.load_interval_s)
            try:
                await self.refresh()
            except Exception:  # the watch must outlive any one server's surprise
                log.exception(
                    "LAN watch failed; trying again in %.0f s", self._settings.load_interval_s
                )

    async def _check(self, server: LanServer) -> None:
        key = server.settings.api_key
        health = await probe_health(
            self._client,
            server.settings.base_url,
            None if key is None else key.get_secret_value(),
            timeout_s=self._settings.connect_timeout_s * 2,
            clock=self._clock,
        )
        server.health = health
        if not health.up:
            self.went_down(server, health.error or "no answer")
            return
        missing = [m for m in server.settings.models if not health.serves(m)]
        if missing and health.models:
            log.warning(
                "LAN server %s does not list %s (it lists %s); check its models under "
                "[[lan.servers]]",
                server.name,
                ", ".join(missing),
                ", ".join(health.models),
            )
        if server.down_until is not None:
            log.info("LAN server %s is up again", server.name)
        server.down_until = None
        server.down_reason = None
        await self._measure(server)

    async def _measure(self, server: LanServer) -> None:
        load = await server.probe.probe()
        if load is not None:
            server.load = load

    async def aclose(self) -> None:
        """Stop the background task and close the HTTP client."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._client.aclose()

    def to_json(self) -> list[dict[str, Any]]:
        """Every server, for ``/health``."""
        now = self._clock()
        return [server.to_json(now, self._fresh_s) for server in self._servers]


class _InFlight(ObservedGeneration):
    """A LAN answer, counted in flight on its server (from :meth:`LanPool.acquire`) until it is
    closed."""

    def __init__(self, inner: Generation, server: LanServer) -> None:
        super().__init__(inner)
        self._server = server
        self._open = True

    def _closed(self) -> None:
        if self._open:
            self._open = False
            self._server.in_flight -= 1


def names(servers: Sequence[LanServer]) -> str:
    """``a, b`` for messages."""
    return ", ".join(server.name for server in servers)
