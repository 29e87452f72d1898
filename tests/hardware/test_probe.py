"""HardwareProbe built from fake sources, plus one snapshot of the real machine."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hardware_fakes import CPU, GIB, FakeCpu, FakeGpus, FakeMemory, FakePower, build_gpu

from hybrid.hardware.bandwidth import BandwidthCache, bandwidth_cache_key
from hybrid.hardware.probe import HardwareProbe
from hybrid.hardware.snapshot import CpuInfo, MemoryInfo, PowerInfo


def memory(
    *,
    total: int = 16 * GIB,
    available: int = 8 * GIB,
    limit: int | None = None,
    used: int | None = None,
) -> MemoryInfo:
    return MemoryInfo(
        total_bytes=total,
        available_bytes=available,
        swap_total_bytes=0,
        swap_free_bytes=0,
        cgroup_limit_bytes=limit,
        cgroup_usage_bytes=used,
    )


def probe(
    *,
    mem: MemoryInfo | None = None,
    gpus: tuple[FakeGpus, ...] = (),
    power: PowerInfo | None = None,
    cache: BandwidthCache | None = None,
    bandwidth_runs: list[float] | None = None,
    offload_calls: list[int] | None = None,
) -> HardwareProbe:
    def measure(cpu: CpuInfo, memory_info: MemoryInfo) -> float:
        if bandwidth_runs is not None:
            bandwidth_runs.append(1)
        return 25e9

    def offload() -> bool:
        if offload_calls is not None:
            offload_calls.append(1)
        return True

    return HardwareProbe(
        cpu=FakeCpu(),
        memory=FakeMemory(mem or memory()),
        gpus=gpus,
        power=FakePower(power or PowerInfo(battery_percent=None, on_battery=None)),
        gpu_offload_supported=offload,
        bandwidth_cache=cache,
        measure_bandwidth=measure,
        clock=lambda: 1234.5,
    )


def test_snapshot_without_a_gpu() -> None:
    snapshot = probe().snapshot()

    assert snapshot.cpu == CPU
    assert snapshot.gpus == ()
    assert snapshot.memory_bandwidth_bytes_per_s == 25e9
    assert snapshot.taken_at == 1234.5


def test_snapshot_lists_gpus_of_every_source_in_order() -> None:
    nvidia = build_gpu(free=2 * GIB, name="small nvidia")
    amd = build_gpu(free=20 * GIB, vendor="amd", name="big amd")
    snapshot = probe(gpus=(FakeGpus(nvidia), FakeGpus(), FakeGpus(amd))).snapshot()

    assert [gpu.name for gpu in snapshot.gpus] == ["small nvidia", "big amd"]
    assert snapshot.gpu_offload_supported


def test_offload_support_is_asked_once() -> None:
    calls: list[int] = []
    hardware = probe(offload_calls=calls)
    hardware.snapshot(measure_bandwidth=False)
    hardware.snapshot(measure_bandwidth=False)
    hardware.sample()

    assert len(calls) == 1


def test_bandwidth_is_measured_once_then_read_from_the_cache(tmp_path: Path) -> None:
    runs: list[float] = []
    cache = BandwidthCache(tmp_path / "probe" / "bandwidth.json")

    first = probe(cache=cache, bandwidth_runs=runs).snapshot()
    second = probe(cache=cache, bandwidth_runs=runs).snapshot()

    assert first.memory_bandwidth_bytes_per_s == second.memory_bandwidth_bytes_per_s == 25e9
    assert len(runs) == 1


def test_no_bench_uses_the_cache_or_reports_none(tmp_path: Path) -> None:
    runs: list[float] = []
    cache = BandwidthCache(tmp_path / "bandwidth.json")

    assert (
        probe(cache=cache, bandwidth_runs=runs)
        .snapshot(measure_bandwidth=False)
        .memory_bandwidth_bytes_per_s
        is None
    )
    cache.put(bandwidth_cache_key(CPU.model, 16 * GIB), 31e9)
    cached = probe(cache=cache, bandwidth_runs=runs).snapshot(measure_bandwidth=False)

    assert cached.memory_bandwidth_bytes_per_s == 31e9
    assert runs == []


def test_sample_under_a_container_limit_on_battery() -> None:
    busy = build_gpu(free=GIB, utilization=80.0)
    idle = build_gpu(free=GIB, utilization=10.0)
    silent = build_gpu(free=GIB, utilization=None)
    hardware = probe(
        mem=memory(total=64 * GIB, available=60 * GIB, limit=4 * GIB, used=3 * GIB),
        gpus=(FakeGpus(idle, busy, silent),),
        power=PowerInfo(battery_percent=23.0, on_battery=True),
    )

    sample = hardware.sample()

    assert sample.cpu_percent == 55.0
    assert sample.memory_available_bytes == GIB
    assert sample.memory_percent == 75.0  # 3 of 4 usable GiB in use, not 4 of 64
    assert sample.gpu_utilization_percent == 80.0
    assert (sample.battery_percent, sample.on_battery) == (23.0, True)
    assert sample.taken_at == 1234.5


def test_sample_adds_up_dedicated_vram_and_leaves_unified_memory_to_ram() -> None:
    first = build_gpu(total=8 * GIB, free=6 * GIB)
    second = build_gpu(total=4 * GIB, free=GIB, index=1)
    apple = build_gpu(total=16 * GIB, free=8 * GIB, vendor="apple", unified=True)

    sample = probe(gpus=(FakeGpus(first, second, apple),)).sample()

    assert (sample.vram_total_bytes, sample.vram_used_bytes) == (12 * GIB, 5 * GIB)
    only_unified = probe(gpus=(FakeGpus(apple),)).sample()
    assert (only_unified.vram_total_bytes, only_unified.vram_used_bytes) == (None, None)


def test_sample_without_gpus_or_battery() -> None:
    sample = probe().sample()

    assert sample.gpu_utilization_percent is None
    assert sample.vram_total_bytes is None
    assert (sample.battery_percent, sample.on_battery) == (None, None)
    assert sample.memory_percent == 50.0


def test_real_machine_snapshot_reports_true_figures() -> None:
    import psutil  # type: ignore[import-untyped,unused-ignore]

    snapshot = HardwareProbe(gpu_offload_supported=lambda: False).snapshot(measure_bandwidth=False)

    assert snapshot.memory.total_bytes == psutil.virtual_memory().total
    assert 1 <= snapshot.cpu.physical_cores <= snapshot.cpu.logical_cores
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert snapshot.cpu.logical_cores == usable
    assert 0 <= snapshot.cpu.load_percent <= 100
    assert snapshot.memory_bandwidth_bytes_per_s is None


def test_importing_the_probe_loads_no_heavy_module() -> None:
    # The TUI and `hybrid --help` import these; llama_cpp, numpy, psutil and pynvml load lazily.
    code = (
        "import sys\n"
        "import hybrid.hardware.probe, hybrid.hardware.plan, hybrid.hardware.sampler\n"
        "import hybrid.hardware.render, hybrid.cli.probe\n"
        "heavy = ('llama_cpp', 'numpy', 'psutil', 'pynvml')\n"
        "print(','.join(name for name in heavy if name in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""
