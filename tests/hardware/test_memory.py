"""RAM and container limits: cgroup v1/v2 trees under tmp_path, psutil faked."""

from __future__ import annotations

import json
from pathlib import Path

from hardware_fakes import GIB, MIB, build_snapshot

from hybrid.hardware.memory import RamFigures, SystemMemorySource, read_cgroup_memory
from hybrid.hardware.snapshot import MemoryInfo


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def ram(total: int = 64 * GIB, available: int = 60 * GIB) -> RamFigures:
    return RamFigures(total=total, available=available, swap_total=2 * GIB, swap_free=GIB)


def test_cgroup_v2_limit_and_working_set(tmp_path: Path) -> None:
    write(tmp_path / "memory.max", f"{4 * GIB}\n")
    write(tmp_path / "memory.current", f"{GIB}\n")
    write(tmp_path / "memory.stat", f"anon 123\ninactive_file {256 * MIB}\nactive_file 0\n")

    cgroup = read_cgroup_memory(tmp_path)

    assert cgroup.limit_bytes == 4 * GIB
    # Inactive page cache is reclaimable, so it does not count as used.
    assert cgroup.usage_bytes == GIB - 256 * MIB


def test_cgroup_v2_max_means_no_limit(tmp_path: Path) -> None:
    write(tmp_path / "memory.max", "max\n")
    write(tmp_path / "memory.current", "1000\n")

    cgroup = read_cgroup_memory(tmp_path)
    assert (cgroup.limit_bytes, cgroup.usage_bytes) == (None, None)


def test_cgroup_v1_absurd_limit_means_no_limit(tmp_path: Path) -> None:
    write(tmp_path / "memory" / "memory.limit_in_bytes", "9223372036854771712\n")

    assert read_cgroup_memory(tmp_path).limit_bytes is None


def test_cgroup_v1_limit_with_total_inactive_file(tmp_path: Path) -> None:
    write(tmp_path / "memory" / "memory.limit_in_bytes", f"{2 * GIB}\n")
    write(tmp_path / "memory" / "memory.usage_in_bytes", f"{GIB}\n")
    write(tmp_path / "memory" / "memory.stat", f"cache 5\ntotal_inactive_file {GIB // 2}\n")

    cgroup = read_cgroup_memory(tmp_path)
    assert (cgroup.limit_bytes, cgroup.usage_bytes) == (2 * GIB, GIB // 2)


def test_own_nested_cgroup_with_the_tightest_limit_wins(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    write(root / "kubepods" / "memory.max", f"{16 * GIB}\n")
    write(root / "kubepods" / "pod1" / "memory.max", f"{3 * GIB}\n")
    write(root / "kubepods" / "pod1" / "memory.current", f"{GIB}\n")
    write(root / "other" / "memory.max", f"{MIB}\n")  # someone else's cgroup: ignored
    self_cgroup = tmp_path / "self-cgroup"
    write(self_cgroup, "0::/kubepods/pod1\n")

    cgroup = read_cgroup_memory(root, self_cgroup)

    assert (cgroup.limit_bytes, cgroup.usage_bytes) == (3 * GIB, GIB)


def test_v1_memory_controller_path_is_read_from_proc_self_cgroup(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    write(root / "memory" / "memory.limit_in_bytes", "9223372036854771712\n")
    write(root / "memory" / "docker" / "abc" / "memory.limit_in_bytes", f"{GIB}\n")
    self_cgroup = tmp_path / "self-cgroup"
    write(self_cgroup, "12:cpu,cpuacct:/docker/abc\n4:memory:/docker/abc\n0::/\n")

    assert read_cgroup_memory(root, self_cgroup).limit_bytes == GIB


def test_no_cgroup_files_means_no_limit(tmp_path: Path) -> None:
    cgroup = read_cgroup_memory(tmp_path / "absent", tmp_path / "absent-too")
    assert (cgroup.limit_bytes, cgroup.usage_bytes) == (None, None)


def test_container_limit_shrinks_usable_memory(tmp_path: Path) -> None:
    write(tmp_path / "memory.max", f"{4 * GIB}\n")
    write(tmp_path / "memory.current", f"{3 * GIB}\n")
    source = SystemMemorySource(cgroup_root=tmp_path, self_cgroup=None, ram=ram)

    info = source.read()

    assert (info.total_bytes, info.available_bytes) == (64 * GIB, 60 * GIB)
    assert (info.swap_total_bytes, info.swap_free_bytes) == (2 * GIB, GIB)
    assert info.usable_total_bytes == 4 * GIB
    assert info.usable_available_bytes == GIB


def test_without_a_limit_usable_memory_is_the_machines() -> None:
    info = MemoryInfo(
        total_bytes=16 * GIB,
        available_bytes=10 * GIB,
        swap_total_bytes=0,
        swap_free_bytes=0,
        cgroup_limit_bytes=None,
        cgroup_usage_bytes=None,
    )
    assert (info.usable_total_bytes, info.usable_available_bytes) == (16 * GIB, 10 * GIB)


def test_limit_above_ram_does_not_raise_usable_memory() -> None:
    info = MemoryInfo(
        total_bytes=16 * GIB,
        available_bytes=10 * GIB,
        swap_total_bytes=0,
        swap_free_bytes=0,
        cgroup_limit_bytes=64 * GIB,
        cgroup_usage_bytes=GIB,
    )
    assert (info.usable_total_bytes, info.usable_available_bytes) == (16 * GIB, 10 * GIB)


def test_snapshot_dict_is_json_and_carries_usable_memory() -> None:
    snapshot = build_snapshot(
        total=64 * GIB, available=60 * GIB, cgroup_limit=8 * GIB, cgroup_usage=GIB
    )

    data = json.loads(json.dumps(snapshot.to_dict()))

    assert data["memory"]["usable_total_bytes"] == 8 * GIB
    assert data["memory"]["usable_available_bytes"] == 7 * GIB
    assert data["cpu"]["features"] == ["AVX", "AVX2", "FMA"]
    assert data["gpus"] == []
