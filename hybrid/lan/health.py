"""Whether a LAN inference server is up, and the models it serves.

:func:`probe_health` asks ``GET {root}/health`` first, where the server has one: llama-server
answers 503 while its model loads (and ``/v1/models`` may already list the model then), vLLM
and hybrid answer 200 once ready, hybrid 503 while loading.  A 404 (Ollama, llama-cpp-python's
server) says nothing either way.  Then ``GET {base_url}/models`` gives the models; a server
whose list cannot be read is down, since no request could be routed to it by model.

Nothing here raises because of the server: every failure is a :class:`ServerHealth` that is
down, with the reason in one line.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx2
import orjson

from hybrid.lan.fetch import (
    DEFAULT_TIMEOUT_S,
    Fetched,
    Unreachable,
    auth_headers,
    fetch,
    models_url,
    server_root,
)


@dataclass(frozen=True)
class ServerHealth:
    """One health check of one LAN server.

    Attributes:
        up: It answered, is ready, and listed its models.
        models: The model ids ``GET {base_url}/models`` listed (empty when down).
        error: Why it is down, in one line; None when up.
        loading: Down because its model is still loading (a 503 from ``/health``): worth
            asking again soon.
        latency_s: Seconds the check took, every request together; None when no request was
            answered.
        checked_at: When it was checked, on the prober's clock.
    """

    up: bool
    models: tuple[str, ...]
    error: str | None
    loading: bool
    latency_s: float | None
    checked_at: float

    def serves(self, model: str) -> bool:
        """Whether `model` is among the ids it listed."""
        return model in self.models

    def to_json(self) -> dict[str, Any]:
        """The fields as a JSON object (for ``/health`` and ``hybrid probe``)."""
        return {
            "up": self.up,
            "models": list(self.models),
            "error": self.error,
            "loading": self.loading,
            "latency_ms": round(self.latency_s * 1000, 1) if self.latency_s is not None else None,
        }


async def probe_health(
    client: httpx2.AsyncClient,
    base_url: str,
    api_key: str | None = None,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    clock: Callable[[], float] = time.monotonic,
) -> ServerHealth:
    """Check that a LAN server is up, and list its models.

    Args:
        client: The shared HTTP client (its own timeouts are overridden by `timeout_s`).
        base_url: The server's OpenAI base URL (``http://gpu-box:8080/v1``).
        api_key: Sent as ``Authorization: Bearer``; None for none.
        timeout_s: The most the whole check may take, every request together.
        clock: Monotonic seconds; stamps :attr:`ServerHealth.checked_at`.

    Returns:
        The result; down with a reason for anything the server did wrong.

    Raises:
        ConfigError: `base_url` is not an http(s) URL with a host.
    """
    root, listing = server_root(base_url), models_url(base_url)
    headers = auth_headers(api_key)
    started = clock()
    deadline = started + timeout_s
    elapsed = 0.0

    def down(error: str, *, answered: bool = True, loading: bool = False) -> ServerHealth:
        latency = elapsed if answered else None
        return ServerHealth(False, (), error, loading, latency, clock())

    health = await fetch(client, f"{root}/health", headers, deadline - clock())
    if isinstance(health, Unreachable):
        return down(health.reason, answered=False)
    elapsed = health.elapsed_s
    if health.status == 503:
        return down(f"{root}/health: {_loading_message(health)}", loading=True)
    if health.status >= 500:
        return down(f"{root}/health answered {health.status}")
    # 200: ready.  Any 4xx: no /health here (Ollama and llama-cpp-python's server have none).
    answer = await fetch(client, listing, headers, deadline - clock())
    if isinstance(answer, Unreachable):
        return down(answer.reason)
    elapsed += answer.elapsed_s
    if answer.status in (401, 403):
        return down(
            f"{listing} answered {answer.status}: the server refused the key "
            f"(check the variable named by api_key_env)"
        )
    if answer.status != 200:
        return down(f"{listing} answered {answer.status}")
    models = _model_ids(answer.body)
    if models is None:
        return down(f"{listing} did not answer an OpenAI model list ({_excerpt(answer.body)})")
    return ServerHealth(True, models, None, False, elapsed, clock())


def _model_ids(body: bytes) -> tuple[str, ...] | None:
    """The ``id`` of every entry in an OpenAI model list, or None when it is not one."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, list):
        return None
    ids = [entry.get("id") if isinstance(entry, dict) else None for entry in data]
    if not all(isinstance(model_id, str) and model_id for model_id in ids):
        return None
    return tuple(str(model_id) for model_id in ids)


def _loading_message(answer: Fetched) -> str:
    """What a 503 from /health says: llama-server's ``error.message``, hybrid's ``status``."""
    try:
        payload = orjson.loads(answer.body)
    except orjson.JSONDecodeError:
        payload = None
    if isinstance(payload, dict):
        error = payload.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return f"503, {error['message']}"
        if isinstance(payload.get("status"), str):
            return f"503, {payload['status']}"
    return "503, not ready (loading its model?)"


def _excerpt(body: bytes, limit: int = 80) -> str:
    """The start of a body, on one line, for an error message."""
    text = " ".join(body.decode("utf-8", "replace").split())
    if not text:
        return "an empty body"
    return repr(text if len(text) <= limit else text[:limit] + "...")
