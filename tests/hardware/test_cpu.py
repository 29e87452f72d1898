"""CPU facts from /proc/cpuinfo (x86 and arm), macOS sysctl, and psutil counts, all faked."""

from __future__ import annotations

from pathlib import Path

from hybrid.hardware.cpu import (
    CoreCounts,
    SystemCpuSource,
    effective_cores,
    feature_names,
    parse_cpuinfo,
)

X86_CPUINFO = """\
processor\t: {n}
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz
physical id\t: {socket}
core id\t\t: {core}
flags\t\t: fpu sse sse2 ssse3 sse4_1 sse4_2 fma avx f16c avx2 avx512f avx512bw avx512vl \
avx512_vnni

"""

ARM_CPUINFO = """\
processor\t: 0
BogoMIPS\t: 243.75
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp asimddp sve i8mm
CPU implementer\t: 0x41
CPU part\t: 0xd40

processor\t: 1
BogoMIPS\t: 243.75
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp asimddp sve i8mm
CPU implementer\t: 0x41
CPU part\t: 0xd40
"""


def two_socket_hyperthreaded() -> str:
    # 2 sockets x 2 cores x 2 threads: 8 "processor" entries, 4 physical cores.
    blocks = []
    n = 0
    for socket in (0, 1):
        for _thread in (0, 1):
            for core in (0, 1):
                blocks.append(X86_CPUINFO.format(n=n, socket=socket, core=core))
                n += 1
    return "".join(blocks)


def test_x86_cpuinfo_gives_model_physical_cores_and_simd() -> None:
    facts = parse_cpuinfo(two_socket_hyperthreaded())

    assert facts.model == "Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz"
    assert facts.physical_cores == 4
    assert feature_names(facts.flags, "x86_64") == (
        "SSE4.2",
        "AVX",
        "AVX2",
        "FMA",
        "F16C",
        "AVX-512F",
        "AVX-512BW",
        "AVX-512VL",
        "AVX-512VNNI",
    )


def test_arm_features_map_to_neon_dotprod_sve() -> None:
    facts = parse_cpuinfo(ARM_CPUINFO)

    assert feature_names(facts.flags, "aarch64") == ("NEON", "FP16", "DOTPROD", "I8MM", "SVE")
    assert facts.model is None  # Graviton kernels print no model name


def test_aarch64_reports_neon_even_when_the_kernel_omits_it() -> None:
    assert feature_names(frozenset({"fp"}), "aarch64") == ("NEON",)
    assert feature_names(frozenset(), "x86_64") == ()


def test_pinned_process_counts_only_its_share_of_physical_cores() -> None:
    # 16 cores / 32 threads, but taskset to 8 threads: plan for 4 cores, not 16.
    assert effective_cores(CoreCounts(16, 32, 8), None) == (4, 8)
    assert effective_cores(CoreCounts(16, 32, 32), None) == (16, 32)
    # psutil unable to count physical cores: /proc/cpuinfo's count, else the logical count.
    assert effective_cores(CoreCounts(None, 8, 8), 4) == (4, 8)
    assert effective_cores(CoreCounts(None, None, None), None) == (1, 1)


def test_linux_source_reads_cpuinfo_counts_and_load(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(two_socket_hyperthreaded())
    intervals: list[float | None] = []

    def cpu_percent(interval: float | None) -> float:
        intervals.append(interval)
        return 42.0 if interval else 7.0

    source = SystemCpuSource(
        cpuinfo_path=cpuinfo,
        system="Linux",
        machine="x86_64",
        core_counts=lambda: CoreCounts(physical=None, logical=8, usable_logical=8),
        cpu_percent=cpu_percent,
    )

    info = source.read()
    assert (info.model, info.arch) == ("Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz", "x86_64")
    assert (info.physical_cores, info.logical_cores) == (4, 8)
    assert "AVX-512F" in info.features
    assert info.load_percent == 42.0
    # The live reading must not block: it asks for "since last call".
    assert source.load_percent() == 7.0
    assert intervals == [0.1, None]


def test_missing_cpuinfo_still_reports_counts(tmp_path: Path) -> None:
    source = SystemCpuSource(
        cpuinfo_path=tmp_path / "absent",
        system="Linux",
        machine="x86_64",
        core_counts=lambda: CoreCounts(physical=2, logical=4, usable_logical=4),
        cpu_percent=lambda interval: 0.0,
    )

    info = source.read()
    assert (info.model, info.physical_cores, info.logical_cores, info.features) == (
        "unknown",
        2,
        4,
        (),
    )


def test_apple_silicon_features_come_from_sysctl(tmp_path: Path) -> None:
    values = {
        "machdep.cpu.brand_string": "Apple M2 Pro",
        "hw.optional.arm.FEAT_DotProd": "1",
        "hw.optional.arm.FEAT_I8MM": "0",
        "hw.optional.arm.FEAT_FP16": "1",
    }
    source = SystemCpuSource(
        cpuinfo_path=tmp_path / "absent",
        system="Darwin",
        machine="arm64",
        sysctl=values.get,
        core_counts=lambda: CoreCounts(physical=10, logical=10, usable_logical=None),
        cpu_percent=lambda interval: 0.0,
    )

    info = source.read()
    assert info.model == "Apple M2 Pro"
    assert info.features == ("NEON", "FP16", "DOTPROD")
    assert info.physical_cores == 10


def test_intel_mac_features_come_from_sysctl_words(tmp_path: Path) -> None:
    values = {
        "machdep.cpu.brand_string": "Intel(R) Core(TM) i9-9880H CPU @ 2.30GHz",
        "machdep.cpu.features": "FPU VME SSE3 SSE4.1 SSE4.2 AVX1.0 FMA F16C",
        "machdep.cpu.leaf7_features": "SMEP BMI1 AVX2 BMI2",
    }
    source = SystemCpuSource(
        cpuinfo_path=tmp_path / "absent",
        system="Darwin",
        machine="x86_64",
        sysctl=values.get,
        core_counts=lambda: CoreCounts(physical=8, logical=16, usable_logical=None),
        cpu_percent=lambda interval: 0.0,
    )

    assert source.read().features == ("SSE4.2", "AVX", "AVX2", "FMA", "F16C")
