"""A fake ``hybrid serve`` admin API for the monitor's tests, speaking docs/events.md exactly.

:class:`FakeDaemon` is an ``httpx2.MockTransport`` handler: the monitor's real
:class:`~hybrid.monitor.client.DaemonClient` talks to it over (fake) HTTP and parses real SSE
bytes.  The body builders return the JSON of docs/events.md, with keyword overrides.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import httpx2

T0 = 1_795_000_000.0
"""A fixed "now" for the tests: 2026-11-18 11:06:40 UTC."""


def synchronous(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test on a fresh event loop."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return run


def totals(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "requests": 12,
        "local": 9,
        "cloud": 3,
        "errors": 0,
        "prompt_tokens": 1804,
        "completion_tokens": 960,
        "cloud_spend_usd": 0.0042,
        "cost_avoided_usd": 0.0131,
        "local_share": 0.75,
    }
    return body | overrides


def budget(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "daily_spend_usd": 0.0042,
        "daily_cap_usd": 1.0,
        "monthly_spend_usd": 0.31,
        "monthly_cap_usd": None,
        "state": "ok",
    }
    return body | overrides


def record(request_id: str = "3f2a", **overrides: Any) -> dict[str, Any]:
    """A ``request_finished`` body; a local answer unless overridden."""
    body: dict[str, Any] = {
        "id": request_id,
        "time": T0 - 30,
        "api": "openai",
        "route": "local",
        "reasons": ["difficulty:0.21<=0.52"],
        "verdicts": [
            {"policy": "privacy", "outcome": "pass", "reason": "privacy:none", "score": None},
            {
                "policy": "difficulty",
                "outcome": "local",
                "reason": "difficulty:0.21<=0.52",
                "score": 0.21,
            },
        ],
        "score": 0.21,
        "model_requested": "gpt-4.1-mini",
        "model": "gemma-3-270m-q4_k_m",
        "provider": "local",
        "prompt_tokens": 31,
        "completion_tokens": 12,
        "tokens_estimated": False,
        "ttft_s": 0.041,
        "latency_s": 0.232,
        "status": "ok",
        "error": None,
        "cloud_cost_usd": 0.0,
        "counterfactual_model": "openai/gpt-4.1-mini",
        "counterfactual_cost_usd": 0.0000316,
        "energy_cost_usd": 0.0000004,
        "cost_avoided_usd": 0.0000312,
        "price_known": True,
        "leg": None,
    }
    return body | overrides


def refused_record(request_id: str = "5b7d", **overrides: Any) -> dict[str, Any]:
    """A ``request_finished`` body for a request refused before any model ran (queue full)."""
    body = record(
        request_id,
        route="none",
        status="refused",
        reasons=["error:rate_limit_exceeded"],
        verdicts=[],
        score=None,
        model="none",
        provider="none",
        prompt_tokens=0,
        completion_tokens=0,
        ttft_s=None,
        latency_s=0.002,
        error="the local model's queue is full (3 waiting); retry in 1 s",
        counterfactual_model=None,
        counterfactual_cost_usd=None,
        energy_cost_usd=0.0,
        cost_avoided_usd=0.0,
        decided=None,
    )
    return body | overrides


def cloud_record(request_id: str = "9c1d", **overrides: Any) -> dict[str, Any]:
    """A ``request_finished`` body for a request that went to OpenAI."""
    body = record(
        request_id,
        route="cloud",
        reasons=["difficulty:0.83>0.52"],
        verdicts=[
            {"policy": "privacy", "outcome": "pass", "reason": "privacy:none", "score": None},
            {
                "policy": "difficulty",
                "outcome": "cloud",
                "reason": "difficulty:0.83>0.52",
                "score": 0.83,
            },
        ],
        score=0.83,
        model="gpt-4.1-mini",
        provider="openai",
        prompt_tokens=420,
        completion_tokens=380,
        ttft_s=0.61,
        latency_s=2.4,
        cloud_cost_usd=0.00077,
        counterfactual_model=None,
        counterfactual_cost_usd=None,
        energy_cost_usd=None,
        cost_avoided_usd=0.0,
    )
    return body | overrides


def hardware(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "time": T0 - 1,
        "cpu_percent": 38.5,
        "memory_percent": 61.2,
        "memory_available_bytes": 8_123_456_789,
        "gpu_utilization_percent": None,
        "vram_used_bytes": None,
        "vram_total_bytes": None,
        "battery_percent": 84.0,
        "on_battery": False,
        "queue_depth": 0,
        "decode_tokens_per_s": 68.9,
        "model": "gemma-3-270m-q4_k_m",
        "model_state": "ready",
    }
    return body | overrides


def stats(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "today": totals(),
        "all_time": totals(
            requests=1480,
            local=1203,
            cloud=277,
            errors=4,
            prompt_tokens=512_000,
            completion_tokens=260_000,
            cloud_spend_usd=0.93,
            cost_avoided_usd=4.27,
            local_share=1203 / 1480,
        ),
        "budget": budget(),
        "mode": "auto",
        "model": {"id": "gemma-3-270m-q4_k_m", "state": "ready"},
        "version": "0.1.0",
    }
    return body | overrides


def shared_ledger(instance: str = "edge-01") -> dict[str, Any]:
    """The ``ledger`` object of a daemon writing a PostgreSQL ledger shared by a fleet."""
    return {"shared": True, "instance": instance}


def by_instance(
    rows: list[tuple[str, dict[str, Any], dict[str, Any], float | None]],
    *,
    ledger: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A ``GET /v1/hybrid/stats?by=instance`` body: one ``(name, today, all_time, last_time)``
    per daemon; an instance that wrote nothing today has no group under ``today``."""

    def group(name: str, body: dict[str, Any], last: float | None) -> dict[str, Any]:
        latency = {"samples": 0, "p50_s": None, "p95_s": None}
        return {"key": name, "totals": body, "latency": latency, "last_time": last}

    return stats(ledger=ledger or shared_ledger()) | {
        "by": "instance",
        "groups": {
            "today": [group(n, today, last) for n, today, _, last in rows if today["requests"]],
            "all_time": [group(n, every, last) for n, _, every, last in rows],
        },
    }


def snapshot(**overrides: Any) -> dict[str, Any]:
    """A ``snapshot`` body: the stats, ``recent`` (newest first) and ``hardware``."""
    body = stats() | {
        "recent": [record("r2", time=T0 - 20), cloud_record("r1", time=T0 - 90)],
        "hardware": hardware(),
    }
    return body | overrides


def sse(name: str, data: Any) -> bytes:
    """One event as the daemon writes it."""
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()


class _Drop:
    """Queued to end a stream: abruptly (a dropped connection) or cleanly."""

    def __init__(self, *, abrupt: bool) -> None:
        self.abrupt = abrupt


class FakeDaemon:
    """The admin API of a daemon that the test drives.

    Attributes:
        up: False refuses connections, as when no daemon is running.
        snapshot_body: What each new stream starts with.
        api_key: The key requests must carry, None for none.
        mode_posts: The bodies of every ``POST /v1/hybrid/mode``.
        mode_status: The status ``POST /v1/hybrid/mode`` answers with.
        connections: How many event streams were opened.
    """

    def __init__(self, *, up: bool = True, api_key: str | None = None) -> None:
        self.up = up
        self.api_key = api_key
        self.snapshot_body: dict[str, Any] = snapshot()
        self.mode_posts: list[Any] = []
        self.mode_status = 200
        self.connections = 0
        self.seen_headers: list[httpx2.Headers] = []
        # The bodies of every POST /v1/hybrid/feedback; ids it knows are the snapshot's.
        self.feedback_posts: list[Any] = []
        # Why no refit can learn from a label on a local answer (the daemon's message).
        self.feedback_unusable: str | None = None
        # What GET /health answers; None answers 404, as a daemon too old to have it.
        self.health_body: dict[str, Any] | None = None
        # What GET /v1/hybrid/stats?by=instance answers, with fleet_status; every such read.
        self.fleet_body: dict[str, Any] | None = None
        self.fleet_status = 200
        self.fleet_reads = 0
        self._streams: list[asyncio.Queue[bytes | _Drop]] = []

    def transport(self) -> httpx2.MockTransport:
        return httpx2.MockTransport(self.handle)

    @property
    def open_streams(self) -> int:
        return len(self._streams)

    def send(self, name: str, data: Any) -> None:
        """Send one event to every open stream."""
        for queue in self._streams:
            queue.put_nowait(sse(name, data))

    def send_raw(self, chunk: bytes) -> None:
        for queue in self._streams:
            queue.put_nowait(chunk)

    def drop(self, *, abrupt: bool = True) -> None:
        """End every open stream: a reset connection, or (abrupt=False) a clean close."""
        for queue in self._streams:
            queue.put_nowait(_Drop(abrupt=abrupt))
        self._streams = []

    async def handle(self, request: httpx2.Request) -> httpx2.Response:
        if not self.up:
            raise httpx2.ConnectError("[Errno 111] Connection refused", request=request)
        self.seen_headers.append(request.headers)
        if self.api_key is not None and request.headers.get("authorization") != (
            f"Bearer {self.api_key}"
        ):
            return httpx2.Response(401, json={"error": {"message": "invalid api key"}})
        route = (request.method, request.url.path)
        if route == ("GET", "/v1/hybrid/events"):
            return self._open_stream()
        if route == ("GET", "/v1/hybrid/stats") and request.url.params.get("by") == "instance":
            self.fleet_reads += 1
            if self.fleet_status != 200:
                message = "the ledger's database is unavailable; records wait in the journal"
                return httpx2.Response(self.fleet_status, json={"error": {"message": message}})
            own = {"shared": False, "instance": "laptop"}
            return httpx2.Response(200, json=self.fleet_body or by_instance([], ledger=own))
        if route == ("GET", "/v1/hybrid/stats"):
            return httpx2.Response(200, json=stats(mode=self.snapshot_body["mode"]))
        if route == ("GET", "/health") and self.health_body is not None:
            return httpx2.Response(200, json=self.health_body)
        if route == ("POST", "/v1/hybrid/feedback"):
            return self._feedback(json.loads(request.content))
        if route == ("POST", "/v1/hybrid/mode"):
            body = json.loads(request.content)
            self.mode_posts.append(body)
            if self.mode_status != 200:
                return httpx2.Response(self.mode_status, json={"error": {"message": "no"}})
            self.snapshot_body = self.snapshot_body | {"mode": body["mode"]}
            self.send("mode", {"mode": body["mode"]})
            return httpx2.Response(200, json={"mode": body["mode"]})
        return httpx2.Response(404, json={"error": {"message": "not found"}})

    def _feedback(self, body: dict[str, Any]) -> httpx2.Response:
        """Answer a label as the daemon does: 404 for an id it does not hold."""
        self.feedback_posts.append(body)
        answers = {r["id"]: r for r in self.snapshot_body["recent"] if r.get("leg") is None}
        answer = answers.get(body["request_id"])
        if answer is None:
            message = f"the ledger holds no request with id {body['request_id']!r}"
            return httpx2.Response(404, json={"error": {"message": message}})
        route = answer["route"]
        unusable = self.feedback_unusable
        if route != "local":
            where = "LAN" if route == "lan" else route
            unusable = (
                f"a {where} answer says nothing about the local model: the label is kept, but "
                f"no refit can learn from it"
            )
        return httpx2.Response(
            200,
            json={
                "request_id": body["request_id"],
                "good": body["good"],
                "source": "feedback",
                "route": route,
                "about_local": route == "local",
                "replaced": False,
                "usable": unusable is None,
                "message": unusable,
            },
        )

    def _open_stream(self) -> httpx2.Response:
        self.connections += 1
        queue: asyncio.Queue[bytes | _Drop] = asyncio.Queue()
        queue.put_nowait(sse("snapshot", self.snapshot_body))
        self._streams.append(queue)

        async def body() -> AsyncIterator[bytes]:
            while True:
                item = await queue.get()
                if isinstance(item, _Drop):
                    if item.abrupt:
                        raise httpx2.RemoteProtocolError(
                            "peer closed connection without sending complete message body"
                        )
                    return
                yield item

        return httpx2.Response(
            200, headers={"content-type": "text/event-stream; charset=utf-8"}, content=body()
        )
