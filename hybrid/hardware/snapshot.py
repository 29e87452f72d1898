"""What the hardware probe saw, as frozen dataclasses.

A :class:`HardwareSnapshot` is taken once (at start-up, or by ``hybrid probe``) and describes the
machine; a :class:`LiveSample` is the cheap ~1 Hz reading the sampler keeps fresh.  Both turn into
JSON-ready dicts with ``to_dict()`` (used by ``hybrid probe --json`` and by ``/health``).

Sizes are in bytes, bandwidths in bytes per second, percentages in 0..100.  ``None`` always means
"unknown or not applicable", never zero.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class CpuInfo:
    """The CPU as llama.cpp will use it.

    Attributes:
        model: Marketing name, e.g. ``"AMD Ryzen 7 7840U"``; ``"unknown"`` when unreadable.
        arch: Machine architecture as Python reports it (``"x86_64"``, ``"arm64"``, ...).
        physical_cores: Cores this process may use, hyperthreads not counted (at least 1).
        logical_cores: Hardware threads this process may use (at least ``physical_cores``).
        features: SIMD features that matter to llama.cpp, display names such as ``"AVX2"``,
            ``"AVX-512F"``, ``"NEON"``; in a stable order.
        load_percent: Whole-machine CPU load, 0..100, when the reading was taken.
    """

    model: str
    arch: str
    physical_cores: int
    logical_cores: int
    features: tuple[str, ...]
    load_percent: float


@dataclass(frozen=True)
class MemoryInfo:
    """System RAM, swap and the container memory limit.

    Attributes:
        total_bytes: Physical RAM of the machine (or VM).
        available_bytes: RAM the OS could hand out now without swapping.
        swap_total_bytes: Configured swap (0 when none).
        swap_free_bytes: Unused swap.
        cgroup_limit_bytes: The container's memory limit, ``None`` when there is none.
        cgroup_usage_bytes: The container's working set (usage less reclaimable page cache),
            ``None`` when unknown.
    """

    total_bytes: int
    available_bytes: int
    swap_total_bytes: int
    swap_free_bytes: int
    cgroup_limit_bytes: int | None
    cgroup_usage_bytes: int | None

    @property
    def usable_total_bytes(self) -> int:
        """RAM this process may ever use: the smaller of RAM and the container limit."""
        if self.cgroup_limit_bytes is None:
            return self.total_bytes
        return min(self.total_bytes, self.cgroup_limit_bytes)

    @property
    def usable_available_bytes(self) -> int:
        """RAM this process may take now: available RAM, capped by what the container has left."""
        if self.cgroup_limit_bytes is None:
            return self.available_bytes
        used = self.cgroup_usage_bytes or 0
        return max(0, min(self.available_bytes, self.cgroup_limit_bytes - used))


@dataclass(frozen=True)
class GpuInfo:
    """One GPU llama.cpp might offload to.

    Attributes:
        index: The vendor's own device index (NVML index, n-th AMD card, 0 for Apple).
        vendor: ``"nvidia"``, ``"amd"`` or ``"apple"``.
        name: Device name, e.g. ``"NVIDIA GeForce RTX 4060 Laptop GPU"``.
        vram_total_bytes: Memory the GPU can address; for unified memory, the share of RAM the
            OS lets the GPU wire (Metal's recommended working set).
        vram_free_bytes: Of that, what is free now.
        utilization_percent: Busy percentage, ``None`` when the platform does not say.
        unified_memory: True when VRAM is system RAM (Apple Silicon): offloaded weights still
            occupy RAM.
        memory_bandwidth_bytes_per_s: Theoretical memory bandwidth, ``None`` when unknown.
    """

    index: int
    vendor: str
    name: str
    vram_total_bytes: int
    vram_free_bytes: int
    utilization_percent: float | None
    unified_memory: bool
    memory_bandwidth_bytes_per_s: float | None


@dataclass(frozen=True)
class PowerInfo:
    """Battery state.

    Attributes:
        battery_percent: Charge 0..100, ``None`` when there is no battery.
        on_battery: True when running from the battery, False on AC, ``None`` when unknown
            (no battery, or the OS does not say).
    """

    battery_percent: float | None
    on_battery: bool | None


@dataclass(frozen=True)
class HardwareSnapshot:
    """Everything the probe saw at one moment.

    Attributes:
        cpu: The CPU.
        memory: RAM, swap and container limit.
        gpus: GPUs found, in source order (NVIDIA, then AMD, then Apple); empty when none.
        power: Battery state.
        gpu_offload_supported: Whether the installed llama.cpp build can offload layers to a GPU
            at all (a CPU-only wheel cannot, whatever GPUs exist).
        memory_bandwidth_bytes_per_s: Measured (or cached) CPU memory bandwidth, ``None`` when not
            measured.
        taken_at: Unix time of the snapshot.
    """

    cpu: CpuInfo
    memory: MemoryInfo
    gpus: tuple[GpuInfo, ...]
    power: PowerInfo
    gpu_offload_supported: bool
    memory_bandwidth_bytes_per_s: float | None
    taken_at: float

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict: plain dicts, lists, numbers, strings, booleans and None.

        The memory section also carries the derived ``usable_total_bytes`` and
        ``usable_available_bytes`` so readers need not redo the container arithmetic.
        """
        data = asdict(self)
        data["cpu"]["features"] = list(self.cpu.features)
        data["gpus"] = [asdict(gpu) for gpu in self.gpus]
        data["memory"]["usable_total_bytes"] = self.memory.usable_total_bytes
        data["memory"]["usable_available_bytes"] = self.memory.usable_available_bytes
        return data


@dataclass(frozen=True)
class LiveSample:
    """A cheap reading of how busy the machine is right now.

    Attributes:
        taken_at: Unix time of the reading.
        cpu_percent: Whole-machine CPU load since the previous reading, 0..100.
        memory_available_bytes: RAM this process may take now (container limit applied).
        memory_percent: Share of usable RAM in use, 0..100.
        gpu_utilization_percent: The busiest GPU's utilization, ``None`` without a GPU that
            reports it.
        battery_percent: Charge 0..100, ``None`` without a battery.
        on_battery: As in :class:`PowerInfo`.
        process_cpu_percent: This process's share of the whole machine's CPU, 0..100, so that
            the load of *other* programs is ``cpu_percent - process_cpu_percent``; ``None``
            when unknown.
        vram_total_bytes: Dedicated GPU memory over every GPU, ``None`` without one (unified
            memory is RAM, in the memory figures).
        vram_used_bytes: Of that, what is in use.
    """

    taken_at: float
    cpu_percent: float
    memory_available_bytes: int
    memory_percent: float
    gpu_utilization_percent: float | None
    battery_percent: float | None
    on_battery: bool | None
    process_cpu_percent: float | None = None
    vram_total_bytes: int | None = None
    vram_used_bytes: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the sample as a JSON-ready dict with the attribute names as keys."""
        return asdict(self)
