"""What a slot costs: its KV cache and its row of logits; the compute buffer it shares, as a GPU
reserves it and as RAM holds it; the KV cache type a model can run; the embedded model's figures
against the buffers llama.cpp allocates for it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from gguf_writer import embedded_header
from hardware_fakes import GIB, MIB, build_gpu, build_model, build_snapshot

from hybrid.hardware.layout import (
    ACTIVATION_WIDTHS,
    COMPUTE_BUFFER_BYTES,
    UBATCH_TOKENS,
    KvCache,
    ModelFootprint,
    Planner,
    compute_buffer_bytes,
)
from hybrid.hardware.plan import plan_for
from hybrid.hardware.render import render_snapshot_text
from hybrid.models.gguf import read_gguf

# build_model(): 4240 MiB of weights, 128 KiB of f16 KV cache per token.
WEIGHTS = 4240 * MIB
VOCAB, EMBD, HEADS = 128_000, 4096, 32
ACTIVATIONS = ACTIVATION_WIDTHS * 4 * EMBD * UBATCH_TOKENS  # 96 MiB
LOGITS = 4 * VOCAB * UBATCH_TOKENS  # 125 MiB


def llama_8b() -> ModelFootprint:
    return dataclasses.replace(build_model(), n_vocab=VOCAB, n_embd=EMBD, n_head=HEADS)


def test_each_slot_costs_its_kv_cache_and_one_row_of_logits() -> None:
    plan = plan_for(build_snapshot(), llama_8b(), max_ctx=4096, parallel=3)
    kv = int(34 / 64 * 128 * 1024 * 4096)  # q8_0 at 4,096 tokens
    assert plan.n_parallel == 3 and plan.kv_bytes_per_slot == kv
    assert plan.slot_bytes == kv + 4 * VOCAB
    # RAM holds the weights, every slot, and the activations of a batch (flash attention).
    assert plan.memory_required_bytes == WEIGHTS + 3 * plan.slot_bytes + ACTIVATIONS
    assert any("each taking 272 MiB with its own q8_0 KV cache" in note for note in plan.notes)


def test_the_compute_buffer_is_shared_by_the_slots_and_grows_with_context_without_flash() -> None:
    model = llama_8b()
    for slots in (1, 8):
        q8 = KvCache(slots, "q8_0")
        assert q8.compute_bytes(model, 32768, resident=True) == ACTIVATIONS
        assert q8.compute_bytes(model, 32768, resident=False) == LOGITS + ACTIVATIONS
    # Without flash attention a batch's scores and their softmax span the slot's context.
    scores = 2 * 4 * HEADS * 8192 * UBATCH_TOKENS  # 512 MiB
    f16 = KvCache(8, "f16")
    assert f16.compute_bytes(model, 8192, resident=True) == scores + ACTIVATIONS
    assert f16.compute_bytes(model, 8192, resident=False) == scores + ACTIVATIONS
    assert f16.compute_bytes(model, 512, resident=False) == LOGITS + ACTIVATIONS
    # A model whose vocabulary or width is unknown gets the safe figure.
    assert compute_buffer_bytes(build_model(), 8192, flash_attn=True, resident=True) == (
        COMPUTE_BUFFER_BYTES
    )


def test_a_gpu_reserves_the_whole_compute_buffer() -> None:
    snapshot = build_snapshot(gpus=(build_gpu(total=24 * GIB, free=24 * GIB),))
    layout = Planner(snapshot, llama_8b(), KvCache(2, "q8_0")).layout(4096, None)
    (load,) = layout.loads
    assert load.compute_bytes == LOGITS + ACTIVATIONS
    assert load.total_bytes == load.weight_bytes + load.kv_bytes + LOGITS + ACTIVATIONS


def test_auto_keeps_an_f16_cache_for_a_model_without_flash_attention() -> None:
    model = dataclasses.replace(llama_8b(), flash_attn_ok=False)
    auto = plan_for(build_snapshot(), model, parallel=1)
    assert auto.kv_cache_type == "f16" and not auto.flash_attn
    assert any(note.startswith("KV cache f16: its keys and values differ") for note in auto.notes)
    forced = plan_for(build_snapshot(), model, parallel=1, kv_cache_type="q8_0")
    assert forced.kv_cache_type == "q8_0" and forced.flash_attn
    assert any("q8_0 set explicitly, but" in note for note in forced.notes)
    assert plan_for(build_snapshot(), llama_8b(), parallel=1).kv_cache_type == "q8_0"


@pytest.fixture(scope="module")
def gemma(tmp_path_factory: pytest.TempPathFactory) -> ModelFootprint:
    path = embedded_header(tmp_path_factory.mktemp("embedded") / "gemma-3-270m-q4_k_m.gguf")
    return read_gguf(Path(path)).footprint()


def test_the_embedded_model_is_sized_as_llama_cpp_allocates_it(gemma: ModelFootprint) -> None:
    assert (gemma.n_vocab, gemma.n_embd, gemma.n_head, gemma.flash_attn_ok) == (
        262144,
        640,
        4,
        True,
    )
    # llama.cpp's "KV buffer size" lines at 8,192 tokens, swa_full off, n_ubatch 256: the 3
    # full layers and the 15 sliding ones (768 cells each).
    assert KvCache(1, "q8_0").slot_bytes(gemma, 8192) == 13_369_344 + 6_266_880  # 12.75 + 5.98
    assert KvCache(1, "f16").slot_bytes(gemma, 8192) == (24 + 11.25) * MIB
    # Its "output buffer size": 1 MiB a slot; its "compute buffer size": 256.6 MiB reserved,
    # 15 MiB resident with flash attention.
    assert KvCache(4, "q8_0").slot_cost(gemma, 8192) - KvCache(4, "q8_0").slot_bytes(
        gemma, 8192
    ) == (1 * MIB)
    assert KvCache(1, "q8_0").compute_bytes(gemma, 8192, resident=True) == 15 * MIB
    assert KvCache(1, "q8_0").compute_bytes(gemma, 8192, resident=False) == 271 * MIB


def test_the_embedded_model_plans_four_slots_within_the_issue_budget(
    gemma: ModelFootprint,
) -> None:
    plan = plan_for(build_snapshot(), gemma)
    assert (plan.n_parallel, plan.n_ctx, plan.kv_cache_type, plan.flash_attn) == (
        4,
        8192,
        "q8_0",
        True,
    )
    weights = gemma.other_bytes + sum(gemma.layer_bytes)
    assert plan.slot_bytes == plan.kv_bytes_per_slot + MIB
    assert plan.memory_required_bytes == weights + 4 * plan.slot_bytes + 15 * MIB
    single = plan_for(build_snapshot(), gemma, parallel=1)
    # Weights 235 MiB, one slot 20 MiB, activations 15 MiB: 270 MiB beside the process itself.
    assert single.memory_required_bytes < 271 * MIB
    assert plan.memory_required_bytes - single.memory_required_bytes == 3 * plan.slot_bytes


def test_probe_shows_the_slots_what_each_costs_and_where_the_memory_goes(
    gemma: ModelFootprint,
) -> None:
    snapshot = build_snapshot()
    text = render_snapshot_text(snapshot, [("gemma-3-270m", plan_for(snapshot, gemma))])
    assert (
        "slots: 4 x 8,192 tokens, KV cache q8_0 with flash attention; each slot 20 MiB "
        "(KV cache 19 MiB); needs 329 MiB = 4 x 20 MiB + 250 MiB of weights and compute buffer"
    ) in text
    # Fewer slots than asked: the row says how many, the note why.
    short = build_snapshot(total=64 * GIB, available=60 * GIB, cgroup_limit=GIB, cgroup_usage=0)
    plan = plan_for(short, gemma, parallel=64, max_ctx=32768)
    text = render_snapshot_text(short, [("gemma-3-270m", plan)])
    assert 1 < plan.n_parallel < 64
    assert f"{plan.n_parallel} slots (KV q8_0, 57 MiB each)" in text
    assert f"- {plan.n_parallel} slots, not the 64 set in local.parallel: each slot" in text
