"""What the fake cloud serves as a LAN inference server: one engine's health, model-list and
load endpoints, with the bodies and error styles that engine has.

=============  =========================================================================
lan_kind       what it serves besides the generation endpoints
=============  =========================================================================
llama-server   ``/health`` (``{"status": "ok"}``; 503 with llama.cpp's error body while
               `loading`), ``/slots`` (one object per slot, ``is_processing`` true for the
               first `running`), ``/metrics`` (llama.cpp's Prometheus text with
               ``--metrics``; 501 without), ``/v1/models`` and ``/models``; 404s as
               llama.cpp's JSON error.  ``/slots`` and ``/metrics`` need the key when one is
               set; ``/health`` and the model list do not.  While `loading`, generation
               requests get the same 503 as ``/health``.
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

Every engine answers anything but GET on these endpoints with 405.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal, get_args

from fake_cloud_answers import Answer, Request

LanKind = Literal["llama-server", "vllm", "ollama", "hybrid"]
LAN_KINDS: tuple[LanKind, ...] = get_args(LanKind)

_GENERATION = frozenset({"/v1/chat/completions", "/v1/completions", "/v1/messages"})
_LOADING = {"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}}
_CREATED = 1735142223


@dataclass(frozen=True)
class LanState:
    """What one LAN server reports while it answers one request.

    Attributes:
        kind: Which engine it speaks as.
        models: What its model list holds (Ollama: every pulled model).
        slots: llama-server's ``--parallel``, hybrid's slots.
        metrics: llama-server only: started with ``--metrics``.
        running: Requests being generated (llama-server, vLLM, hybrid).
        waiting: Requests queued (llama-server's deferred, vLLM's waiting, hybrid's queue).
        loading: llama-server and hybrid: the model is still loading.
        loaded: Ollama: the models in memory.
    """

    kind: LanKind
    models: tuple[str, ...]
    slots: int
    metrics: bool
    running: int
    waiting: int
    loading: bool
    loaded: tuple[str, ...]


def generates(request: Request) -> bool:
    """Whether `request` asks for generation (chat, completion, message) rather than for one of
    the endpoints a probe reads."""
    return request.method == "POST" and request.path in _GENERATION


def refusal(state: LanState, request: Request) -> Answer | None:
    """The answer a generation request gets instead of one, or None: llama-server refuses
    every request with 503 while its model loads."""
    if state.kind == "llama-server" and state.loading and generates(request):
        return _json(503, _LOADING)
    return None


def lan_answer(state: LanState, request: Request, keyed: bool) -> Answer:
    """The engine's answer to a request for anything but generation.

    Args:
        state: What the server reports now.
        request: What arrived.
        keyed: The request carries the key, or none is needed.
    """
    if request.method != "GET":
        return _json(405, {"error": {"code": 405, "message": "Method Not Allowed"}})
    path = request.path
    if state.kind == "llama-server":
        return _llama_server(state, path, keyed)
    if state.kind == "vllm":
        return _vllm(state, path, keyed)
    if state.kind == "ollama":
        return _ollama(state, path)
    return _hybrid(state, path, keyed)


def lan_not_found(kind: LanKind, path: str) -> Answer:
    """The engine's 404 for a path it does not serve."""
    if kind == "llama-server":
        message = {"code": 404, "message": "File Not Found", "type": "not_found_error"}
        return _json(404, {"error": message})
    if kind == "vllm":
        return _json(404, {"detail": "Not Found"})
    if kind == "ollama":
        return Answer(404, (("content-type", "text/plain"),), b"404 page not found")
    no_route = f"no route GET {path}; see GET /v1/models and /health"
    return _json(404, {"error": {"message": no_route, "type": "invalid_request_error"}})


def _model_list(models: tuple[str, ...], owner: str, **extra: object) -> Answer:
    data = [
        {"id": model, "object": "model", "created": _CREATED, "owned_by": owner, **extra}
        for model in models
    ]
    return _json(200, {"object": "list", "data": data})


def _llama_server(state: LanState, path: str, keyed: bool) -> Answer:
    if path in ("/health", "/v1/health"):
        return _json(503, _LOADING) if state.loading else _json(200, {"status": "ok"})
    if path in ("/v1/models", "/models"):
        meta = None if state.loading else {"n_ctx_train": 32768, "n_params": 32e9}
        return _model_list(state.models, "llamacpp", meta=meta)
    if path not in ("/slots", "/metrics"):
        return lan_not_found("llama-server", path)
    if not keyed:
        message = {"code": 401, "message": "Invalid API Key", "type": "authentication_error"}
        return _json(401, {"error": message})
    if state.loading:
        return _json(503, _LOADING)
    if path == "/slots":
        return _json(200, [_slot(i, i < state.running) for i in range(state.slots)])
    if not state.metrics:
        unsupported = "This server does not support metrics endpoint. Start it with `--metrics`"
        error = {"code": 501, "message": unsupported, "type": "not_supported_error"}
        return _json(501, {"error": error})
    return _text(_llama_metrics(state.running, state.waiting), "text/plain; version=0.0.4")


def _vllm(state: LanState, path: str, keyed: bool) -> Answer:
    if path == "/health":
        return Answer(200, (("content-type", "application/json"),), b"")
    if path == "/metrics":
        text = _vllm_metrics(state.models[0], state.running, state.waiting)
        return _text(text, "text/plain; version=0.0.4; charset=utf-8")
    if path != "/v1/models":
        return lan_not_found("vllm", path)
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
        for model in state.models
    ]
    return _json(200, {"object": "list", "data": data})


def _ollama(state: LanState, path: str) -> Answer:
    if path == "/":
        return _text("Ollama is running", "text/plain; charset=utf-8")
    if path == "/api/ps":
        return _json(200, {"models": [_ollama_ps_entry(name) for name in state.loaded]})
    if path == "/v1/models":
        return _model_list(state.models, "library")
    return lan_not_found("ollama", path)


def _hybrid(state: LanState, path: str, keyed: bool) -> Answer:
    if path == "/health":
        if state.loading:
            return _json(503, {"status": "loading", "local": {"state": "loading"}})
        health = _hybrid_health(state.models[0], state.slots, state.running, state.waiting)
        return _json(200, health)
    if path in ("/v1/models", "/metrics") and not keyed:
        message = {"message": "missing or wrong API key", "type": "authentication_error"}
        return _json(401, {"error": message})
    if path == "/v1/models":
        return _model_list(state.models, "hybrid")
    if path == "/metrics":
        text = (
            "# HELP hybrid_requests_total Requests answered.\n"
            "# TYPE hybrid_requests_total counter\n"
            'hybrid_requests_total{route="local"} 12.0\n'
        )
        return _text(text, "text/plain; version=0.0.4; charset=utf-8")
    return lan_not_found("hybrid", path)


def _json(status: int, payload: object) -> Answer:
    content_type = ("content-type", "application/json; charset=utf-8")
    return Answer(status, (content_type,), json.dumps(payload).encode())


def _text(text: str, content_type: str) -> Answer:
    return Answer(200, (("content-type", content_type),), text.encode())


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
