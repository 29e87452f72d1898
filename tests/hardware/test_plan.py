"""plan_for: threads, GPU layers, context size, fit and speed on machines built from fakes."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hardware_fakes import GIB, MIB, build_gpu, build_model, build_snapshot

from hybrid.errors import ConfigError
from hybrid.hardware.plan import (
    COMPUTE_BUFFER_BYTES,
    DECODE_EFFICIENCY,
    RuntimePlan,
    busy_cores,
    derive_threads,
    serving_plan,
)
from hybrid.hardware.plan import plan_for as plan_slots
from hybrid.hardware.snapshot import PowerInfo
from hybrid.settings import MAX_CONTEXT_TOKENS, LocalSettings

# build_model(): 32 blocks x 120 MiB + 400 MiB outside them = 4240 MiB of weights in a
# 4248 MiB file; 128 KiB of KV cache per token = 32 MiB per block at n_ctx 8192.
WEIGHTS = 4240 * MIB
FILE = 4248 * MIB
KV_8K = 1 * GIB


def one_slot(**settings: Any) -> LocalSettings:
    """``local`` settings of one slot with an f16 KV cache."""
    return LocalSettings(parallel=1, kv_cache_type="f16", **settings)


def plan_for(*args: Any, **kwargs: Any) -> RuntimePlan:
    """One slot with an f16 KV cache: the figures above (slots and q8_0: test_plan_slots.py)."""
    return plan_slots(*args, **{"parallel": 1, "kv_cache_type": "f16", **kwargs})


def test_no_gpu_runs_on_the_cpu_with_the_settings_context_cap() -> None:
    plan = plan_for(build_snapshot(), build_model(), max_ctx=8192)

    assert plan.n_gpu_layers == 0
    assert plan.n_ctx == 8192
    assert plan.n_threads == 7  # 8 physical cores, one left for the server
    assert plan.fits
    assert plan.memory_required_bytes == WEIGHTS + KV_8K + COMPUTE_BUFFER_BYTES
    assert plan.predicted_tokens_per_s == pytest.approx(DECODE_EFFICIENCY * 50e9 / FILE)
    assert any("capped at 8,192 by settings" in note for note in plan.notes)
    assert any("no GPU found" in note for note in plan.notes)


def test_small_gpu_takes_only_the_layers_that_fit() -> None:
    # 2 GiB free - 512 MiB margin - 512 MiB compute buffer = 1024 MiB for blocks of
    # 120 MiB weights + 32 MiB KV: six fit (912 MiB), seven would not (1064 MiB).
    small = build_gpu(total=4 * GIB, free=2 * GIB, name="NVIDIA GeForce RTX 3050")
    cpu_only = plan_for(build_snapshot(), build_model())
    plan = plan_for(build_snapshot(gpus=(small,)), build_model())

    assert plan.n_gpu_layers == 6
    assert plan.fits
    assert plan.n_ctx == 8192
    assert any(
        "6 of 32 layers on the GPU: 6 on NVIDIA GeForce RTX 3050" in note and "RTX 3050" in note
        for note in plan.notes
    )
    assert plan.predicted_tokens_per_s is not None and cpu_only.predicted_tokens_per_s is not None
    assert plan.predicted_tokens_per_s > cpu_only.predicted_tokens_per_s
    gpu_bytes = 6 * 120 * MIB
    expected = 1 / ((FILE - gpu_bytes) / 50e9 + gpu_bytes / 400e9)
    assert plan.predicted_tokens_per_s == pytest.approx(DECODE_EFFICIENCY * expected)


def test_large_gpu_takes_every_layer_and_the_output_head() -> None:
    large = build_gpu(total=24 * GIB, free=23 * GIB, bandwidth=1000e9)
    plan = plan_for(build_snapshot(gpus=(large,)), build_model())

    assert plan.n_gpu_layers == 33  # n_layers + 1: every block and the output head
    assert plan.fits
    assert any("every layer and the output head" in note for note in plan.notes)
    # Only the header bytes are left for the CPU to read.
    expected = 1 / (WEIGHTS / 1000e9 + (FILE - WEIGHTS) / 50e9)
    assert plan.predicted_tokens_per_s == pytest.approx(DECODE_EFFICIENCY * expected)


def test_gpu_is_ignored_when_the_llama_cpp_build_cannot_offload() -> None:
    large = build_gpu(total=24 * GIB, free=23 * GIB, name="NVIDIA GeForce RTX 4090")
    plan = plan_for(build_snapshot(gpus=(large,), offload=False), build_model())

    assert plan.n_gpu_layers == 0
    assert any("cannot offload" in note and "RTX 4090" in note for note in plan.notes)


def test_gpu_too_full_for_one_layer_leaves_everything_on_the_cpu() -> None:
    busy = build_gpu(total=8 * GIB, free=1 * GIB)
    plan = plan_for(build_snapshot(gpus=(busy,)), build_model())

    assert plan.n_gpu_layers == 0
    assert plan.fits
    assert any("no layer fits" in note for note in plan.notes)


def test_layers_spill_over_two_gpus() -> None:
    # Each: 3 GiB free - 512 MiB - 512 MiB = 2048 MiB, thirteen 152 MiB blocks.
    first = build_gpu(total=3 * GIB, free=3 * GIB, name="GPU A", index=0)
    second = build_gpu(total=3 * GIB, free=3 * GIB, name="GPU B", index=1)
    plan = plan_for(build_snapshot(gpus=(first, second)), build_model())

    assert plan.n_gpu_layers == 26
    note = next(note for note in plan.notes if "layers on the GPU" in note)
    assert "13 on GPU A" in note and "13 on GPU B" in note


def test_container_limit_shrinks_the_context_to_what_fits() -> None:
    # 6 GiB limit with 512 MiB in use: 5632 MiB usable, less a 307 MiB margin (5 % of 6 GiB),
    # less 4240 MiB weights and the 512 MiB compute buffer leaves 572.8 MiB of KV cache:
    # 4582 tokens, 4352 on the 256 grid.
    roomy = build_snapshot(total=64 * GIB, available=60 * GIB)
    limited = build_snapshot(
        total=64 * GIB, available=60 * GIB, cgroup_limit=6 * GIB, cgroup_usage=512 * MIB
    )
    assert plan_for(roomy, build_model()).n_ctx == 8192

    plan = plan_for(limited, build_model())

    assert plan.fits
    assert plan.n_ctx == 4352
    assert any(
        "reduced to 4,352" in note and "container limit 6.0 GiB" in note for note in plan.notes
    )
    # 4352 is the largest that fits: 256 more does not.
    assert not plan_for(limited, build_model(), n_ctx=4352 + 256).fits


def test_container_limit_below_the_weights_does_not_fit() -> None:
    limited = build_snapshot(
        total=64 * GIB, available=60 * GIB, cgroup_limit=4 * GIB, cgroup_usage=512 * MIB
    )
    plan = plan_for(limited, build_model())

    assert not plan.fits
    assert plan.n_ctx == 512
    assert any(note.startswith("does not fit") for note in plan.notes)


def test_unified_memory_still_counts_offloaded_weights_against_ram() -> None:
    # Same 5 GiB of free RAM: a discrete GPU takes the weights out of RAM, Apple's cannot.
    discrete = build_gpu(total=24 * GIB, free=24 * GIB)
    apple = build_gpu(
        vendor="apple",
        name="Apple M2 GPU",
        total=16 * GIB * 2 // 3,
        free=5 * GIB,
        unified=True,
        bandwidth=100e9,
    )

    assert plan_for(
        build_snapshot(gpus=(discrete,), total=16 * GIB, available=5 * GIB), build_model()
    ).fits
    assert not plan_for(
        build_snapshot(gpus=(apple,), total=16 * GIB, available=5 * GIB), build_model()
    ).fits


def test_roomy_apple_silicon_offloads_everything_and_counts_memory_once() -> None:
    apple = build_gpu(
        vendor="apple",
        name="Apple M2 Pro GPU",
        total=32 * GIB * 2 // 3,
        free=21 * GIB,
        unified=True,
        bandwidth=200e9,
    )
    plan = plan_for(
        build_snapshot(gpus=(apple,), total=32 * GIB, available=24 * GIB), build_model()
    )

    assert plan.fits
    assert plan.n_gpu_layers == 33
    assert plan.memory_required_bytes == WEIGHTS + KV_8K + 2 * COMPUTE_BUFFER_BYTES


def test_on_battery_adds_a_warning_but_plans_the_same() -> None:
    on_ac = plan_for(build_snapshot(), build_model())
    on_battery = plan_for(
        build_snapshot(power=PowerInfo(battery_percent=23.0, on_battery=True)), build_model()
    )

    assert (on_battery.n_threads, on_battery.n_ctx, on_battery.n_gpu_layers) == (
        on_ac.n_threads,
        on_ac.n_ctx,
        on_ac.n_gpu_layers,
    )
    assert any("on battery (23 %)" in note for note in on_battery.notes)
    assert not any("battery" in note for note in on_ac.notes)


def test_explicit_values_override_the_derived_ones() -> None:
    large = build_gpu(total=24 * GIB, free=23 * GIB)
    plan = plan_for(
        build_snapshot(gpus=(large,)), build_model(), n_threads=3, n_ctx=2048, n_gpu_layers=10
    )

    assert (plan.n_threads, plan.n_ctx, plan.n_gpu_layers) == (3, 2048, 10)
    assert plan.fits
    assert any("n_threads 3 set explicitly" in note for note in plan.notes)
    assert any("n_ctx 2,048 set explicitly" in note for note in plan.notes)
    assert any("n_gpu_layers 10 set explicitly" in note for note in plan.notes)


def test_explicit_all_layers_is_passed_through_and_costs_the_same_as_derived_all() -> None:
    large = build_gpu(total=24 * GIB, free=23 * GIB)
    derived = plan_for(build_snapshot(gpus=(large,)), build_model())
    explicit = plan_for(build_snapshot(gpus=(large,)), build_model(), n_gpu_layers=-1)

    assert explicit.n_gpu_layers == -1
    assert explicit.memory_required_bytes == derived.memory_required_bytes
    assert explicit.predicted_tokens_per_s == derived.predicted_tokens_per_s


def test_explicit_layers_beyond_the_vram_do_not_fit() -> None:
    small = build_gpu(total=4 * GIB, free=2 * GIB)
    plan = plan_for(build_snapshot(gpus=(small,)), build_model(), n_gpu_layers=20)

    assert plan.n_gpu_layers == 20
    assert not plan.fits
    assert any("lower n_gpu_layers" in note for note in plan.notes)


def test_explicit_gpu_layers_without_a_gpu_are_noted_as_ineffective() -> None:
    plan = plan_for(build_snapshot(), build_model(), n_gpu_layers=-1)

    assert plan.fits
    assert any("has no effect: no GPU found" in note for note in plan.notes)


def test_explicit_context_too_large_for_ram_does_not_fit() -> None:
    small = build_snapshot(total=8 * GIB, available=6 * GIB)
    plan = plan_for(small, build_model(), n_ctx=32768)

    assert plan.n_ctx == 32768
    assert not plan.fits


def test_serving_refuses_an_explicit_context_that_does_not_fit_and_names_one_that_does() -> None:
    # As in test_container_limit_shrinks_the_context_to_what_fits: 4,352 is the largest that
    # fits.  At 32,768: 4240 MiB weights + 4 GiB KV cache + 512 MiB compute = 8.6 GiB.
    limited = build_snapshot(
        total=64 * GIB, available=60 * GIB, cgroup_limit=6 * GIB, cgroup_usage=512 * MIB
    )

    with pytest.raises(ConfigError) as refused:
        serving_plan(limited, build_model(), one_slot(n_ctx=32768))

    assert str(refused.value) == (
        "context size 32,768 (local.n_ctx) does not fit this machine: the model needs 8.6 GiB "
        "of RAM, but only 5.5 GiB of free RAM (container limit 6.0 GiB) is left and 307 MiB of "
        "it is kept free; set a smaller context (--ctx or HYBRID_LOCAL__N_CTX; at most 4,352 "
        "fits here), or leave it unset to let hybrid choose"
    )
    assert serving_plan(limited, build_model(), one_slot(n_ctx=4352)).n_ctx == 4352


def test_serving_a_context_no_machine_holds_names_the_largest_that_fits_here() -> None:
    snapshot = build_snapshot()

    with pytest.raises(ConfigError) as refused:
        serving_plan(
            snapshot,
            build_model(),
            one_slot(n_ctx=MAX_CONTEXT_TOKENS),
        )

    found = re.search(r"at most ([\d,]+) fits here", str(refused.value))
    assert found is not None, refused.value
    largest = int(found.group(1).replace(",", ""))
    assert plan_for(snapshot, build_model(), n_ctx=largest).fits
    assert not plan_for(snapshot, build_model(), n_ctx=largest + 256).fits


def test_serving_refuses_an_explicit_context_when_not_even_the_smallest_fits() -> None:
    limited = build_snapshot(
        total=64 * GIB, available=60 * GIB, cgroup_limit=4 * GIB, cgroup_usage=512 * MIB
    )

    with pytest.raises(ConfigError, match=r"not even 512 tokens fit: close other programs"):
        serving_plan(limited, build_model(), one_slot(n_ctx=2048))
    # A derived context that does not fit is still tried, as before (with a warning).
    assert not serving_plan(limited, build_model(), one_slot()).fits


def test_serving_an_explicit_context_with_too_many_gpu_layers_says_to_lower_them() -> None:
    small = build_gpu(total=4 * GIB, free=2 * GIB, name="NVIDIA GeForce RTX 3050")
    local = one_slot(n_ctx=8192, n_gpu_layers=20)

    with pytest.raises(ConfigError) as refused:
        serving_plan(build_snapshot(gpus=(small,)), build_model(), local)

    message = str(refused.value)
    assert "on NVIDIA GeForce RTX 3050, which has 2.0 GiB free" in message
    assert message.endswith("lower n_gpu_layers (--gpu-layers) or leave it unset")


def test_explicit_context_beyond_training_is_warned_about() -> None:
    plan = plan_for(build_snapshot(), build_model(context_length=4096), n_ctx=8192)

    assert plan.n_ctx == 8192
    assert any("beyond the 4,096 tokens" in note for note in plan.notes)


def test_tiny_max_ctx_setting_is_respected() -> None:
    assert plan_for(build_snapshot(), build_model(), max_ctx=256).n_ctx == 256


def test_short_trained_context_is_not_exceeded() -> None:
    plan = plan_for(build_snapshot(), build_model(context_length=2048), max_ctx=8192)

    assert plan.n_ctx == 2048
    assert not any("capped" in note for note in plan.notes)


def test_gpu_of_unknown_bandwidth_is_assumed_no_faster_than_the_cpu() -> None:
    amd = build_gpu(total=16 * GIB, free=16 * GIB, vendor="amd", name="AMD Radeon", bandwidth=None)
    plan = plan_for(build_snapshot(gpus=(amd,)), build_model())

    assert plan.n_gpu_layers == 33
    assert plan.predicted_tokens_per_s == pytest.approx(DECODE_EFFICIENCY * 50e9 / FILE)
    assert any("bandwidth unknown" in note for note in plan.notes)


def test_no_measured_bandwidth_means_no_prediction() -> None:
    plan = plan_for(build_snapshot(bandwidth=None), build_model())

    assert plan.predicted_tokens_per_s is None
    assert any("no speed prediction" in note for note in plan.notes)


@pytest.mark.parametrize(
    ("physical", "threads"), [(1, 1), (2, 1), (4, 3), (5, 4), (6, 5), (16, 15)]
)
def test_an_idle_machine_keeps_one_core_free(physical: int, threads: int) -> None:
    assert derive_threads(physical) == threads
    assert plan_for(build_snapshot(physical_cores=physical), build_model()).n_threads == threads


@pytest.mark.parametrize(
    ("physical", "load_percent", "threads"),
    [
        (2, 50.0, 1),  # one of two cores busy: one thread (2 threads decode 4x slower there)
        (8, 12.5, 5),  # 2 of 16 hyperthreads busy: counted as 2 cores
        (8, 50.0, 1),  # 8 of 16 hyperthreads busy
        (8, 4.0, 7),  # background noise, under 3/4 of a core
        (16, 25.0, 7),
    ],
)
def test_cores_other_programs_keep_busy_are_left_to_them(
    physical: int, load_percent: float, threads: int
) -> None:
    snapshot = build_snapshot(physical_cores=physical, load_percent=load_percent)
    plan = plan_for(snapshot, build_model())

    assert plan.n_threads == threads
    assert derive_threads(physical, busy_cores(snapshot.cpu)) == threads


def test_probe_says_why_threads_are_fewer_than_cores() -> None:
    busy = plan_for(build_snapshot(physical_cores=8, load_percent=25.0), build_model())
    idle = plan_for(build_snapshot(physical_cores=2), build_model())

    [busy_note] = [note for note in busy.notes if note.startswith("n_threads")]
    assert busy_note.startswith("n_threads 3: 8 physical cores, one left for the server and the OS")
    assert "4 more for other programs (25 % CPU load" in busy_note
    [idle_note] = [note for note in idle.notes if note.startswith("n_threads")]
    assert "one left for the server" in idle_note and "another program" in idle_note


def test_explicit_threads_on_every_core_are_warned_about() -> None:
    plan = plan_for(build_snapshot(physical_cores=2), build_model(), n_threads=2)

    assert plan.n_threads == 2
    assert any("leaves no core free" in note for note in plan.notes)


@pytest.mark.parametrize("field", ["n_ctx", "n_threads", "max_ctx"])
def test_non_positive_values_are_config_errors(field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        plan_for(build_snapshot(), build_model(), **{field: 0})
