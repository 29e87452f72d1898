"""Finding a model's weight buffers in this process's memory and moving them into huge pages."""

from __future__ import annotations

import ctypes
import mmap
from pathlib import Path

import pytest

from hybrid.local.weights import (
    HUGE_PAGE,
    MIN_WEIGHTS_BYTES,
    Region,
    anonymous_regions,
    available_memory,
    collapse,
    huge_page_span,
    huge_pages_available,
    own_anonymous_regions,
    weight_regions,
)

MIB = 1024 * 1024

SMAPS = """\
55d0a0000000-55d0a1000000 rw-p 00000000 00:00 0                          [heap]
Size:              16384 kB
Rss:               16000 kB
VmFlags: rd wr mr mw me ac
7f0000000000-7f0010000000 r--s 00000000 fd:01 1234                       /models/m.gguf
Size:             262144 kB
Rss:              262144 kB
VmFlags: rd sh mr mw me
7f0020000000-7f0030000000 rw-p 00000000 00:00 0
Size:             262144 kB
Rss:              261000 kB
VmFlags: rd wr mr mw me ac
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]
Size:                132 kB
Rss:                  40 kB
"""


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("[always] madvise never", True),
        ("always [madvise] never", True),
        ("always madvise [never]", False),
    ],
)
def test_huge_pages_follow_the_kernel_mode(tmp_path: Path, mode: str, expected: bool) -> None:
    enabled = tmp_path / "enabled"
    enabled.write_text(mode + "\n")
    assert huge_pages_available(enabled, system="Linux") is expected


def test_no_huge_pages_without_the_mode_file_or_off_linux(tmp_path: Path) -> None:
    assert not huge_pages_available(tmp_path / "missing", system="Linux")
    enabled = tmp_path / "enabled"
    enabled.write_text("[always] madvise never\n")
    assert not huge_pages_available(enabled, system="Darwin")


def test_available_memory_is_read_from_meminfo(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24683008 kB\nMemAvailable:    1024 kB\n")

    assert available_memory(meminfo) == 1024 * 1024
    assert available_memory(tmp_path / "missing") == 0


def test_only_unnamed_mappings_are_anonymous_regions() -> None:
    regions = anonymous_regions(SMAPS)

    assert regions == (Region(0x7F0020000000, 0x7F0030000000, 261000 * 1024),)
    assert regions[0].size == 256 * MIB


def test_weights_are_new_large_and_resident() -> None:
    kept = Region(0x1000_0000, 0x1000_0000 + 128 * MIB, 128 * MIB)
    weights = Region(0x2000_0000, 0x2000_0000 + 200 * MIB, 199 * MIB)
    sparse = Region(0x4000_0000, 0x4000_0000 + 256 * MIB, 2 * MIB)
    small = Region(0x6000_0000, 0x6000_0000 + MIN_WEIGHTS_BYTES, MIN_WEIGHTS_BYTES)

    assert weight_regions([kept], [kept, weights, sparse, small]) == (weights,)


def test_buffers_not_yet_filled_count_before_the_weights_are_read() -> None:
    empty = Region(0x2000_0000, 0x2000_0000 + 200 * MIB, 0)
    small = Region(0x6000_0000, 0x6000_0000 + 8 * MIB, 0)

    assert weight_regions([], [empty, small], loaded=False) == (empty,)
    assert weight_regions([], [empty, small]) == ()


def test_a_grown_region_counts_as_new() -> None:
    before = Region(0x1000_0000, 0x1000_0000 + 8 * MIB, 8 * MIB)
    after = Region(0x1000_0000, 0x1000_0000 + 100 * MIB, 100 * MIB)

    assert weight_regions([before], [after]) == (after,)


def test_the_huge_page_span_is_the_whole_pages_inside() -> None:
    region = Region(HUGE_PAGE - 4096, 4 * HUGE_PAGE + 4096, 0)

    assert huge_page_span(region) == (HUGE_PAGE, 3 * HUGE_PAGE)
    assert huge_page_span(Region(4096, HUGE_PAGE + 4096, 0)) is None


@pytest.mark.skipif(not huge_pages_available(), reason="needs Linux transparent huge pages")
def test_collapse_keeps_the_contents_and_reports_what_the_kernel_did() -> None:
    size = 8 * HUGE_PAGE
    buffer = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    try:
        pattern = bytes(range(256)) * (size // 256)
        buffer.write(pattern)
        view = ctypes.c_char.from_buffer(buffer)
        start = ctypes.addressof(view)
        del view  # an exported buffer could not be closed
        region = Region(start, start + size, size)

        moved = collapse([region])

        assert buffer[:] == pattern
        span = huge_page_span(region)
        assert span is not None
        assert moved in (0, span[1])
        assert _huge_bytes(start, start + size) == moved
    finally:
        buffer.close()


def test_this_process_has_anonymous_regions() -> None:
    if not Path("/proc/self/smaps").exists():
        pytest.skip("needs /proc")
    assert all(region.size > 0 for region in own_anonymous_regions())
    assert own_anonymous_regions()


def _huge_bytes(start: int, end: int) -> int:
    """AnonHugePages of the mappings inside [start, end) in this process."""
    total = 0
    inside = False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        fields = line.split()
        if ":" not in fields[0] and "-" in fields[0]:
            low, _, high = fields[0].partition("-")
            inside = start <= int(low, 16) and int(high, 16) <= end
        elif fields[0] == "AnonHugePages:" and inside:
            total += int(fields[1]) * 1024
    return total
