"""Builders for the snapshots, GPUs and model footprints the hardware tests plan against, and
fake sources for a :class:`HardwareProbe` (:func:`idle_probe`: a quiet machine for API tests)."""

from __future__ import annotations

from hybrid.hardware.plan import ModelFootprint
from hybrid.hardware.probe import HardwareProbe
from hybrid.hardware.snapshot import (
    CpuInfo,
    GpuInfo,
    HardwareSnapshot,
    MemoryInfo,
    PowerInfo,
)

MIB = 1024**2
GIB = 1024**3


def build_snapshot(
    *,
    physical_cores: int = 8,
    load_percent: float = 2.0,
    total: int = 32 * GIB,
    available: int = 24 * GIB,
    cgroup_limit: int | None = None,
    cgroup_usage: int | None = None,
    gpus: tuple[GpuInfo, ...] = (),
    offload: bool = True,
    bandwidth: float | None = 50e9,
    power: PowerInfo | None = None,
) -> HardwareSnapshot:
    return HardwareSnapshot(
        cpu=CpuInfo(
            model="Test CPU 9000",
            arch="x86_64",
            physical_cores=physical_cores,
            logical_cores=physical_cores * 2,
            features=("AVX", "AVX2", "FMA"),
            load_percent=load_percent,
        ),
        memory=MemoryInfo(
            total_bytes=total,
            available_bytes=available,
            swap_total_bytes=0,
            swap_free_bytes=0,
            cgroup_limit_bytes=cgroup_limit,
            cgroup_usage_bytes=cgroup_usage,
        ),
        gpus=gpus,
        power=power or PowerInfo(battery_percent=None, on_battery=None),
        gpu_offload_supported=offload,
        memory_bandwidth_bytes_per_s=bandwidth,
        taken_at=1_700_000_000.0,
    )


def build_gpu(
    *,
    free: int,
    total: int | None = None,
    vendor: str = "nvidia",
    name: str = "NVIDIA Test GPU",
    index: int = 0,
    bandwidth: float | None = 400e9,
    unified: bool = False,
    utilization: float | None = 5.0,
) -> GpuInfo:
    return GpuInfo(
        index=index,
        vendor=vendor,
        name=name,
        vram_total_bytes=total if total is not None else free,
        vram_free_bytes=free,
        utilization_percent=utilization,
        unified_memory=unified,
        memory_bandwidth_bytes_per_s=bandwidth,
    )


def build_model(
    *,
    n_layers: int = 32,
    layer_bytes: int = 120 * MIB,
    other_bytes: int = 400 * MIB,
    kv_bytes_per_token: int = 128 * 1024,
    context_length: int = 32768,
) -> ModelFootprint:
    """An 8B-class Q4 model: 32 blocks of 120 MiB, 128 KiB of KV cache per token."""
    weights = n_layers * layer_bytes + other_bytes
    return ModelFootprint(
        file_bytes=weights + 8 * MIB,  # the header and tokenizer are not weights
        n_layers=n_layers,
        layer_bytes=(layer_bytes,) * n_layers,
        other_bytes=other_bytes,
        kv_bytes_per_token=kv_bytes_per_token,
        context_length=context_length,
    )


CPU = CpuInfo(
    model="Fake CPU",
    arch="x86_64",
    physical_cores=4,
    logical_cores=8,
    features=("AVX2",),
    load_percent=30.0,
)


class FakeCpu:
    """CPU facts of :data:`CPU` and a fixed live load."""

    def __init__(self, load_percent: float = 55.0) -> None:
        self.live_reads = 0
        self._load_percent = load_percent

    def read(self) -> CpuInfo:
        return CPU

    def load_percent(self) -> float:
        self.live_reads += 1
        return self._load_percent


class FakeMemory:
    def __init__(self, info: MemoryInfo) -> None:
        self.info = info

    def read(self) -> MemoryInfo:
        return self.info


class FakeGpus:
    def __init__(self, *gpus: GpuInfo) -> None:
        self.gpus = gpus

    def read(self) -> tuple[GpuInfo, ...]:
        return self.gpus


class FakePower:
    def __init__(self, info: PowerInfo) -> None:
        self.info = info

    def read(self) -> PowerInfo:
        return self.info


def idle_probe(power: FakePower | None = None) -> HardwareProbe:
    """A probe of a quiet 4-core machine with 16 GiB free: no other program loads it.

    Tests that route requests use it, so that what else runs on the machine that runs the
    tests never reaches the capacity policy.  Its power source is ``power`` (change its
    ``info`` to plug the machine in or out); by default it has no battery.
    """
    free = MemoryInfo(
        total_bytes=16 * GIB,
        available_bytes=16 * GIB,
        swap_total_bytes=0,
        swap_free_bytes=0,
        cgroup_limit_bytes=None,
        cgroup_usage_bytes=None,
    )
    return HardwareProbe(
        cpu=FakeCpu(load_percent=0.0),
        memory=FakeMemory(free),
        gpus=(),
        power=power or FakePower(PowerInfo(battery_percent=None, on_battery=None)),
        gpu_offload_supported=lambda: False,
        bandwidth_cache=None,
        measure_bandwidth=lambda cpu, memory: 25e9,
        clock=lambda: 1_700_000_000.0,
        process_cpu=lambda: 0.0,
    )
