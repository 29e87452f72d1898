"""GPU sources with fake NVML, a fake pynvml module, an AMD sysfs tree and a fake Mac."""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import pytest
from hardware_fakes import GIB

from hybrid.hardware.gpu import (
    AmdSysfsGpuSource,
    AppleGpuSource,
    NvidiaGpuSource,
    NvmlDevice,
    PynvmlSource,
    llama_cpp_supports_gpu_offload,
)
from hybrid.hardware.memory import RamFigures


class FakeNvml:
    """An NvmlSource listing fixed devices."""

    def __init__(self, *devices: NvmlDevice) -> None:
        self._devices = devices

    def devices(self) -> tuple[NvmlDevice, ...]:
        return self._devices


class NVMLError(Exception):
    pass


def fake_pynvml(*, init_fails: bool = False, devices: list[dict[str, Any]] | None = None) -> Any:
    """A stand-in for the pynvml module; counts nvmlInit calls."""
    listed = devices or []
    module = types.SimpleNamespace(NVMLError=NVMLError, NVML_CLOCK_MEM=2, init_calls=0)

    def init() -> None:
        module.init_calls += 1
        if init_fails:
            raise NVMLError("NVML Shared Library Not Found")

    def answer(handle: int, key: str) -> Any:
        value = listed[handle][key]
        if isinstance(value, Exception):
            raise value
        return value

    module.nvmlInit = init
    module.nvmlShutdown = lambda: None
    module.nvmlDeviceGetCount = lambda: len(listed)
    module.nvmlDeviceGetHandleByIndex = lambda index: index
    module.nvmlDeviceGetName = lambda handle: answer(handle, "name")
    module.nvmlDeviceGetMemoryInfo = lambda handle: types.SimpleNamespace(
        total=answer(handle, "total"), free=answer(handle, "free"), used=0
    )
    module.nvmlDeviceGetUtilizationRates = lambda handle: types.SimpleNamespace(
        gpu=answer(handle, "util"), memory=0
    )
    module.nvmlDeviceGetMemoryBusWidth = lambda handle: answer(handle, "bus")
    module.nvmlDeviceGetMaxClockInfo = lambda handle, clock: answer(handle, "clock")
    module.nvmlDeviceGetTotalEnergyConsumption = lambda handle: answer(handle, "energy_mj")
    return module


def test_small_nvidia_gpu_reports_vram_utilization_and_bandwidth() -> None:
    source = NvidiaGpuSource(
        FakeNvml(
            NvmlDevice(
                index=0,
                name="NVIDIA GeForce RTX 3050 Laptop GPU",
                total_bytes=4 * GIB,
                free_bytes=2 * GIB,
                utilization_percent=17.0,
                memory_bus_width_bits=128,
                max_memory_clock_mhz=6001,
            )
        )
    )

    (gpu,) = source.read()

    assert (gpu.vendor, gpu.name) == ("nvidia", "NVIDIA GeForce RTX 3050 Laptop GPU")
    assert (gpu.vram_total_bytes, gpu.vram_free_bytes) == (4 * GIB, 2 * GIB)
    assert gpu.utilization_percent == 17.0
    assert not gpu.unified_memory
    # 128 bit x 6001 MHz x 2 transfers = 192 GB/s, NVIDIA's published figure for this card.
    assert gpu.memory_bandwidth_bytes_per_s == pytest.approx(192.0e9, rel=1e-3)


def test_pynvml_source_reads_devices_and_tolerates_unsupported_queries() -> None:
    module = fake_pynvml(
        devices=[
            {
                "name": b"Tesla T4",  # old pynvml returned bytes
                "total": 16 * GIB,
                "free": 15 * GIB,
                "util": NVMLError("Not Supported"),
                "bus": 256,
                "clock": 5001,
            },
            {
                "name": "NVIDIA H100 80GB HBM3",
                "total": 80 * GIB,
                "free": 79 * GIB,
                "util": 3,
                "bus": NVMLError("Not Supported"),
                "clock": 2619,
            },
        ]
    )
    gpus = NvidiaGpuSource(PynvmlSource(load=lambda: module)).read()

    assert [gpu.name for gpu in gpus] == ["Tesla T4", "NVIDIA H100 80GB HBM3"]
    assert [gpu.index for gpu in gpus] == [0, 1]
    assert gpus[0].utilization_percent is None
    assert gpus[0].memory_bandwidth_bytes_per_s == pytest.approx(320e9, rel=1e-3)
    assert gpus[1].utilization_percent == 3.0
    assert gpus[1].memory_bandwidth_bytes_per_s is None


def test_missing_pynvml_means_no_nvidia_gpus() -> None:
    def missing() -> Any:
        raise ImportError("No module named 'pynvml'")

    assert NvidiaGpuSource(PynvmlSource(load=missing)).read() == ()


def test_nvml_without_a_driver_means_no_gpus_and_is_not_retried() -> None:
    module = fake_pynvml(init_fails=True)
    source = PynvmlSource(load=lambda: module)

    assert source.devices() == ()
    assert source.devices() == ()
    assert module.init_calls == 1


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


def test_amd_gpu_is_read_from_sysfs_and_other_cards_are_skipped(tmp_path: Path) -> None:
    drm = tmp_path / "class" / "drm"
    write(drm / "card0" / "device" / "vendor", "0x8086")  # the Intel iGPU
    write(drm / "card0" / "device" / "mem_info_vram_total", str(GIB))
    amd = drm / "card1" / "device"
    write(amd / "vendor", "0x1002")
    write(amd / "product_name", "AMD Radeon RX 7900 XTX")
    write(amd / "mem_info_vram_total", str(24 * GIB))
    write(amd / "mem_info_vram_used", str(4 * GIB))
    write(amd / "gpu_busy_percent", "37")
    write(drm / "card1-DP-1" / "device" / "vendor", "0x1002")  # a connector, not a card
    unnamed = drm / "card2" / "device"
    write(unnamed / "vendor", "0x1002")
    write(unnamed / "device", "0x73ff")
    write(unnamed / "mem_info_vram_total", str(8 * GIB))

    gpus = AmdSysfsGpuSource(sysfs_root=tmp_path).read()

    assert [gpu.name for gpu in gpus] == ["AMD Radeon RX 7900 XTX", "AMD GPU 0x73ff"]
    first = gpus[0]
    assert (first.vendor, first.index) == ("amd", 0)
    assert (first.vram_total_bytes, first.vram_free_bytes) == (24 * GIB, 20 * GIB)
    assert first.utilization_percent == 37.0
    assert first.memory_bandwidth_bytes_per_s is None
    assert gpus[1].utilization_percent is None


def test_no_drm_folder_means_no_amd_gpus(tmp_path: Path) -> None:
    assert AmdSysfsGpuSource(sysfs_root=tmp_path).read() == ()


@pytest.mark.parametrize(
    ("ram_gib", "vram_share"),
    [(16, 2 / 3), (36, 2 / 3), (64, 3 / 4)],
)
def test_apple_silicon_gpu_gets_the_recommended_share_of_ram(
    ram_gib: int, vram_share: float
) -> None:
    total = ram_gib * GIB
    source = AppleGpuSource(
        system="Darwin",
        machine="arm64",
        ram=lambda: RamFigures(total=total, available=total // 2, swap_total=0, swap_free=0),
        sysctl={"machdep.cpu.brand_string": "Apple M2 Pro"}.get,
    )

    (gpu,) = source.read()

    assert (gpu.vendor, gpu.unified_memory) == ("apple", True)
    assert gpu.vram_total_bytes == pytest.approx(total * vram_share, abs=1)
    assert gpu.vram_free_bytes == total // 2  # free RAM is what the GPU can take now
    assert gpu.memory_bandwidth_bytes_per_s == 200e9
    assert gpu.name == "Apple M2 Pro GPU"


def test_apple_bandwidth_matches_the_longest_chip_name() -> None:
    def bandwidth(chip: str) -> float | None:
        source = AppleGpuSource(
            system="Darwin",
            machine="arm64",
            ram=lambda: RamFigures(total=GIB, available=GIB, swap_total=0, swap_free=0),
            sysctl={"machdep.cpu.brand_string": chip}.get,
        )
        return source.read()[0].memory_bandwidth_bytes_per_s

    assert bandwidth("Apple M2") == 100e9
    assert bandwidth("Apple M2 Max") == 400e9
    assert bandwidth("Apple M9 Hyper") is None


@pytest.mark.parametrize(("system", "machine"), [("Linux", "x86_64"), ("Darwin", "x86_64")])
def test_no_apple_gpu_elsewhere(system: str, machine: str) -> None:
    def no_ram() -> RamFigures:
        raise AssertionError("RAM must not be read off Apple Silicon")

    assert AppleGpuSource(system=system, machine=machine, ram=no_ram).read() == ()


def test_offload_support_is_false_when_llama_cpp_cannot_be_imported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # makes `import llama_cpp` fail
    assert llama_cpp_supports_gpu_offload() is False


def test_offload_support_asks_the_llama_cpp_build(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = types.SimpleNamespace(llama_supports_gpu_offload=lambda: True)
    monkeypatch.setitem(sys.modules, "llama_cpp", fake)
    assert llama_cpp_supports_gpu_offload() is True


def test_gpu_energy_is_the_sum_over_devices_in_joules_or_none_when_unknown() -> None:
    module = fake_pynvml(devices=[{"energy_mj": 1_500_000}, {"energy_mj": 500}])
    assert PynvmlSource(load=lambda: module).energy_joules() == pytest.approx(1500.5)

    too_old = fake_pynvml(devices=[{"energy_mj": NVMLError("Not Supported")}])
    assert PynvmlSource(load=lambda: too_old).energy_joules() is None

    def missing() -> Any:
        raise ImportError("No module named 'pynvml'")

    assert PynvmlSource(load=missing).energy_joules() is None
