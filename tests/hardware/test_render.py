"""The text and JSON reports of `hybrid probe`."""

from __future__ import annotations

import json

from hardware_fakes import GIB, MIB, build_gpu, build_model, build_snapshot

from hybrid.hardware.plan import plan_for
from hybrid.hardware.render import render_snapshot_text, size, snapshot_json
from hybrid.hardware.snapshot import PowerInfo


def test_sizes_read_as_gib_or_mib() -> None:
    assert size(24 * GIB) == "24.0 GiB"
    assert size(1536 * MIB) == "1.5 GiB"
    assert size(512 * MIB) == "512 MiB"


def test_text_report_of_a_laptop_with_a_small_gpu_on_battery() -> None:
    snapshot = build_snapshot(
        gpus=(
            build_gpu(total=4 * GIB, free=2 * GIB, name="NVIDIA GeForce RTX 3050", bandwidth=192e9),
        ),
        power=PowerInfo(battery_percent=23.0, on_battery=True),
        bandwidth=38.4e9,
    )
    plan = plan_for(snapshot, build_model())

    text = render_snapshot_text(snapshot, [("llama-3-8b-q4", plan)])

    assert "Test CPU 9000 (x86_64)" in text
    assert "8 physical / 16 logical cores" in text
    assert "SIMD: AVX AVX2 FMA" in text
    assert "32.0 GiB total, 24.0 GiB available" in text
    assert "38.4 GB/s" in text
    assert (
        "NVIDIA GeForce RTX 3050 (nvidia), 4.0 GiB VRAM, 2.0 GiB free, 5 % busy, 192 GB/s" in text
    )
    assert "battery 23 %, on battery" in text
    row = next(line for line in text.splitlines() if "llama-3-8b-q4" in line)
    assert "fits" in row and "n_ctx 8,192" in row and "tok/s" in row
    # Four slots, each with its own q8_0 KV cache, leave room for five layers on the GPU.
    assert "4 slots (KV q8_0, 544 MiB each)" in row and "GPU layers 5" in row
    assert "on battery (23 %)" in text  # the plan's note is listed under its row


def test_text_report_of_a_container_without_gpu_or_bandwidth() -> None:
    snapshot = build_snapshot(
        total=64 * GIB,
        available=60 * GIB,
        cgroup_limit=4 * GIB,
        cgroup_usage=GIB,
        bandwidth=None,
        offload=False,
    )
    plan = plan_for(snapshot, build_model())

    text = render_snapshot_text(snapshot, [("big", plan)], skipped=[("broken", "not a GGUF file")])

    assert "container limit: 4.0 GiB (1.0 GiB in use), 3.0 GiB usable now" in text
    assert "GPU        none found" in text
    assert "CPU-only" in text
    assert "not measured" in text
    assert "no battery" in text
    big = next(line for line in text.splitlines() if line.startswith("  big"))
    assert "TOO BIG" in big and "speed unknown" in big
    assert "broken  (no plan: not a GGUF file)" in text


def test_text_report_without_models_section() -> None:
    text = render_snapshot_text(build_snapshot(), None)
    assert "Models" not in text
    assert "Models\n  none found" in render_snapshot_text(build_snapshot(), [])


def test_json_report_round_trips() -> None:
    snapshot = build_snapshot(gpus=(build_gpu(free=23 * GIB, total=24 * GIB),))
    plan = plan_for(snapshot, build_model())

    data = json.loads(
        json.dumps(snapshot_json(snapshot, [("m", plan)], skipped=[("bad", "unreadable")]))
    )

    assert data["hardware"]["gpus"][0]["vram_free_bytes"] == 23 * GIB
    assert data["hardware"]["memory"]["usable_total_bytes"] == 32 * GIB
    good, bad = data["models"]
    assert good["name"] == "m" and good["problem"] is None
    assert good["plan"]["n_gpu_layers"] == 33 and good["plan"]["fits"] is True
    assert isinstance(good["plan"]["notes"], list) and good["plan"]["notes"]
    assert bad == {"name": "bad", "plan": None, "problem": "unreadable"}
