"""How busy a LAN inference server is: :class:`LoadProbe` learns what the server reports, once,
and asks it again cheaply.

A server is asked, in this order, until one answer reads as a load report
(:mod:`hybrid.lan.reports`)::

    GET /slots      llama.cpp's llama-server (also GET /metrics when it has --metrics, for the
                    queue length /slots does not give)
    GET /metrics    llama-server's or vLLM's Prometheus text
    GET /api/ps     Ollama (the models in memory only)
    GET /health     another hybrid (its slots and queue)

The paths hang off the server's root: the configured OpenAI base URL less its ``/v1``.  What
worked is remembered and asked alone next time; when it stops working (the server was replaced
by another kind) the probe starts again from the top.  A server that reports nothing is not
asked again for ``rediscover_after_s``: the caller uses its own in-flight count
(:meth:`ServerLoad.from_in_flight`) meanwhile.

Nothing here raises because of the server: a refused or cut connection, a timeout, a 404, an
error page or a malformed body gives None, with the reason in :attr:`LoadProbe.problem`.  A
server that cannot answer now (unreachable, 502/503/504) keeps what was learnt about it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import httpx2

from hybrid.lan.fetch import (
    DEFAULT_TIMEOUT_S,
    Fetched,
    Unreachable,
    auth_headers,
    fetch,
    server_root,
)
from hybrid.lan.reports import (
    ServerLoad,
    combine_slots_and_metrics,
    read_hybrid_health,
    read_metrics,
    read_ollama_ps,
    read_slots,
)

ServerKind = Literal["llama-server", "vllm", "ollama", "hybrid"]
"""What a LAN server is, when the configuration says so (``kind_hint``)."""

DEFAULT_REDISCOVER_AFTER_S = 60.0

# Statuses that say "not now" rather than "not here": a model loading, a proxy whose upstream
# is down.  What was learnt about the server is kept.
_NOT_NOW = frozenset({502, 503, 504})


@dataclass(frozen=True)
class _Report:
    """One endpoint that may report load, and how to read it."""

    path: str
    read: Callable[[bytes, float], ServerLoad | None]
    what: str


_SLOTS = _Report("/slots", read_slots, "llama-server slots")
_METRICS = _Report("/metrics", read_metrics, "llama-server or vLLM metrics")
_OLLAMA = _Report("/api/ps", read_ollama_ps, "Ollama's loaded models")
_HYBRID = _Report("/health", read_hybrid_health, "hybrid's slots and queue")

_ORDER = (_SLOTS, _METRICS, _OLLAMA, _HYBRID)
_BY_KIND: dict[ServerKind, tuple[_Report, ...]] = {
    "llama-server": (_SLOTS, _METRICS),
    "vllm": (_METRICS,),
    "ollama": (_OLLAMA,),
    "hybrid": (_HYBRID,),
}


@dataclass(frozen=True)
class _NotHere:
    """This endpoint gives no load report (404, another format): try the next."""

    reason: str


@dataclass(frozen=True)
class _NotNow:
    """The server cannot answer now: stop asking this time."""

    reason: str


class LoadProbe:
    """Asks one LAN server how busy it is; keeps what it learnt about the server.

    One per server, kept for the server's lifetime in the router; safe to call from several
    tasks (calls take turns).

    Args:
        client: The shared HTTP client (its own timeouts are overridden by `timeout_s`).
        base_url: The server's OpenAI base URL (``http://gpu-box:8080/v1``).
        api_key: Sent as ``Authorization: Bearer``; None for none.
        kind_hint: What the server is, when known: its endpoints are asked first.
        timeout_s: The most one :meth:`probe` may take, every request together.
        rediscover_after_s: How long a server that reports no load is left alone.
        clock: Monotonic seconds; stamps :attr:`ServerLoad.measured_at`.

    Raises:
        ConfigError: `base_url` is not an http(s) URL with a host.
    """

    def __init__(
        self,
        client: httpx2.AsyncClient,
        base_url: str,
        api_key: str | None = None,
        *,
        kind_hint: ServerKind | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        rediscover_after_s: float = DEFAULT_REDISCOVER_AFTER_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._root = server_root(base_url)
        self._headers = auth_headers(api_key)
        hinted = _BY_KIND[kind_hint] if kind_hint is not None else ()
        self._order = (*hinted, *(r for r in _ORDER if r not in hinted))
        self._timeout_s = timeout_s
        self._rediscover_after_s = rediscover_after_s
        self._clock = clock
        self._lock = asyncio.Lock()
        self._known: _Report | None = None
        self._with_metrics = False  # llama-server: /slots plus /metrics for the queue
        self._quiet_until: float | None = None  # reports nothing: not asked before then
        self.problem: str | None = None
        """Why the last :meth:`probe` gave None (one line); None after a reading."""

    @property
    def root(self) -> str:
        """The server's root URL, where the load endpoints are."""
        return self._root

    @property
    def endpoint(self) -> str | None:
        """The URL that reports this server's load, once learnt; None before that."""
        if self._known is None:
            return None
        return f"{self._root}{self._known.path}"

    async def probe(self) -> ServerLoad | None:
        """Ask the server how busy it is.

        Returns:
            The reading; None when the server reports no load, or cannot be asked now
            (:attr:`problem` says which).
        """
        async with self._lock:
            deadline = self._clock() + self._timeout_s
            if self._known is not None:
                outcome = await self._ask_known(self._known, deadline)
                if not isinstance(outcome, _NotHere):
                    return self._settle(outcome)
                self._known = None  # the server changed: learn it again
            elif self._quiet_until is not None and self._clock() < self._quiet_until:
                return None
            return self._settle(await self._discover(deadline))

    def _settle(self, outcome: ServerLoad | _NotHere | _NotNow) -> ServerLoad | None:
        if isinstance(outcome, ServerLoad):
            self.problem = None
            return outcome
        self.problem = outcome.reason
        return None

    async def _discover(self, deadline: float) -> ServerLoad | _NotHere | _NotNow:
        """Walk the endpoints in order; remember the first that reports."""
        misses: list[str] = []
        for report in self._order:
            outcome = await self._ask(report, deadline)
            if isinstance(outcome, _NotNow):
                return outcome
            if isinstance(outcome, _NotHere):
                misses.append(outcome.reason)
                continue
            self._known, self._quiet_until = report, None
            if report is _SLOTS:
                outcome = await self._add_queue(outcome, deadline)
            return outcome
        self._quiet_until = self._clock() + self._rediscover_after_s
        return _NotHere(
            f"{self._root} reports no load ({'; '.join(misses)}); "
            f"hybrid counts its own requests in flight there instead"
        )

    async def _add_queue(self, slots: ServerLoad, deadline: float) -> ServerLoad:
        """A llama-server with ``--metrics`` also says how many requests wait for a slot."""
        metrics = await self._ask(_METRICS, deadline)
        self._with_metrics = (
            isinstance(metrics, ServerLoad) and metrics.source == "llama-server /metrics"
        )
        if isinstance(metrics, ServerLoad) and self._with_metrics:
            return combine_slots_and_metrics(slots, metrics)
        return slots

    async def _ask_known(self, report: _Report, deadline: float) -> ServerLoad | _NotHere | _NotNow:
        if report is not _SLOTS or not self._with_metrics:
            return await self._ask(report, deadline)
        slots, metrics = await asyncio.gather(
            self._ask(_SLOTS, deadline), self._ask(_METRICS, deadline)
        )
        if not isinstance(slots, ServerLoad):
            return slots
        if isinstance(metrics, ServerLoad) and metrics.source == "llama-server /metrics":
            return combine_slots_and_metrics(slots, metrics)
        self._with_metrics = isinstance(metrics, _NotNow)  # gone for good: stop asking
        return slots

    async def _ask(self, report: _Report, deadline: float) -> ServerLoad | _NotHere | _NotNow:
        url = f"{self._root}{report.path}"
        answer = await fetch(self._client, url, self._headers, deadline - self._clock())
        if isinstance(answer, Unreachable):
            return _NotNow(answer.reason)
        return self._read(report, url, answer)

    def _read(self, report: _Report, url: str, answer: Fetched) -> ServerLoad | _NotHere | _NotNow:
        if answer.status in _NOT_NOW:
            return _NotNow(f"{url} answered {answer.status} (loading, or overloaded)")
        if answer.status in (401, 403):
            return _NotHere(f"{report.path}: {answer.status}, the key was refused")
        if answer.status != 200:
            return _NotHere(f"{report.path}: {answer.status}")
        load = report.read(answer.body, self._clock())
        if load is None:
            return _NotHere(f"{report.path}: not {report.what}")
        return load


async def probe_load(
    client: httpx2.AsyncClient,
    base_url: str,
    api_key: str | None = None,
    kind_hint: ServerKind | None = None,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> ServerLoad | None:
    """Ask a server once how busy it is, learning what it reports from scratch.

    A router asks the same server again and again: it keeps a :class:`LoadProbe` per server
    instead, which remembers what worked.

    Args:
        client: The shared HTTP client.
        base_url: The server's OpenAI base URL.
        api_key: Sent as ``Authorization: Bearer``; None for none.
        kind_hint: What the server is, when known.
        timeout_s: The most the whole probe may take.

    Returns:
        The reading, or None when the server reports no load or cannot be asked now.

    Raises:
        ConfigError: `base_url` is not an http(s) URL with a host.
    """
    probe = LoadProbe(client, base_url, api_key, kind_hint=kind_hint, timeout_s=timeout_s)
    return await probe.probe()
