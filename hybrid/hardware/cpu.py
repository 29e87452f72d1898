"""CPU facts: model name, core counts, SIMD features and load.

Linux reads ``/proc/cpuinfo`` (x86 ``flags``, arm ``Features``); macOS asks ``sysctl``; core
counts and load come from psutil.  Only the SIMD features llama.cpp has kernels for are
reported, under display names (``AVX2``, ``AVX-512F``, ``NEON``, ``DOTPROD``, ...).
"""

from __future__ import annotations

import os
import platform
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from hybrid.hardware.snapshot import CpuInfo

# /proc/cpuinfo flag -> display name, in the order reports list them.
X86_FEATURES: tuple[tuple[str, str], ...] = (
    ("sse4_2", "SSE4.2"),
    ("avx", "AVX"),
    ("avx2", "AVX2"),
    ("fma", "FMA"),
    ("f16c", "F16C"),
    ("avx_vnni", "AVX-VNNI"),
    ("avx512f", "AVX-512F"),
    ("avx512bw", "AVX-512BW"),
    ("avx512vl", "AVX-512VL"),
    ("avx512_vnni", "AVX-512VNNI"),
    ("avx512_bf16", "AVX-512BF16"),
    ("amx_int8", "AMX-INT8"),
    ("amx_bf16", "AMX-BF16"),
)

# /proc/cpuinfo "Features" word on arm -> display name.
ARM_FEATURES: tuple[tuple[str, str], ...] = (
    ("asimd", "NEON"),
    ("asimdhp", "FP16"),
    ("asimddp", "DOTPROD"),
    ("i8mm", "I8MM"),
    ("bf16", "BF16"),
    ("sve", "SVE"),
    ("sve2", "SVE2"),
)

# macOS sysctl key (value "1" when present) -> display name, Apple Silicon.
DARWIN_ARM_FEATURES: tuple[tuple[str, str], ...] = (
    ("hw.optional.neon", "NEON"),
    ("hw.optional.arm.FEAT_FP16", "FP16"),
    ("hw.optional.arm.FEAT_DotProd", "DOTPROD"),
    ("hw.optional.arm.FEAT_I8MM", "I8MM"),
    ("hw.optional.arm.FEAT_BF16", "BF16"),
)

# Words of macOS's machdep.cpu.features / leaf7_features (Intel Macs) -> /proc/cpuinfo flag.
DARWIN_X86_WORDS: dict[str, str] = {
    "SSE4.2": "sse4_2",
    "AVX1.0": "avx",
    "AVX2": "avx2",
    "FMA": "fma",
    "F16C": "f16c",
    "AVX512F": "avx512f",
    "AVX512BW": "avx512bw",
    "AVX512VL": "avx512vl",
    "AVX512VNNI": "avx512_vnni",
}

ARM_ARCHES = frozenset({"arm64", "aarch64", "armv8l"})


class CpuSource(Protocol):
    """Where the probe gets CPU facts from."""

    def read(self) -> CpuInfo:
        """Return the CPU facts; may block briefly (well under a second) to measure load."""
        ...

    def load_percent(self) -> float:
        """Return CPU load (0..100) since the previous call, without blocking."""
        ...


@dataclass(frozen=True)
class CoreCounts:
    """Core counts as the OS reports them; ``None`` where it does not say.

    Attributes:
        physical: Physical cores of the machine.
        logical: Hardware threads of the machine.
        usable_logical: Hardware threads this process may run on (CPU affinity, cpusets).
    """

    physical: int | None
    logical: int | None
    usable_logical: int | None


@dataclass(frozen=True)
class CpuinfoFacts:
    """What ``/proc/cpuinfo`` says.

    Attributes:
        model: The first ``model name`` (or ``Hardware``/``Processor`` on arm), ``None`` if absent.
        flags: Every word of the ``flags`` (x86) or ``Features`` (arm) line.
        physical_cores: Distinct (physical id, core id) pairs, ``None`` when not listed.
    """

    model: str | None
    flags: frozenset[str]
    physical_cores: int | None


def parse_cpuinfo(text: str) -> CpuinfoFacts:
    """Parse the text of ``/proc/cpuinfo``.

    Args:
        text: The file's contents; any processor count, x86 or arm layout.

    Returns:
        The model name, the feature words and the physical core count found in it.
    """
    model: str | None = None
    fallback_model: str | None = None
    flags: set[str] = set()
    cores: set[tuple[str, str]] = set()
    physical_id = "0"
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key = key.strip().lower()
        value = value.strip()
        if key == "model name" and model is None and value:
            model = value
        elif key in ("hardware", "processor") and not value.isdigit() and value:
            # Older arm kernels name the SoC here instead of in "model name".
            fallback_model = fallback_model or value
        elif key in ("flags", "features"):
            flags.update(value.split())
        elif key == "physical id":
            physical_id = value
        elif key == "core id":
            cores.add((physical_id, value))
    return CpuinfoFacts(
        model=model or fallback_model,
        flags=frozenset(flags),
        physical_cores=len(cores) or None,
    )


def feature_names(flags: Iterable[str], arch: str) -> tuple[str, ...]:
    """Map raw CPU flags to the display names llama.cpp users know.

    Args:
        flags: ``/proc/cpuinfo`` words (``avx2``, ``asimddp``, ...).
        arch: Machine architecture; on 64-bit arm NEON is reported even when the kernel
            omits ``asimd``, because AArch64 mandates it.

    Returns:
        Display names in the order of :data:`X86_FEATURES` or :data:`ARM_FEATURES`.
    """
    present = set(flags)
    if arch.lower() in ARM_ARCHES:
        if arch.lower() in ("arm64", "aarch64"):
            present.add("asimd")
        return tuple(name for flag, name in ARM_FEATURES if flag in present)
    return tuple(name for flag, name in X86_FEATURES if flag in present)


def effective_cores(counts: CoreCounts, cpuinfo_physical: int | None) -> tuple[int, int]:
    """Return the (physical, logical) cores this process may actually use.

    When the process is pinned to fewer hardware threads than the machine has (``taskset``,
    a container cpuset), the physical count shrinks in proportion: running one thread per
    machine core on four allowed CPUs would only oversubscribe them.

    Args:
        counts: What the OS reports.
        cpuinfo_physical: Physical cores counted from ``/proc/cpuinfo``, used when psutil
            cannot tell.

    Returns:
        ``(physical, logical)``, both at least 1 and ``physical <= logical``.
    """
    logical = counts.logical or counts.usable_logical or 1
    physical = counts.physical or cpuinfo_physical or logical
    if counts.usable_logical and counts.usable_logical < logical:
        physical = max(1, physical * counts.usable_logical // logical)
        logical = counts.usable_logical
    return min(physical, logical), logical


def read_sysctl(name: str) -> str | None:
    """Return ``sysctl -n NAME`` stripped, or ``None`` when it fails or is not macOS/BSD."""
    try:
        done = subprocess.run(
            ["sysctl", "-n", name], capture_output=True, text=True, timeout=2, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return None
    return done.stdout.strip() or None


def read_core_counts() -> CoreCounts:
    """Ask psutil and the scheduler how many cores exist and how many this process may use."""
    import psutil  # type: ignore[import-untyped,unused-ignore]

    usable: int | None = None
    if hasattr(os, "sched_getaffinity"):
        usable = len(os.sched_getaffinity(0))
    physical = psutil.cpu_count(logical=False)
    logical = psutil.cpu_count(logical=True)
    return CoreCounts(
        physical=int(physical) if physical else None,
        logical=int(logical) if logical else None,
        usable_logical=usable,
    )


def read_cpu_percent(interval_s: float | None) -> float:
    """Return psutil's whole-machine CPU load; ``None`` interval means "since the last call"."""
    import psutil  # type: ignore[import-untyped,unused-ignore]

    return float(psutil.cpu_percent(interval=interval_s))


class SystemCpuSource:
    """The real CPU source: psutil for counts and load, /proc/cpuinfo or sysctl for the rest."""

    def __init__(
        self,
        *,
        cpuinfo_path: Path = Path("/proc/cpuinfo"),
        system: str | None = None,
        machine: str | None = None,
        sysctl: Callable[[str], str | None] = read_sysctl,
        core_counts: Callable[[], CoreCounts] = read_core_counts,
        cpu_percent: Callable[[float | None], float] = read_cpu_percent,
        load_interval_s: float = 0.1,
    ) -> None:
        """Create the source.

        Args:
            cpuinfo_path: Where ``/proc/cpuinfo`` lives (tests pass a file under tmp_path).
            system: ``platform.system()`` override (``"Linux"``, ``"Darwin"``, ...).
            machine: ``platform.machine()`` override (``"x86_64"``, ``"arm64"``, ...).
            sysctl: Reads one macOS sysctl value, ``None`` when missing.
            core_counts: Reports core counts.
            cpu_percent: psutil-style load reader: ``interval`` seconds of blocking, or ``None``
                for "since the previous call".
            load_interval_s: How long :meth:`read` samples the load.  A one-shot probe has no
                earlier reading to compare with, so it must watch the CPU for a moment.
        """
        self._cpuinfo_path = cpuinfo_path
        self._system = system or platform.system()
        self._machine = machine or platform.machine()
        self._sysctl = sysctl
        self._core_counts = core_counts
        self._cpu_percent = cpu_percent
        self._load_interval_s = load_interval_s

    def read(self) -> CpuInfo:
        """Return the CPU facts, blocking ``load_interval_s`` to measure the load."""
        if self._system == "Darwin":
            model, features, cpuinfo_physical = self._read_darwin()
        else:
            model, features, cpuinfo_physical = self._read_proc()
        physical, logical = effective_cores(self._core_counts(), cpuinfo_physical)
        return CpuInfo(
            model=model or "unknown",
            arch=self._machine,
            physical_cores=physical,
            logical_cores=logical,
            features=features,
            load_percent=self._cpu_percent(self._load_interval_s),
        )

    def load_percent(self) -> float:
        """Return the load since the previous call, without blocking."""
        return self._cpu_percent(None)

    def _read_proc(self) -> tuple[str | None, tuple[str, ...], int | None]:
        try:
            text = self._cpuinfo_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            # Not Linux, or /proc is hidden: counts still come from psutil.
            return None, (), None
        facts = parse_cpuinfo(text)
        return facts.model, feature_names(facts.flags, self._machine), facts.physical_cores

    def _read_darwin(self) -> tuple[str | None, tuple[str, ...], int | None]:
        model = self._sysctl("machdep.cpu.brand_string")
        if self._machine.lower() in ARM_ARCHES:
            features = tuple(name for key, name in DARWIN_ARM_FEATURES if self._sysctl(key) == "1")
            if "NEON" not in features:
                # Every Apple Silicon core has NEON even if the sysctl key is missing.
                features = ("NEON", *features)
            return model, features, None
        words: list[str] = []
        for key in ("machdep.cpu.features", "machdep.cpu.leaf7_features"):
            words.extend((self._sysctl(key) or "").upper().split())
        flags = {DARWIN_X86_WORDS[word] for word in words if word in DARWIN_X86_WORDS}
        return model, feature_names(flags, self._machine), None
