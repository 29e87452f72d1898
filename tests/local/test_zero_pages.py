"""Zeroed pages given back: which memory is looked at, and that what it holds never changes."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import mmap
import platform
import subprocess
import sys
from collections.abc import Iterator

import pytest

import hybrid.local.zero_pages as zero_pages
from hybrid.local.zero_pages import (
    ARENA_HEAP,
    MMAP_THRESHOLD,
    PAGE,
    Span,
    give_back,
    new_spans,
    outside_arenas,
    resident_pages,
    separate_large_allocations,
    snapshot,
    writable_anonymous,
    zero_runs,
)

linux = pytest.mark.skipif(platform.system() != "Linux", reason="needs /proc/self/maps")

MAPS = """\
55f76d7d8000-55f770f0f000 rw-p 00000000 00:00 0                          [heap]
7fbc3dd03000-7fbc4ea00000 rw-p 00000000 00:00 0
7fbc4ea00000-7fbc50000000 ---p 00000000 00:00 0
7fbc5d83f000-7fbc5e800000 r--p 00000000 00:00 0
7fbc60000000-7fbc60021000 rw-p 00001000 08:01 1234                       /usr/lib/libc.so.6
7fbc61000000-7fbc61001000 ---p 00000000 00:00 0
7fbc61001000-7fbc61801000 rw-p 00000000 00:00 0
7ffd1c000000-7ffd1c021000 rw-p 00000000 00:00 0                          [stack]
"""


def test_only_private_anonymous_writable_mappings_are_read() -> None:
    # Not the brk heap, a read-only mapping, a file, a thread's stack (above its guard page)
    # nor the main stack.
    assert writable_anonymous(MAPS) == (Span(0x7FBC3DD03000, 0x7FBC4EA00000),)


def test_new_spans_are_the_addresses_no_earlier_mapping_covered() -> None:
    before = [Span(0x10000, 0x20000), Span(0x40000, 0x50000)]
    after = [
        Span(0x10000, 0x28000),  # grew by 0x8000 (a heap's new end)
        Span(0x30000, 0x60000),  # a new mapping merged around an old one
        Span(0x80000, 0x81000),  # new
    ]
    assert new_spans(before, after) == (
        Span(0x20000, 0x28000),
        Span(0x30000, 0x40000),
        Span(0x50000, 0x60000),
        Span(0x80000, 0x81000),
    )


def test_new_spans_keep_whole_pages_only() -> None:
    assert new_spans([], [Span(0x1010, 0x3010)]) == (Span(0x2000, 0x3000),)
    assert new_spans([], [Span(0x1010, 0x1FF0)]) == ()


def test_memory_that_may_be_an_arena_heap_is_left_out() -> None:
    heap = 0x7F8B7C000000  # a multiple of 64 MiB: where glibc maps an arena's heap
    assert heap % ARENA_HEAP == 0
    mappings = [
        Span(heap, heap + 0x3000000),  # an arena's heap (grown by 0x1000000 just now)
        Span(heap - 0x2000000, heap - 0x1000000),  # a mapping of its own
        Span(heap - 0x800000, heap + 0x100000),  # one merged with a heap's start
    ]
    spans = [
        Span(heap + 0x2000000, heap + 0x3000000),
        Span(heap - 0x2000000, heap - 0x1000000),
        Span(heap - 0x800000, heap),
    ]
    assert outside_arenas(spans, mappings) == (
        Span(heap - 0x2000000, heap - 0x1000000),
        Span(heap - 0x800000, heap),
    )
    assert (
        outside_arenas([Span(heap + 0x1000, heap + 0x2000)], [Span(heap - 0x1000, heap + 0x2000)])
        == ()
    )


@contextlib.contextmanager
def written_block(size: int, marked: bool = True) -> Iterator[tuple[mmap.mmap, Span]]:
    """Private anonymous memory, every page written with zeros, and bytes in pages 2 and 5
    when ``marked``; its span of addresses."""
    memory = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    memory.write(bytes(size))
    if marked:
        memory[2 * PAGE + 100] = 7
        memory[6 * PAGE - 1] = 9
    anchor = ctypes.c_char.from_buffer(memory)
    try:
        yield memory, Span(ctypes.addressof(anchor), ctypes.addressof(anchor) + size)
    finally:
        del anchor
        memory.close()


@linux
def test_zero_runs_are_the_resident_zero_pages() -> None:
    with written_block(8 * PAGE) as (_, span):
        start = span.start
        resident = resident_pages(span)
        assert resident == [True] * 8
        resident[7] = False  # a page not in RAM is never read
        runs = zero_runs(span, resident)
    assert runs == [
        Span(start, start + 2 * PAGE),
        Span(start + 3 * PAGE, start + 5 * PAGE),
        Span(start + 6 * PAGE, start + 7 * PAGE),
    ]


@contextlib.contextmanager
def mapping_alone(size: int) -> Iterator[tuple[mmap.mmap, int, Span]]:
    """Private anonymous memory of ``size`` bytes that is a mapping of its own, every page
    written with zeros and bytes in pages 2 and 5; the whole block (one page or two unmapped on
    each side of it), where its pages start, and their span.

    The kernel places a new mapping next to older anonymous memory when it can and merges the
    two, and a merged mapping that reaches below a multiple of the arena size is left alone as
    part of a possible arena; where that happens depends on what the process mapped before.
    Unmapped pages on both sides keep this one apart, and it is made not to start at such a
    multiple, so that it is looked at wherever the kernel puts it.
    """
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
    libc.munmap.restype = ctypes.c_int
    whole = mmap.mmap(-1, size + 4 * PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    anchor = ctypes.c_char.from_buffer(whole)
    base = ctypes.addressof(anchor)
    del anchor
    offset = PAGE if (base + PAGE) % ARENA_HEAP else 2 * PAGE
    for start, length in ((base, offset), (base + offset + size, 4 * PAGE - offset)):
        assert libc.munmap(start, length) == 0, ctypes.get_errno()
    block = slice(offset, offset + size)
    whole[block] = bytes(size)
    whole[offset + 2 * PAGE + 100] = 7
    whole[offset + 6 * PAGE - 1] = 9
    try:
        yield whole, offset, Span(base + offset, base + offset + size)
    finally:
        whole.close()  # unmaps the whole block; the pages already unmapped are no error


@linux
def test_given_back_pages_leave_ram_and_read_as_before() -> None:
    size = MMAP_THRESHOLD  # the smallest block looked at
    before = snapshot()
    with mapping_alone(size) as (memory, offset, span):
        assert all(resident_pages(span))
        assert give_back(before) >= size - 2 * PAGE
        # Only the pages holding bytes stay in RAM ...
        assert [index for index, kept in enumerate(resident_pages(span)) if kept] == [2, 5]
        # ... and every byte reads as it was written; a page written again is written.
        expected = bytearray(size)
        expected[2 * PAGE + 100] = 7
        expected[6 * PAGE - 1] = 9
        assert memory[offset : offset + size] == bytes(expected)
        memory[offset + PAGE] = 3
        assert memory[offset + PAGE] == 3
        assert resident_pages(span)[1]


@linux
def test_smaller_blocks_are_left_alone() -> None:
    before = snapshot()
    with written_block(MMAP_THRESHOLD // 2, marked=False) as (_, span):
        give_back(before)
        assert all(resident_pages(span))


@linux
def test_memory_that_existed_before_is_left_alone() -> None:
    with written_block(8 * PAGE) as (_, span):
        give_back(snapshot())
        assert resident_pages(span) == [True] * 8


def test_nothing_is_done_off_linux(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(zero_pages.platform, "system", lambda: "Darwin")
    zero_pages._libc.cache_clear()
    try:
        assert snapshot() == ()
        assert give_back(()) == 0
        assert not separate_large_allocations()
        assert resident_pages(Span(0, 2 * PAGE)) == [False, False]
    finally:
        zero_pages._libc.cache_clear()


LARGE_BLOCK = """
import ctypes, ctypes.util
from hybrid.local.zero_pages import new_spans, outside_arenas, separate_large_allocations, snapshot

libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.argtypes = (ctypes.c_size_t,)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = (ctypes.c_void_p,)
# Freeing a large mapped block raises glibc's own threshold above the next allocation's size,
# which would then come from an arena ...
libc.free(libc.malloc(24 * 1024 * 1024))
assert separate_large_allocations()
# ... unless the threshold is fixed: then it is a mapping of its own, its pages givable.
before = snapshot()
block = libc.malloc(6 * 1024 * 1024)
after = snapshot()
spans = outside_arenas(new_spans(before, after), after)
print(any(span.start <= block < span.end for span in spans))
"""


@linux
def test_large_allocations_get_mappings_of_their_own() -> None:
    # In a fresh process: in this one, earlier tests' mappings may lie around the new block.
    result = subprocess.run(
        [sys.executable, "-c", LARGE_BLOCK], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "True", result.stderr
