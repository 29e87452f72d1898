"""RAM, swap and the container memory limit.

psutil reports the machine's RAM, but inside a container (Docker, Kubernetes, a systemd slice
with ``MemoryMax``) the kernel kills the process at the cgroup limit long before RAM runs out.
So the cgroup files are read too: v2 ``memory.max``/``memory.current`` and v1
``memory.limit_in_bytes``/``memory.usage_in_bytes``, for this process's own cgroup and its
ancestors (the tightest limit wins).  "max" and absurd v1 values (>= 2**60, the kernel's way of
saying "unlimited") mean no limit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Protocol

from hybrid.hardware.snapshot import MemoryInfo

# cgroup v1 writes PAGE_COUNTER_MAX (about 2**63) for "no limit"; anything this large is that.
V1_UNLIMITED = 2**60


class MemorySource(Protocol):
    """Where the probe gets memory facts from."""

    def read(self) -> MemoryInfo:
        """Return RAM, swap and container figures; cheap enough to call once a second."""
        ...


@dataclass(frozen=True)
class RamFigures:
    """What the OS says about RAM and swap, in bytes."""

    total: int
    available: int
    swap_total: int
    swap_free: int


@dataclass(frozen=True)
class CgroupMemory:
    """The binding container limit and the working set charged against it.

    Attributes:
        limit_bytes: The smallest memory limit on this process's cgroup path, ``None`` if none.
        usage_bytes: The working set of the cgroup holding that limit: usage less inactive page
            cache (the figure ``docker stats`` and the kubelet use); ``None`` when unknown.
    """

    limit_bytes: int | None
    usage_bytes: int | None


def read_ram() -> RamFigures:
    """Read RAM and swap through psutil."""
    import psutil  # type: ignore[import-untyped,unused-ignore]

    virtual = psutil.virtual_memory()
    swap = psutil.swap_memory()
    return RamFigures(
        total=int(virtual.total),
        available=int(virtual.available),
        swap_total=int(swap.total),
        swap_free=int(swap.free),
    )


def read_cgroup_memory(root: Path, self_cgroup: Path | None = None) -> CgroupMemory:
    """Find the tightest cgroup memory limit that applies to this process.

    Args:
        root: Where cgroups are mounted (``/sys/fs/cgroup``).  A v2 tree has ``memory.max``
            files in it; a v1 tree has a ``memory/`` controller folder.
        self_cgroup: ``/proc/self/cgroup``, naming this process's cgroup under ``root``.  When
            missing or unreadable only the top of the tree is read, which is the container's own
            cgroup whenever a cgroup namespace is in use (the Docker and Kubernetes default).

    Returns:
        The limit and working set; both ``None`` when no limit applies or nothing is readable.
    """
    v2_path, v1_path = _own_cgroup_paths(self_cgroup)
    found: list[CgroupMemory] = []
    found.extend(_read_v2(directory) for directory in _chain(root, v2_path))
    found.extend(_read_v1(directory) for directory in _chain(root / "memory", v1_path))
    limited = [entry for entry in found if entry.limit_bytes is not None]
    if not limited:
        return CgroupMemory(limit_bytes=None, usage_bytes=None)
    return min(limited, key=lambda entry: entry.limit_bytes or 0)


class SystemMemorySource:
    """The real memory source: psutil for RAM and swap, cgroup files for the container limit."""

    def __init__(
        self,
        *,
        cgroup_root: Path = Path("/sys/fs/cgroup"),
        self_cgroup: Path | None = Path("/proc/self/cgroup"),
        ram: Callable[[], RamFigures] = read_ram,
    ) -> None:
        """Create the source.

        Args:
            cgroup_root: Where cgroups are mounted (tests pass a tree under tmp_path).
            self_cgroup: This process's ``/proc/self/cgroup``; ``None`` to read only the root.
            ram: Reads RAM and swap figures.
        """
        self._cgroup_root = cgroup_root
        self._self_cgroup = self_cgroup
        self._ram = ram

    def read(self) -> MemoryInfo:
        """Return RAM, swap and the container limit as they are now."""
        ram = self._ram()
        cgroup = read_cgroup_memory(self._cgroup_root, self._self_cgroup)
        return MemoryInfo(
            total_bytes=ram.total,
            available_bytes=ram.available,
            swap_total_bytes=ram.swap_total,
            swap_free_bytes=ram.swap_free,
            cgroup_limit_bytes=cgroup.limit_bytes,
            cgroup_usage_bytes=cgroup.usage_bytes,
        )


def _own_cgroup_paths(self_cgroup: Path | None) -> tuple[str, str]:
    """Return this process's (v2, v1 memory) cgroup paths, ``"/"`` where unknown."""
    v2_path = v1_path = "/"
    if self_cgroup is None:
        return v2_path, v1_path
    try:
        text = self_cgroup.read_text(encoding="utf-8")
    except OSError:
        return v2_path, v1_path
    for line in text.splitlines():
        # "hierarchy-id:controller,list:/path"; v2 is "0::/path".
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":
            v2_path = path or "/"
        elif "memory" in controllers.split(","):
            v1_path = path or "/"
    return v2_path, v1_path


def _chain(base: Path, cgroup_path: str) -> Iterator[Path]:
    """Yield the existing folders from the process's own cgroup up to ``base``."""
    relative = PurePosixPath(cgroup_path.lstrip("/") or ".")
    for part in (relative, *relative.parents):
        directory = base / part
        if directory.is_dir():
            yield directory


def _read_v2(directory: Path) -> CgroupMemory:
    raw = _read_text(directory / "memory.max")
    if raw is None or raw == "max" or not raw.isdigit():
        return CgroupMemory(limit_bytes=None, usage_bytes=None)
    usage = _read_int(directory / "memory.current")
    inactive = _read_stat(directory / "memory.stat", "inactive_file")
    return CgroupMemory(limit_bytes=int(raw), usage_bytes=_working_set(usage, inactive))


def _read_v1(directory: Path) -> CgroupMemory:
    limit = _read_int(directory / "memory.limit_in_bytes")
    if limit is None or limit >= V1_UNLIMITED:
        return CgroupMemory(limit_bytes=None, usage_bytes=None)
    usage = _read_int(directory / "memory.usage_in_bytes")
    stat = directory / "memory.stat"
    inactive = _read_stat(stat, "total_inactive_file")
    if inactive is None:
        inactive = _read_stat(stat, "inactive_file")
    return CgroupMemory(limit_bytes=limit, usage_bytes=_working_set(usage, inactive))


def _working_set(usage: int | None, inactive_file: int | None) -> int | None:
    # Inactive page cache is reclaimed before the OOM killer acts, so it is not really "used".
    if usage is None:
        return None
    return max(0, usage - (inactive_file or 0))


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError:
        return None


def _read_int(path: Path) -> int | None:
    raw = _read_text(path)
    if raw is None or not raw.isdigit():
        return None
    return int(raw)


def _read_stat(path: Path, key: str) -> int | None:
    raw = _read_text(path)
    if raw is None:
        return None
    for line in raw.splitlines():
        name, _, value = line.partition(" ")
        if name == key and value.strip().isdigit():
            return int(value.strip())
    return None
