"""GPUs llama.cpp might offload to: NVIDIA (NVML), AMD (sysfs) and Apple Silicon (unified memory).

Each vendor is a :class:`GpuSource`; a source that finds nothing, or whose driver or library is
missing, returns an empty tuple rather than raising, so a machine without a GPU probes cleanly.
Whether the installed llama.cpp build can use any of them is a separate question, answered by
:func:`llama_cpp_supports_gpu_offload`.

NVIDIA goes through ``pynvml`` (package ``nvidia-ml-py``, optional), behind the small
:class:`NvmlSource` protocol so tests can hand in a fake without a GPU or a driver.
"""

from __future__ import annotations

import importlib
import platform
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from hybrid.hardware.cpu import read_sysctl
from hybrid.hardware.memory import RamFigures, read_ram
from hybrid.hardware.snapshot import GpuInfo

GIB = 1024**3

AMD_PCI_VENDOR = "0x1002"

# Memory bandwidth of Apple Silicon chips in GB/s (Apple's published figures).  Where one name
# covers two memory configurations (binned M3 Max / M4 Max) the lower is listed: a prediction
# that errs slow is the safer one.  The longest matching name wins ("M2 Max" before "M2").
APPLE_BANDWIDTH_GB_S: dict[str, float] = {
    "M1": 68.25,
    "M1 Pro": 200,
    "M1 Max": 400,
    "M1 Ultra": 800,
    "M2": 100,
    "M2 Pro": 200,
    "M2 Max": 400,
    "M2 Ultra": 800,
    "M3": 100,
    "M3 Pro": 150,
    "M3 Max": 300,
    "M3 Ultra": 819,
    "M4": 120,
    "M4 Pro": 273,
    "M4 Max": 410,
}

# macOS lets Metal wire about 2/3 of RAM on machines up to 36 GB and about 3/4 above (Metal's
# recommendedMaxWorkingSetSize, which llama.cpp and Ollama both respect).
APPLE_SMALL_RAM_LIMIT = 36 * GIB


class GpuSource(Protocol):
    """One vendor's way of listing GPUs."""

    def read(self) -> tuple[GpuInfo, ...]:
        """Return the GPUs found now; empty when none (or the driver/library is missing)."""
        ...


@dataclass(frozen=True)
class NvmlDevice:
    """One NVIDIA device as NVML reports it.

    Attributes:
        index: NVML device index.
        name: Device name.
        total_bytes: Framebuffer memory.
        free_bytes: Of that, what is free.
        utilization_percent: GPU busy percentage, ``None`` when NVML does not support it.
        memory_bus_width_bits: Memory bus width, ``None`` when unknown.
        max_memory_clock_mhz: Maximum memory clock, ``None`` when unknown.
    """

    index: int
    name: str
    total_bytes: int
    free_bytes: int
    utilization_percent: float | None
    memory_bus_width_bits: int | None
    max_memory_clock_mhz: int | None


class NvmlSource(Protocol):
    """The few NVML readings the probe needs."""

    def devices(self) -> tuple[NvmlDevice, ...]:
        """Return every NVIDIA device; empty when NVML (driver or ``pynvml``) is unavailable."""
        ...


def _import_pynvml() -> Any:
    return importlib.import_module("pynvml")


class PynvmlSource:
    """:class:`NvmlSource` over the optional ``pynvml`` module (package ``nvidia-ml-py``).

    NVML is initialised on first use and kept open (``close()`` shuts it down); if the module is
    missing or NVML cannot start (no driver), every call returns an empty tuple without trying
    again, so a 1 Hz sampler does not keep probing for a driver that is not there.
    """

    def __init__(self, load: Callable[[], Any] = _import_pynvml) -> None:
        """Create the source.

        Args:
            load: Returns the ``pynvml`` module or raises ImportError; tests pass a fake module.
        """
        self._load = load
        self._nvml: Any = None
        self._unavailable = False

    def devices(self) -> tuple[NvmlDevice, ...]:
        """Return every NVIDIA device, or ``()`` when NVML is unavailable."""
        nvml = self._open()
        if nvml is None:
            return ()
        try:
            count = int(nvml.nvmlDeviceGetCount())
            return tuple(self._device(nvml, index) for index in range(count))
        except nvml.NVMLError:
            # A GPU that fell off the bus (or a driver reload) mid-read: report none this time.
            return ()

    def energy_joules(self) -> float | None:
        """Energy all NVIDIA devices have used since the driver loaded, in joules.

        Returns:
            The sum over devices, or None without NVML or on a GPU too old to count it
            (``nvmlDeviceGetTotalEnergyConsumption`` needs Volta or later).
        """
        nvml = self._open()
        if nvml is None:
            return None
        try:
            total_mj = sum(
                int(nvml.nvmlDeviceGetTotalEnergyConsumption(nvml.nvmlDeviceGetHandleByIndex(i)))
                for i in range(int(nvml.nvmlDeviceGetCount()))
            )
        except nvml.NVMLError:
            return None
        return total_mj / 1000.0

    def close(self) -> None:
        """Shut NVML down if this source started it."""
        if self._nvml is not None:
            try:
                self._nvml.nvmlShutdown()
            except self._nvml.NVMLError:
                pass
            self._nvml = None

    def _open(self) -> Any:
        if self._nvml is not None or self._unavailable:
            return self._nvml
        try:
            nvml = self._load()
        except ImportError:
            self._unavailable = True
            return None
        try:
            nvml.nvmlInit()
        except nvml.NVMLError:
            self._unavailable = True
            return None
        self._nvml = nvml
        return nvml

    @staticmethod
    def _device(nvml: Any, index: int) -> NvmlDevice:
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        name = nvml.nvmlDeviceGetName(handle)
        if isinstance(name, bytes):  # pynvml before 11.5 returned bytes
            name = name.decode("utf-8", errors="replace")
        memory = nvml.nvmlDeviceGetMemoryInfo(handle)

        def optional(read: Callable[[], Any]) -> Any:
            # Consumer cards and vGPUs answer NotSupported for some queries; that is "unknown".
            try:
                return read()
            except nvml.NVMLError:
                return None

        rates = optional(lambda: nvml.nvmlDeviceGetUtilizationRates(handle))
        bus = optional(lambda: nvml.nvmlDeviceGetMemoryBusWidth(handle))
        clock = optional(lambda: nvml.nvmlDeviceGetMaxClockInfo(handle, nvml.NVML_CLOCK_MEM))
        return NvmlDevice(
            index=index,
            name=str(name),
            total_bytes=int(memory.total),
            free_bytes=int(memory.free),
            utilization_percent=None if rates is None else float(rates.gpu),
            memory_bus_width_bits=int(bus) if bus else None,
            max_memory_clock_mhz=int(clock) if clock else None,
        )


def nvidia_bandwidth(bus_width_bits: int | None, memory_clock_mhz: int | None) -> float | None:
    """Theoretical memory bandwidth in bytes/s from NVML's bus width and memory clock.

    NVML reports the memory clock such that two transfers per clock reproduce NVIDIA's
    published figures for GDDR6, GDDR6X and HBM alike (RTX 4090: 384 bit x 10501 MHz x 2 =
    1008 GB/s; H100 SXM: 5120 bit x 2619 MHz x 2 = 3.35 TB/s).

    Returns:
        Bytes per second, or ``None`` when either reading is missing.
    """
    if not bus_width_bits or not memory_clock_mhz:
        return None
    return bus_width_bits / 8 * memory_clock_mhz * 1e6 * 2


class NvidiaGpuSource:
    """NVIDIA GPUs through NVML."""

    def __init__(self, nvml: NvmlSource | None = None) -> None:
        """Create the source.

        Args:
            nvml: NVML readings; defaults to :class:`PynvmlSource` over ``pynvml``.
        """
        self._nvml: NvmlSource = nvml if nvml is not None else PynvmlSource()

    def read(self) -> tuple[GpuInfo, ...]:
        """Return the NVIDIA GPUs NVML lists, or ``()`` without a driver or ``pynvml``."""
        return tuple(
            GpuInfo(
                index=device.index,
                vendor="nvidia",
                name=device.name,
                vram_total_bytes=device.total_bytes,
                vram_free_bytes=device.free_bytes,
                utilization_percent=device.utilization_percent,
                unified_memory=False,
                memory_bandwidth_bytes_per_s=nvidia_bandwidth(
                    device.memory_bus_width_bits, device.max_memory_clock_mhz
                ),
            )
            for device in self._nvml.devices()
        )


class AmdSysfsGpuSource:
    """AMD GPUs through the amdgpu driver's sysfs files.

    Reads ``class/drm/cardN/device/`` under the sysfs root: ``vendor`` (0x1002),
    ``mem_info_vram_total``, ``mem_info_vram_used``, ``gpu_busy_percent`` and, when the board
    provides it, ``product_name``.  Memory bandwidth is not exposed there, so it is ``None``.
    """

    def __init__(self, sysfs_root: Path = Path("/sys")) -> None:
        """Create the source.

        Args:
            sysfs_root: Where sysfs is mounted (tests pass a tree under tmp_path).
        """
        self._drm = sysfs_root / "class" / "drm"

    def read(self) -> tuple[GpuInfo, ...]:
        """Return the AMD GPUs with readable VRAM figures, in card order."""
        try:
            cards = [entry for entry in self._drm.iterdir() if re.fullmatch(r"card\d+", entry.name)]
        except OSError:
            return ()
        cards.sort(key=lambda entry: int(entry.name[4:]))
        found: list[GpuInfo] = []
        for card in cards:
            device = card / "device"
            if _read(device / "vendor") != AMD_PCI_VENDOR:
                continue
            total = _read_int(device / "mem_info_vram_total")
            if total is None:
                # Not driven by amdgpu (or too old a kernel): nothing to plan with.
                continue
            used = _read_int(device / "mem_info_vram_used") or 0
            busy = _read_int(device / "gpu_busy_percent")
            name = _read(device / "product_name") or f"AMD GPU {_read(device / 'device') or '?'}"
            found.append(
                GpuInfo(
                    index=len(found),
                    vendor="amd",
                    name=name,
                    vram_total_bytes=total,
                    vram_free_bytes=max(0, total - used),
                    utilization_percent=None if busy is None else float(busy),
                    unified_memory=False,
                    memory_bandwidth_bytes_per_s=None,
                )
            )
        return tuple(found)


def apple_recommended_vram(total_ram_bytes: int) -> int:
    """Return the share of RAM macOS lets the GPU wire: ~2/3 up to 36 GB, ~3/4 above."""
    if total_ram_bytes <= APPLE_SMALL_RAM_LIMIT:
        return total_ram_bytes * 2 // 3
    return total_ram_bytes * 3 // 4


def apple_bandwidth(chip: str) -> float | None:
    """Return the published memory bandwidth (bytes/s) of an Apple chip name, ``None`` if unknown.

    Args:
        chip: The CPU brand string, e.g. ``"Apple M2 Pro"``.
    """
    words = chip.replace("Apple", "").split()
    for size in (2, 1):
        key = " ".join(words[:size])
        if key in APPLE_BANDWIDTH_GB_S:
            return APPLE_BANDWIDTH_GB_S[key] * 1e9
    return None


class AppleGpuSource:
    """The Apple Silicon GPU: Metal over unified memory, sized as a share of RAM."""

    def __init__(
        self,
        *,
        system: str | None = None,
        machine: str | None = None,
        ram: Callable[[], RamFigures] = read_ram,
        sysctl: Callable[[str], str | None] = read_sysctl,
    ) -> None:
        """Create the source.

        Args:
            system: ``platform.system()`` override; only ``"Darwin"`` has this GPU.
            machine: ``platform.machine()`` override; only ``"arm64"`` has this GPU.
            ram: Reads RAM figures (the GPU's memory is RAM).
            sysctl: Reads a sysctl value (the chip name).
        """
        self._system = system or platform.system()
        self._machine = machine or platform.machine()
        self._ram = ram
        self._sysctl = sysctl

    def read(self) -> tuple[GpuInfo, ...]:
        """Return the one Apple GPU on Apple Silicon Macs, ``()`` anywhere else."""
        if self._system != "Darwin" or self._machine != "arm64":
            return ()
        ram = self._ram()
        chip = self._sysctl("machdep.cpu.brand_string") or "Apple Silicon"
        vram = apple_recommended_vram(ram.total)
        return (
            GpuInfo(
                index=0,
                vendor="apple",
                name=f"{chip} GPU",
                vram_total_bytes=vram,
                vram_free_bytes=min(vram, ram.available),
                # Utilization needs root (powermetrics); not worth a privileged helper.
                utilization_percent=None,
                unified_memory=True,
                memory_bandwidth_bytes_per_s=apple_bandwidth(chip),
            ),
        )


def default_gpu_sources() -> tuple[GpuSource, ...]:
    """Return the real sources: NVIDIA (NVML), AMD (sysfs), Apple Silicon."""
    return (NvidiaGpuSource(), AmdSysfsGpuSource(), AppleGpuSource())


def llama_cpp_supports_gpu_offload() -> bool:
    """Ask the installed llama.cpp build whether it can offload layers to a GPU at all.

    Imports ``llama_cpp`` lazily (it loads a large shared library).

    Returns:
        ``llama_cpp.llama_supports_gpu_offload()``; False when llama_cpp cannot be imported.
    """
    try:
        llama_cpp = importlib.import_module("llama_cpp")
        return bool(llama_cpp.llama_supports_gpu_offload())
    except Exception:
        # A broken or missing wheel (ImportError, OSError loading the .so, ...) cannot offload.
        return False


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def _read_int(path: Path) -> int | None:
    raw = _read(path)
    if raw is None or not raw.isdigit():
        return None
    return int(raw)
