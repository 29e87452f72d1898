"""Slots in the plan: how many fit, what each costs, the KV cache's type and sliding windows."""

from __future__ import annotations

from pathlib import Path

import pytest
from gguf_writer import embedded_header
from hardware_fakes import GIB, MIB, build_model, build_snapshot

from hybrid.errors import ConfigError
from hybrid.hardware.layout import UBATCH_TOKENS, KvCache, ModelFootprint
from hybrid.hardware.plan import COMPUTE_BUFFER_BYTES, DEFAULT_SLOTS, plan_for
from hybrid.hardware.snapshot import HardwareSnapshot
from hybrid.models.gguf import read_gguf

# build_model(): 4240 MiB of weights, 128 KiB of f16 KV cache per token (1 GiB at 8,192).
WEIGHTS = 4240 * MIB
Q8_SCALE = 34 / 64  # q8_0 keeps 32 values in 34 bytes, f16 in 64


def limited() -> HardwareSnapshot:
    # 6 GiB limit with 512 MiB in use: 5325 MiB of budget after the 307 MiB margin, 573 MiB of
    # it left for KV caches after the weights and the compute buffer.
    return build_snapshot(
        total=64 * GIB, available=60 * GIB, cgroup_limit=6 * GIB, cgroup_usage=512 * MIB
    )


def test_a_roomy_machine_gets_four_q8_0_slots_each_costing_its_cache() -> None:
    plan = plan_for(build_snapshot(), build_model(), max_ctx=8192)
    slot = int(Q8_SCALE * 1 * GIB)
    assert plan.n_parallel == DEFAULT_SLOTS == 4
    assert plan.kv_cache_type == "q8_0" and plan.flash_attn
    assert plan.kv_bytes_per_slot == slot
    assert plan.memory_required_bytes == WEIGHTS + 4 * slot + COMPUTE_BUFFER_BYTES
    assert any("4 slots of 8,192 tokens (planned)" in note for note in plan.notes)


@pytest.mark.parametrize(("max_ctx", "slots"), [(2048, 4), (4096, 2), (8192, 1)])
def test_fewer_slots_are_planned_when_memory_is_short_and_the_note_says_why(
    max_ctx: int, slots: int
) -> None:
    plan = plan_for(limited(), build_model(), max_ctx=max_ctx)
    assert plan.fits and plan.n_ctx == max_ctx
    assert plan.n_parallel == slots
    if slots < 4:
        note = next(note for note in plan.notes if "slot" in note and "not the 4" in note)
        assert note.startswith(f"{slots} slot") and f"KV cache of {max_ctx:,} tokens" in note


def test_the_note_says_what_a_slot_takes_and_what_is_left_beside_the_slots_planned() -> None:
    plan = plan_for(limited(), build_model(), max_ctx=4096)
    # 573 MiB for KV caches; 2 slots of 272 MiB (q8_0, 4,096 tokens) leave 29 MiB.
    assert plan.slot_bytes == plan.kv_bytes_per_slot == int(Q8_SCALE * GIB / 2)
    assert (
        "2 slots, not the 4 planned: each slot (q8_0 KV cache of 4,096 tokens) takes 272 MiB, "
        "and of the 5.5 GiB of free RAM (container limit 6.0 GiB), less 307 MiB kept free, "
        "29 MiB is left beside them; a smaller local.n_ctx leaves room for more"
    ) in plan.notes


def test_slots_asked_for_are_planned_as_far_as_they_fit() -> None:
    plan = plan_for(limited(), build_model(), max_ctx=4096, parallel=3)
    assert plan.fits and plan.n_parallel == 2
    note = next(note for note in plan.notes if "slot" in note)
    assert note.startswith("2 slots, not the 3 set in local.parallel: each slot (q8_0 KV cache")
    roomy = plan_for(build_snapshot(), build_model(), parallel=8)
    assert roomy.n_parallel == 8
    assert any("8 slots of 8,192 tokens (set in local.parallel)" in n for n in roomy.notes)
    with pytest.raises(ConfigError, match=r"local\.parallel"):
        plan_for(build_snapshot(), build_model(), parallel=0)


def test_an_f16_cache_takes_twice_the_room_and_no_flash_attention() -> None:
    f16 = plan_for(build_snapshot(), build_model(), parallel=2, kv_cache_type="f16")
    q8 = plan_for(build_snapshot(), build_model(), parallel=2, kv_cache_type="q8_0")
    assert f16.kv_bytes_per_slot == 1 * GIB and not f16.flash_attn
    assert q8.kv_bytes_per_slot == int(Q8_SCALE * GIB) and q8.flash_attn
    assert f16.memory_required_bytes - q8.memory_required_bytes == 2 * (
        f16.kv_bytes_per_slot - q8.kv_bytes_per_slot
    )
    with pytest.raises(ConfigError, match="kv_cache_type"):
        plan_for(build_snapshot(), build_model(), kv_cache_type="q4_0")


def test_sliding_window_layers_keep_their_window_and_one_batch() -> None:
    base = build_model(kv_bytes_per_token=6000)
    model = ModelFootprint(
        file_bytes=base.file_bytes,
        n_layers=base.n_layers,
        layer_bytes=base.layer_bytes,
        other_bytes=base.other_bytes,
        kv_bytes_per_token=6000,
        context_length=base.context_length,
        swa_kv_bytes_per_token=5000,
        sliding_window=1024,
    )
    cache = KvCache(1, "f16")
    # Full layers: 1000 bytes a token over the whole context; sliding ones: their window.
    assert cache.slot_bytes(model, 8192) == 1000 * 8192 + 5000 * (1024 + UBATCH_TOKENS)
    # A context shorter than the window holds it whole.
    assert cache.slot_bytes(model, 1024) == 6000 * 1024
    assert KvCache(3, "f16").total_bytes(model, 8192) == 3 * cache.slot_bytes(model, 8192)


def test_the_embedded_gemma_slides_five_layers_of_six(tmp_path: Path) -> None:
    info = read_gguf(embedded_header(tmp_path / "gemma-3-270m-q4_k_m.gguf"))
    assert info.architecture == "gemma3" and info.block_count == 18
    assert info.sliding_window == 512 and info.sliding_layers == 15
    per_layer = info.kv_bytes_per_token // info.block_count
    assert info.swa_kv_bytes_per_token == 15 * per_layer
    footprint = info.footprint()
    # At 8,192 tokens a q8_0 slot holds 3 full layers and 15 windows of 512 + 256 cells.
    slot = KvCache(1, "q8_0").slot_bytes(footprint, 8192)
    assert slot == int(Q8_SCALE * per_layer * (3 * 8192 + 15 * 768))
    assert slot < 0.2 * info.kv_bytes_per_token * 8192  # an f16 cache of every layer
