"""``GET /v1/models`` and ``GET /health``."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from hybrid.api.state import app_state
from hybrid.errors import ModelNotFoundError
from hybrid.routing.difficulty.store import SUMMARY_KEYS
from hybrid.routing.names import ALIASES, ModelNames
from hybrid.routing.policies.difficulty import CalibrationStatus
from hybrid.service.service import Service

router = APIRouter()


@router.get("/v1/models")
async def list_models(request: Request) -> dict[str, Any]:
    """The served local model, every other local model a request can name (the server
    switches to it first), the aliases, and the cloud models of every provider that can
    answer."""
    state = app_state(request)
    loaded = state.runtime.loaded
    created = int(loaded.path.stat().st_mtime) if loaded is not None else 0
    served = state.runtime.model_id
    names = state.dispatcher.names
    # A name a provider claims (gpt-oss:20b, with OpenAI's key) goes there, so is not listed.
    others = [
        (model.name, "hybrid", _modified(model.path))
        for model in await state.switching.available()
        if not model.serving and _unclaimed(names, model.name, served)
    ]
    entries = [
        (served, "hybrid", created),
        *others,
        *((alias, "hybrid", created) for alias in ALIASES),
        # Only providers with their key: a name listed here is one a request can use.
        *((qualified, qualified.split("/", 1)[0], created) for qualified in names.cloud_models()),
    ]
    return {
        "object": "list",
        "data": [
            {"id": name, "object": "model", "created": when, "owned_by": owner}
            for name, owner, when in entries
        ],
    }


def _unclaimed(names: ModelNames, name: str, served: str) -> bool:
    """Whether a request naming ``name`` reaches the local models (no alias or provider has it)."""
    try:
        names.resolve(name, local_id=served)
    except ModelNotFoundError:
        return True
    return False


def _modified(path: Path) -> int:
    try:
        return int(path.stat().st_mtime)
    except OSError:
        return 0


@router.get(
    "/health",
    responses={503: {"description": "The model is still loading, or failed to load."}},
)
async def health(request: Request) -> JSONResponse:
    """200 with the model, queue and hardware once the model is ready; 503 before that.

    ``local`` is the model's lifecycle as ``GET /v1/hybrid/model`` shows it (``state``
    ``switching`` while a switch loads, ``loading`` with the model loading).  A model unloaded
    while idle (``local.keep_alive``) answers 200 with status ``unloaded``: the server can
    answer, and the next request reloads it.

    ``slots`` (with the model loaded): ``total`` slots decoded together and ``busy`` ones,
    ``n_ctx_per_slot``, ``kv_cache_type``, ``flash_attn``, ``kv_bytes_per_slot`` (one slot's KV
    cache), ``bytes_per_slot`` (what each slot costs: its KV cache and its logits),
    ``memory_required_bytes`` (weights, every slot and the compute buffer), ``note`` (how many
    slots were planned and why, e.g. fewer than asked when memory is short) and
    ``decode_tokens_per_s_by_batch``.

    ``calibration`` says which difficulty calibration the router uses: ``state`` (``waiting``
    while the model loads or its file is looked up, ``found``, ``prior``, ``missing``,
    ``unusable``), ``source`` (``user``, ``shipped``, or ``prior`` when the model runs on a
    prior from its size and family), ``path``, ``created``, ``items``, ``held_out_auroc`` and
    ``problem`` (why it is unusable), None where they do not apply; ``prior`` (the prior's
    ``expected_accuracy``, ``parameters``, ``family``, ``quantization`` and ``threshold``, or
    None) and ``background`` (background calibration's ``state``, ``done``, ``total``,
    ``correct``, ``accuracy``, ``message`` and ``updated``, or None when it is off or not
    needed) and ``refit`` (refitting from labelled traffic while serving: ``refit_after``,
    the served model's usable ``labels`` at the last look, how many of them scores are
    ``read_beside`` now, and the ``last`` refit's ``time``,
    ``labels``, ``adopted``, ``message``, ``traffic_weight``, ``word_weight`` and
    ``model_stage``: whether the probe was refitted on the labelled requests' prompt vectors;
    None when it is off).

    ``routing``: ``escalates_to``, the cloud model a request the local model should not answer
    goes to (None with no cloud configured), ``lan_first``, the names of the LAN servers tried
    before it (``[[lan.servers]]``, see ``lan``; with neither, the local model answers every
    request), and ``cascade``: ``enabled`` (``routing.cascade.enabled``), ``reads_answers``
    (it is on and a cloud or a LAN server can take a discarded answer: only then are local
    answers read before they are sent) and ``min_confidence`` (None when it is off).

    ``lan`` (with ``[[lan.servers]]``): the ``strategy`` and each server's ``name``,
    ``base_url``, ``models``, ``trusted``, ``up`` (and the ``error`` that marked it down),
    ``in_flight`` (hybrid's requests there), ``max_concurrency``, ``utilisation``, its last
    ``load`` report and ``load_endpoint``, ``answered`` and its breaker's ``circuit``.
    """
    state = app_state(request)
    runtime = state.runtime
    body: dict[str, Any] = {"status": "ok" if runtime.state == "ready" else runtime.state}
    if runtime.error is not None:
        body["error"] = runtime.error
    # The lifecycle (GET /v1/hybrid/model): switching, unloaded while idle, the model loading.
    body["local"] = runtime.status().to_json()
    loaded = runtime.loaded
    if loaded is not None and runtime.state == "ready":
        backend = runtime.backend()
        plan = loaded.plan
        body["model"] = {
            "id": loaded.model_id,
            "path": str(loaded.path),
            "architecture": loaded.info.architecture,
            "quantization": loaded.info.file_type,
            "chat_template": loaded.info.chat_template is not None,
            "n_ctx": backend.context_length,
            "n_threads": plan.n_threads,
            "n_gpu_layers": plan.n_gpu_layers,
            "predicted_tokens_per_s": plan.predicted_tokens_per_s,
            "measured_decode_tokens_per_s": backend.speed.decode_tokens_per_s,
        }
        body["queue"] = {
            "depth": backend.queue.depth,
            "waiting": backend.queue.waiting,
            "max_waiting": backend.queue.max_waiting,
            "expected_wait_s": round(backend.queue.expected_wait_s(), 3),
        }
        # The slots decoded together: what each costs and why there are that many.
        body["slots"] = {
            "total": backend.queue.slots,
            "busy": backend.queue.running,
            "n_ctx_per_slot": backend.context_length,
            "kv_cache_type": plan.kv_cache_type,
            "flash_attn": plan.flash_attn,
            "kv_bytes_per_slot": plan.kv_bytes_per_slot,
            "bytes_per_slot": plan.slot_bytes,
            "memory_required_bytes": plan.memory_required_bytes,
            "note": next((note for note in plan.notes if " slot" in note), None),
            "decode_tokens_per_s_by_batch": {
                str(size): round(rate, 1)
                for size, rate in backend.speed.aggregate_decode_tokens_per_s.items()
            },
        }
        body["hardware"] = _hardware_summary(state, loaded.snapshot.to_dict())
    if state.calibration is not None:
        lookup = state.calibration.status()
        body["calibration"] = _calibration_summary(lookup)
        progress = state.background.progress() if state.background is not None else None
        if progress is not None and lookup.state == "found" and progress.state == "waiting":
            progress = None  # calibrated already: background calibration will not run
        body["calibration"]["background"] = progress.to_json() if progress else None
        refitter = state.refitter
        body["calibration"]["refit"] = (
            None
            if refitter is None
            else {
                "refit_after": refitter.refit_after,
                "labels": refitter.labels,
                "read_beside": refitter.read_beside(),
                "last": refitter.last.to_json() if refitter.last is not None else None,
            }
        )
    body["routing"] = _routing_summary(state)
    body["providers"] = {
        name: {
            "usable": state.dispatcher.names.usable(name),
            "circuit": provider.breaker.snapshot(),
        }
        for name, provider in state.providers.items()
    }
    lan = state.dispatcher.lan
    if lan is not None:
        body["lan"] = {"strategy": lan.pool.strategy, "servers": lan.pool.to_json()}
    # Unloaded while idle, the server still answers: the next request reloads the model.
    status = 200 if runtime.state in ("ready", "unloaded") else 503
    headers = {} if status == 200 else {"Retry-After": "5"}
    return JSONResponse(body, status_code=status, headers=headers)


def _routing_summary(state: Service) -> dict[str, Any]:
    dispatcher = state.dispatcher
    target = dispatcher.names.default_target
    cascade = dispatcher.answer_cascade
    lan = dispatcher.lan_names
    return {
        "escalates_to": target.qualified if target is not None else None,
        "lan_first": list(lan),
        "cascade": {
            "enabled": cascade is not None,
            "reads_answers": cascade is not None and (target is not None or bool(lan)),
            "min_confidence": cascade.min_confidence if cascade is not None else None,
        },
    }


def _calibration_summary(status: CalibrationStatus) -> dict[str, Any]:
    if status.found is not None:
        found = status.found.summary()
    else:
        found = dict.fromkeys(SUMMARY_KEYS)
    prior: dict[str, Any] | None = None
    if status.prior is not None:
        found["source"] = "prior"
        meta = status.prior.meta
        prior = {
            key: meta.get(key)
            for key in ("expected_accuracy", "parameters", "family", "quantization")
        }
        prior["threshold"] = round(status.prior.threshold, 4)
    return {"state": status.state, **found, "problem": status.problem, "prior": prior}


def _hardware_summary(state: Service, snapshot: dict[str, Any]) -> dict[str, Any]:
    summary: dict[str, Any] = {"snapshot": snapshot}
    if state.sampler is not None:
        summary["live"] = dataclasses.asdict(state.sampler.latest())
    return summary
