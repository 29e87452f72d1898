"""``GET /health`` shows the local model's slots: how many, how many are busy, the context and KV
cache each holds, what each costs, and why there are that many."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient
from gguf_writer import embedded_header
from hardware_fakes import GIB, MIB, build_snapshot
from scripted import ScriptedBackend, ScriptedRuntime, scripted_app

from hybrid.hardware.snapshot import HardwareSnapshot
from hybrid.local.slot import LoadedModel, plan_load
from hybrid.settings import Settings


class PlannedRuntime(ScriptedRuntime):
    """A scripted model with the plan the embedded model gets on ``machine``, two slots busy."""

    def __init__(self, settings: Settings, path: Path, machine: HardwareSnapshot) -> None:
        backend = ScriptedBackend()
        self.planned = plan_load(settings.local, path, machine, model_id="gemma-3-270m")
        plan = self.planned.plan
        backend.context_length = plan.n_ctx
        backend.queue = SimpleNamespace(
            depth=2,
            waiting=0,
            max_waiting=8,
            slots=plan.n_parallel,
            running=min(2, plan.n_parallel),
            expected_wait_s=lambda: 0.0,
        )
        super().__init__(settings, backend)

    @property
    def loaded(self) -> LoadedModel | None:
        return self.planned if self.state == "ready" else None


@pytest.fixture(scope="module")
def gemma(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return embedded_header(tmp_path_factory.mktemp("model") / "gemma-3-270m-q4_k_m.gguf")


def slots_of(settings: Settings, runtime: PlannedRuntime) -> dict[str, Any]:
    with TestClient(scripted_app(settings, runtime=runtime)) as client:
        response = client.get("/health")
    assert response.status_code == 200
    slots: dict[str, Any] = response.json()["slots"]
    return slots


def test_health_shows_the_slots_and_what_each_costs(
    settings_for: Callable[..., Settings], gemma: Path
) -> None:
    settings = settings_for(**{"probe.measure_bandwidth": False})
    runtime = PlannedRuntime(settings, gemma, build_snapshot())
    plan = runtime.planned.plan

    slots = slots_of(settings, runtime)

    assert slots == {
        "total": 4,
        "busy": 2,
        "n_ctx_per_slot": 8192,
        "kv_cache_type": "q8_0",
        "flash_attn": True,
        "kv_bytes_per_slot": plan.kv_bytes_per_slot,
        "bytes_per_slot": plan.kv_bytes_per_slot + MIB,  # and a row of 262k logits
        "memory_required_bytes": plan.memory_required_bytes,
        "note": "4 slots of 8,192 tokens (planned), each taking 20 MiB with its own q8_0 KV cache",
        "decode_tokens_per_s_by_batch": {},
    }


def test_health_says_why_fewer_slots_than_asked_were_planned(
    settings_for: Callable[..., Settings], gemma: Path
) -> None:
    settings = settings_for(
        **{"probe.measure_bandwidth": False, "local.parallel": 16, "local.n_ctx": 32768}
    )
    # 724 MiB free in a 1 GiB container, 256 MiB of it kept free: 250 MiB for the weights and
    # the activations, 58 MiB for each slot of 32,768 tokens: 3 slots fit.
    machine = build_snapshot(
        total=64 * GIB, available=60 * GIB, cgroup_limit=GIB, cgroup_usage=300 * MIB
    )
    runtime = PlannedRuntime(settings, gemma, machine)

    slots = slots_of(settings, runtime)

    assert slots["total"] == 3 and slots["n_ctx_per_slot"] == 32768
    assert slots["note"].startswith(
        f"{slots['total']} slots, not the 16 set in local.parallel: each slot (q8_0 KV cache of "
        "32,768 tokens) takes 58 MiB, and of the 724 MiB of free RAM (container limit 1.0 GiB), "
        "less 256 MiB kept free,"
    )
