"""``HardwareProbe``: puts the CPU, memory, GPU and power sources together.

Every source comes in through the constructor with a real default, so tests build a probe from
fakes (no GPU, a small GPU, a container limit, a laptop on battery) and the daemon builds one
with no arguments.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

from hybrid.hardware.bandwidth import (
    MIB,
    BandwidthCache,
    bandwidth_cache_key,
    cached_bandwidth,
    measure_memory_bandwidth,
)
from hybrid.hardware.cpu import CpuSource, SystemCpuSource
from hybrid.hardware.gpu import GpuSource, default_gpu_sources, llama_cpp_supports_gpu_offload
from hybrid.hardware.memory import MemorySource, SystemMemorySource
from hybrid.hardware.power import BatteryPowerSource, PowerSource
from hybrid.hardware.snapshot import CpuInfo, GpuInfo, HardwareSnapshot, LiveSample, MemoryInfo

BENCH_BUFFER_BYTES = 256 * MIB
# The benchmark holds two buffers; in a small container it may take at most this share of what
# is free, and never less than a buffer that still dwarfs a laptop's cache.
BENCH_MEMORY_SHARE = 8
BENCH_MIN_BUFFER_BYTES = 32 * MIB


def default_bandwidth_measure(cpu: CpuInfo, memory: MemoryInfo) -> float:
    """Run the bandwidth benchmark sized for this machine.

    Uses one thread per physical core (as llama.cpp does) and a 256 MiB buffer, shrunk to an
    eighth of the usable free RAM when that is less (never below 32 MiB).

    Returns:
        Bytes per second.
    """
    budget = memory.usable_available_bytes // BENCH_MEMORY_SHARE
    buffer_bytes = max(BENCH_MIN_BUFFER_BYTES, min(BENCH_BUFFER_BYTES, budget))
    return measure_memory_bandwidth(buffer_bytes=buffer_bytes, threads=cpu.physical_cores)


class ProcessCpu:
    """This process's CPU use since the previous call, as a share of the whole machine."""

    def __init__(self) -> None:
        import psutil  # type: ignore[import-untyped,unused-ignore]

        self._process = psutil.Process()
        self._cpus = psutil.cpu_count() or 1
        self._process.cpu_percent(None)  # the first reading only starts the interval

    def __call__(self) -> float | None:
        import psutil  # type: ignore[import-untyped,unused-ignore]

        try:
            return float(self._process.cpu_percent(None)) / self._cpus
        except psutil.Error:
            return None


class HardwareProbe:
    """Reads what this machine has (:meth:`snapshot`) and how busy it is (:meth:`sample`)."""

    def __init__(
        self,
        *,
        cpu: CpuSource | None = None,
        memory: MemorySource | None = None,
        gpus: Sequence[GpuSource] | None = None,
        power: PowerSource | None = None,
        gpu_offload_supported: Callable[[], bool] = llama_cpp_supports_gpu_offload,
        bandwidth_cache: BandwidthCache | None = None,
        measure_bandwidth: Callable[[CpuInfo, MemoryInfo], float] = default_bandwidth_measure,
        clock: Callable[[], float] = time.time,
        process_cpu: Callable[[], float | None] | None = None,
    ) -> None:
        """Create a probe; every argument left out uses the real machine.

        Args:
            cpu: CPU facts and load (default: psutil and /proc/cpuinfo or sysctl).
            memory: RAM, swap and cgroup limit (default: psutil and /sys/fs/cgroup).
            gpus: GPU sources, asked in order (default: NVIDIA via NVML, AMD via sysfs, Apple).
            power: Battery state (default: psutil).
            gpu_offload_supported: Whether llama.cpp can offload; asked once, on the first
                snapshot (the default imports llama_cpp).
            bandwidth_cache: Where measured bandwidth is kept between runs; ``None`` measures
                every time a snapshot asks for it.
            measure_bandwidth: Runs the benchmark for the given CPU and memory.
            clock: Unix time, for ``taken_at``.
            process_cpu: This process's share of the machine's CPU since the last call, 0..100
                (default: psutil).
        """
        self._cpu: CpuSource = cpu if cpu is not None else SystemCpuSource()
        self._memory: MemorySource = memory if memory is not None else SystemMemorySource()
        self._gpus: tuple[GpuSource, ...] = (
            tuple(gpus) if gpus is not None else default_gpu_sources()
        )
        self._power: PowerSource = power if power is not None else BatteryPowerSource()
        self._gpu_offload_supported = gpu_offload_supported
        self._offload: bool | None = None
        self._bandwidth_cache = bandwidth_cache
        self._measure_bandwidth = measure_bandwidth
        self._clock = clock
        self._process_cpu = process_cpu if process_cpu is not None else ProcessCpu()

    def snapshot(self, *, measure_bandwidth: bool = True) -> HardwareSnapshot:
        """Take a full snapshot of the machine.

        Blocks for a moment: the CPU load is watched for ~0.1 s and, on a cache miss, the
        bandwidth benchmark runs (under a second).

        Args:
            measure_bandwidth: Run the benchmark when the cache has no figure.  When False the
                cached figure is still used, and ``memory_bandwidth_bytes_per_s`` is ``None``
                without one.

        Returns:
            The snapshot.
        """
        # Load first: the benchmark would otherwise count as load.
        cpu = self._cpu.read()
        memory = self._memory.read()
        gpus = self._read_gpus()
        power = self._power.read()
        if self._offload is None:
            self._offload = self._gpu_offload_supported()
        return HardwareSnapshot(
            cpu=cpu,
            memory=memory,
            gpus=gpus,
            power=power,
            gpu_offload_supported=self._offload,
            memory_bandwidth_bytes_per_s=self._bandwidth(cpu, memory, measure=measure_bandwidth),
            taken_at=self._clock(),
        )

    def sample(self) -> LiveSample:
        """Take a cheap live reading; never blocks (CPU load is measured since the last call).

        Returns:
            The reading.  ``memory_percent`` is the share of *usable* RAM (container limit
            applied) in use; ``gpu_utilization_percent`` is the busiest GPU's.
        """
        cpu_percent = self._cpu.load_percent()
        memory = self._memory.read()
        gpus = self._read_gpus()
        utilizations = [
            gpu.utilization_percent for gpu in gpus if gpu.utilization_percent is not None
        ]
        # Dedicated VRAM only: unified memory is RAM, already counted above.
        dedicated = [gpu for gpu in gpus if not gpu.unified_memory]
        power = self._power.read()
        usable = memory.usable_total_bytes
        available = memory.usable_available_bytes
        memory_percent = 100.0 * (usable - available) / usable if usable > 0 else 0.0
        return LiveSample(
            taken_at=self._clock(),
            cpu_percent=cpu_percent,
            memory_available_bytes=available,
            memory_percent=max(0.0, min(100.0, memory_percent)),
            gpu_utilization_percent=max(utilizations) if utilizations else None,
            battery_percent=power.battery_percent,
            on_battery=power.on_battery,
            process_cpu_percent=self._process_cpu(),
            vram_total_bytes=sum(g.vram_total_bytes for g in dedicated) if dedicated else None,
            vram_used_bytes=(
                sum(g.vram_total_bytes - g.vram_free_bytes for g in dedicated)
                if dedicated
                else None
            ),
        )

    def _read_gpus(self) -> tuple[GpuInfo, ...]:
        return tuple(gpu for source in self._gpus for gpu in source.read())

    def _bandwidth(self, cpu: CpuInfo, memory: MemoryInfo, *, measure: bool) -> float | None:
        cache = self._bandwidth_cache
        key = bandwidth_cache_key(cpu.model, memory.total_bytes)
        if not measure:
            return cache.get(key) if cache is not None else None

        def run() -> float:
            return self._measure_bandwidth(cpu, memory)

        return cached_bandwidth(cache, key, run) if cache is not None else run()


def probe_for(home: Path) -> HardwareProbe:
    """The real machine's probe, caching measured bandwidth in the data dir ``home``."""
    from hybrid.hardware.bandwidth import BandwidthCache

    return HardwareProbe(bandwidth_cache=BandwidthCache(home / "probe" / "bandwidth.json"))
