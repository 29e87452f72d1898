"""A fake LAN inference server: a real HTTP server on loopback speaking one engine's health,
model-list and load endpoints exactly as that engine does.

=============  =========================================================================
kind           what it serves
=============  =========================================================================
llama-server   ``/health`` (``{"status": "ok"}``; 503 with llama.cpp's error body while
               `loading`), ``/slots`` (one object per slot, ``is_processing`` true for the
               first `running`), ``/metrics`` (llama.cpp's Prometheus text with
               ``--metrics``; 501 without), ``/v1/models`` and ``/models``; 404s as
               llama.cpp's JSON error.  ``/slots`` and ``/metrics`` need the key when one is
               set; ``/health`` and the model list do not.
vllm           ``/health`` (200, empty body), ``/metrics`` (vLLM's gauges, labelled by
               engine and model), ``/v1/models`` (vLLM's model cards, key needed when set);
               404s as FastAPI's ``{"detail": "Not Found"}``.
ollama         ``/`` ("Ollama is running"), ``/api/ps`` (the `loaded` models),
               ``/v1/models``; 404s as Go's plain "404 page not found".
hybrid         ``/health`` (hybrid's body with its ``model``, ``queue`` and ``slots``
               blocks; 503 ``{"status": "loading"}`` while `loading`), ``/metrics``
               (hybrid's own metrics, none of an engine's), ``/v1/models``; 404s as
               hybrid's JSON error.
=============  =========================================================================

Faults are set per path with `FakeLan.fail` and last until `FakeLan.heal`::

    "malformed"   a 200 with half the body and a line of garbage, which does not parse
    "html"        a 200 with an HTML page (a proxy's, a web UI's)
    "hang_up"     the connection closed, unanswered
    "cut"         the head and half the body, then the connection closed
    "silence"     no answer at all until the client leaves
    <int>         that status, with a short JSON error body

Like `FakeCloud`, it runs its own event loop in a background thread, so sync and async tests
alike can drive it; every property is safe to set from the test thread.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Sequence
from types import TracebackType
from typing import Literal

from fake_cloud_http import read_request

Kind = Literal["llama-server", "vllm", "ollama", "hybrid"]
Fault = Literal["malformed", "html", "hang_up", "cut", "silence"] | int

_LOADING = {"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}}
_CREATED = 1735142223


class FakeLan:
    """One LAN server of one `kind` on a loopback port (see the module docstring).

    Args:
        kind: Which engine it speaks as.
        models: What its model list holds (Ollama: every pulled model).
        slots: llama-server's ``--parallel``, hybrid's slots.
        metrics: llama-server only: started with ``--metrics``.
        api_key: The key the guarded endpoints need; None for none.
    """

    def __init__(
        self,
        kind: Kind,
        *,
        models: Sequence[str] = ("qwen2.5-32b",),
        slots: int = 4,
        metrics: bool = True,
        api_key: str | None = None,
    ) -> None:
        self.kind: Kind = kind
        self.models = tuple(models)
        self.slots = slots
        self.metrics = metrics
        self.api_key = api_key
        self._lock = threading.Lock()
        self.running = 0
        """Requests being generated now (llama-server, vLLM, hybrid)."""
        self.waiting = 0
        """Requests queued (llama-server's deferred, vLLM's waiting, hybrid's queue)."""
        self.loaded: tuple[str, ...] = self.models[:1]
        """Ollama: the models in memory (``/api/ps``)."""
        self.loading = False
        """llama-server and hybrid: the model is loading (``/health`` answers 503)."""
        self._faults: dict[str, Fault] = {}
        self._paths: list[str] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._port: int | None = None

    # --- lifecycle

    def start(self) -> FakeLan:
        """Listen on a free loopback port, serving from a background thread."""
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="fake-lan", daemon=True)
        thread.start()
        listen = asyncio.start_server(self._serve, "127.0.0.1", self._port or 0)
        server = asyncio.run_coroutine_threadsafe(listen, loop).result(timeout=10)
        self._loop, self._thread, self._server = loop, thread, server
        self._port = int(server.sockets[0].getsockname()[1])
        return self

    def stop(self) -> None:
        """Stop listening and drop open connections; connecting to `port` is refused after."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
        self._loop = self._thread = self._server = None

    def __enter__(self) -> FakeLan:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # --- what tests read and set

    @property
    def root(self) -> str:
        """``http://127.0.0.1:<port>``."""
        assert self._port is not None, "start() the FakeLan first"
        return f"http://127.0.0.1:{self._port}"

    @property
    def base_url(self) -> str:
        """The OpenAI base URL: the root plus ``/v1``."""
        return f"{self.root}/v1"

    @property
    def paths(self) -> list[str]:
        """Every path asked so far, in order."""
        with self._lock:
            return list(self._paths)

    def forget(self) -> None:
        """Forget the paths asked so far."""
        with self._lock:
            self._paths.clear()

    def fail(self, path: str, fault: Fault) -> None:
        """Answer every request to `path` with `fault` until `heal`."""
        with self._lock:
            self._faults[path] = fault

    def heal(self) -> None:
        """Drop every fault."""
        with self._lock:
            self._faults.clear()

    # --- the server thread

    async def _shutdown(self) -> None:
        assert self._server is not None
        self._server.close()
        await asyncio.sleep(0)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            while (request := await read_request(reader)) is not None:
                with self._lock:
                    self._paths.append(request.path)
                    fault = self._faults.get(request.path)
                status, content_type, body = self._answer(
                    request.method, request.path, request.headers.get("authorization")
                )
                if fault == "silence":
                    while await reader.read(65536):
                        pass
                    break
                if fault == "hang_up":
                    break
                if isinstance(fault, int):
                    status, content_type = fault, "application/json"
                    body = json.dumps({"error": {"code": fault, "message": "fault"}}).encode()
                elif fault == "malformed":
                    status, body = 200, body[: max(len(body) // 2, 1)] + b"\n}{ malformed\n"
                elif fault == "html":
                    status, content_type = 200, "text/html"
                    body = b"<!doctype html><html><body>Sign in</body></html>"
                head = _head(status, content_type, len(body))
                if fault == "cut":
                    writer.write(head + body[: len(body) // 2])
                    await writer.drain()
                    break
                writer.write(head + body)
                await writer.drain()
                if not request.keep_alive:
                    break
            writer.close()
        except (asyncio.CancelledError, ConnectionError, asyncio.IncompleteReadError, ValueError):
            writer.transport.abort()
        finally:
            self._tasks.discard(task)

    def _answer(self, method: str, path: str, authorization: str | None) -> tuple[int, str, bytes]:
        with self._lock:
            running, waiting, loaded, loading = (
                self.running,
                self.waiting,
                self.loaded,
                self.loading,
            )
        keyed = self.api_key is None or authorization == f"Bearer {self.api_key}"
        if method != "GET":
            return _json(405, {"error": {"code": 405, "message": "Method Not Allowed"}})
        if self.kind == "llama-server":
            return self._llama_server(path, keyed, running, waiting, loading)
        if self.kind == "vllm":
            return self._vllm(path, keyed, running, waiting)
        if self.kind == "ollama":
            return self._ollama(path, loaded)
        return self._hybrid(path, keyed, running, waiting, loading)

    def _llama_server(
        self, path: str, keyed: bool, running: int, waiting: int, loading: bool
    ) -> tuple[int, str, bytes]:
        if path in ("/health", "/v1/health"):
            return _json(503, _LOADING) if loading else _json(200, {"status": "ok"})
        if path in ("/v1/models", "/models"):
            data = [
                {
                    "id": model,
                    "object": "model",
                    "created": _CREATED,
                    "owned_by": "llamacpp",
                    "meta": None if loading else {"n_ctx_train": 32768, "n_params": 32e9},
                }
                for model in self.models
            ]
            return _json(200, {"object": "list", "data": data})
        if path not in ("/slots", "/metrics"):
            message = {"code": 404, "message": "File Not Found", "type": "not_found_error"}
            return _json(404, {"error": message})
        if not keyed:
            message = {"code": 401, "message": "Invalid API Key", "type": "authentication_error"}
            return _json(401, {"error": message})
        if loading:
            return _json(503, _LOADING)
        if path == "/slots":
            return _json(200, [_slot(i, i < running) for i in range(self.slots)])
        if not self.metrics:
            unsupported = "This server does not support metrics endpoint. Start it with `--metrics`"
            error = {"code": 501, "message": unsupported, "type": "not_supported_error"}
            return _json(501, {"error": error})
        return 200, "text/plain; version=0.0.4", _llama_metrics(running, waiting).encode()

    def _vllm(self, path: str, keyed: bool, running: int, waiting: int) -> tuple[int, str, bytes]:
        if path == "/health":
            return 200, "application/json", b""
        if path == "/metrics":
            return (
                200,
                "text/plain; version=0.0.4; charset=utf-8",
                _vllm_metrics(self.models[0], running, waiting).encode(),
            )
        if path == "/v1/models":
            if not keyed:
                return _json(401, {"error": "Unauthorized"})
            data: list[dict[str, object]] = [
                {
                    "id": model,
                    "object": "model",
                    "created": _CREATED,
                    "owned_by": "vllm",
                    "root": model,
                    "parent": None,
                    "max_model_len": 32768,
                    "permission": [],
                }
                for model in self.models
            ]
            return _json(200, {"object": "list", "data": data})
        return _json(404, {"detail": "Not Found"})

    def _ollama(self, path: str, loaded: tuple[str, ...]) -> tuple[int, str, bytes]:
        if path == "/":
            return 200, "text/plain; charset=utf-8", b"Ollama is running"
        if path == "/api/ps":
            return _json(200, {"models": [_ollama_ps_entry(name) for name in loaded]})
        if path == "/v1/models":
            data = [
                {"id": m, "object": "model", "created": _CREATED, "owned_by": "library"}
                for m in self.models
            ]
            return _json(200, {"object": "list", "data": data})
        return 404, "text/plain", b"404 page not found"

    def _hybrid(
        self, path: str, keyed: bool, running: int, waiting: int, loading: bool
    ) -> tuple[int, str, bytes]:
        if path == "/health":
            if loading:
                return _json(503, {"status": "loading", "local": {"state": "loading"}})
            return _json(200, _hybrid_health(self.models[0], self.slots, running, waiting))
        if path in ("/v1/models", "/metrics") and not keyed:
            message = {"message": "missing or wrong API key", "type": "authentication_error"}
            return _json(401, {"error": message})
        if path == "/v1/models":
            data = [
                {"id": m, "object": "model", "created": _CREATED, "owned_by": "hybrid"}
                for m in self.models
            ]
            return _json(200, {"object": "list", "data": data})
        if path == "/metrics":
            text = (
                "# HELP hybrid_requests_total Requests answered.\n"
                "# TYPE hybrid_requests_total counter\n"
                'hybrid_requests_total{route="local"} 12.0\n'
            )
            return 200, "text/plain; version=0.0.4; charset=utf-8", text.encode()
        no_route = f"no route GET {path}; see GET /v1/models and /health"
        return _json(404, {"error": {"message": no_route, "type": "invalid_request_error"}})


def _json(status: int, payload: object) -> tuple[int, str, bytes]:
    return status, "application/json; charset=utf-8", json.dumps(payload).encode()


def _head(status: int, content_type: str, length: int) -> bytes:
    reasons = {200: "OK", 401: "Unauthorized", 404: "Not Found", 501: "Not Implemented"}
    lines = [
        f"HTTP/1.1 {status} {reasons.get(status, 'Status')}",
        f"Content-Type: {content_type}",
        f"Content-Length: {length}",
        "Connection: keep-alive",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _slot(slot_id: int, processing: bool) -> dict[str, object]:
    """One entry of llama-server's /slots, as its README shows it (parameters abridged)."""
    return {
        "id": slot_id,
        "id_task": 135 + slot_id if processing else -1,
        "n_ctx": 8192,
        "speculative": False,
        "is_processing": processing,
        "params": {"n_predict": -1, "seed": 4294967295, "temperature": 0.8, "top_k": 40},
        "next_token": {
            "has_next_token": processing,
            "has_new_line": False,
            "n_remain": -1,
            "n_decoded": 17 if processing else 0,
        },
    }


def _llama_metrics(running: int, waiting: int) -> str:
    """llama-server's /metrics with --metrics, every family it prints, in its order."""
    families = [
        ("prompt_tokens_total", "Number of prompt tokens processed.", "counter", "6886"),
        ("prompt_seconds_total", "Prompt process time", "counter", "2903.63"),
        ("tokens_predicted_total", "Number of generation tokens processed.", "counter", "3469"),
        ("tokens_predicted_seconds_total", "Predict process time", "counter", "3544.27"),
        ("n_decode_total", "Total number of llama_decode() calls", "counter", "3467"),
        (
            "n_busy_slots_per_decode",
            "Average number of busy slots per llama_decode() call",
            "counter",
            "1.2",
        ),
        ("prompt_tokens_seconds", "Average prompt throughput in tokens/s.", "gauge", "2.37151"),
        ("predicted_tokens_seconds", "Average generation throughput in tokens/s.", "gauge", "nan"),
        ("requests_processing", "Number of requests processing.", "gauge", str(running)),
        ("requests_deferred", "Number of requests deferred.", "gauge", str(waiting)),
    ]
    lines: list[str] = []
    for name, help_text, kind, value in families:
        lines += [
            f"# HELP llamacpp:{name} {help_text}",
            f"# TYPE llamacpp:{name} {kind}",
            f"llamacpp:{name} {value}",
        ]
    return "\n".join(lines) + "\n"


def _vllm_metrics(model: str, running: int, waiting: int) -> str:
    """vLLM's /metrics: process metrics, its request gauges (one sample per engine), a
    histogram."""
    labels = f'engine="0",model_name="{model}"'
    return (
        "# HELP python_gc_objects_collected_total Objects collected during gc\n"
        "# TYPE python_gc_objects_collected_total counter\n"
        'python_gc_objects_collected_total{generation="0"} 12345.0\n'
        "# HELP vllm:num_requests_running Number of requests in model execution batches.\n"
        "# TYPE vllm:num_requests_running gauge\n"
        f"vllm:num_requests_running{{{labels}}} {float(running)}\n"
        "# HELP vllm:num_requests_waiting Number of requests waiting to be processed.\n"
        "# TYPE vllm:num_requests_waiting gauge\n"
        f"vllm:num_requests_waiting{{{labels}}} {float(waiting)}\n"
        "# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.\n"
        "# TYPE vllm:kv_cache_usage_perc gauge\n"
        f"vllm:kv_cache_usage_perc{{{labels}}} 0.25\n"
        "# HELP vllm:time_to_first_token_seconds Histogram of time to first token in seconds.\n"
        "# TYPE vllm:time_to_first_token_seconds histogram\n"
        f'vllm:time_to_first_token_seconds_bucket{{{labels},le="0.1"}} 3.0\n'
        f'vllm:time_to_first_token_seconds_bucket{{{labels},le="+Inf"}} 4.0\n'
        f"vllm:time_to_first_token_seconds_count{{{labels}}} 4.0\n"
        f"vllm:time_to_first_token_seconds_sum{{{labels}}} 0.61\n"
    )


def _ollama_ps_entry(name: str) -> dict[str, object]:
    return {
        "name": name,
        "model": name,
        "size": 21474836480,
        "digest": "a" * 64,
        "details": {
            "parent_model": "",
            "format": "gguf",
            "family": "qwen2",
            "families": ["qwen2"],
            "parameter_size": "32.8B",
            "quantization_level": "Q4_K_M",
        },
        "expires_at": "2099-01-01T00:05:00.000000000Z",
        "size_vram": 21474836480,
        "context_length": 4096,
    }


def _hybrid_health(model: str, slots: int, running: int, waiting: int) -> dict[str, object]:
    """hybrid's /health once its model is ready (the blocks a load probe reads, and others)."""
    return {
        "status": "ok",
        "local": {"state": "ready"},
        "model": {"id": model, "n_ctx": 8192, "quantization": "Q4_K_M"},
        "queue": {
            "depth": running + waiting,
            "waiting": waiting,
            "max_waiting": 64,
            "expected_wait_s": 0.0,
        },
        "slots": {"total": slots, "busy": running, "n_ctx_per_slot": 8192},
        "calibration": {"state": "found"},
    }
