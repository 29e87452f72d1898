"""Give back the zeroed pages llama.cpp wrote while creating a context.

Creating a context allocates its KV cache and clears it (``ggml_backend_buffer_clear``: every
byte set to 0, so that padding never holds NaNs).  That write makes the whole cache resident
(20 MB for the embedded model's 8,192 tokens at one slot), although a slot's cells are only
read after a request has written them.  A private anonymous page that holds only zeros can be
given back to the kernel (``MADV_DONTNEED``): the next read finds a zero page again, the next
write a fresh zeroed one, so what the memory holds never changes; the cache becomes resident
again only as tokens are written into it.

The pages looked at are those of addresses that became private anonymous read-write memory
while the context was created, in runs of at least 4 MiB, outside glibc's arenas: blocks so
large are mappings of their own (:func:`separate_large_allocations` makes sure of it, as
glibc's own threshold rises during a model's load to the size of the largest block freed), so
nothing but their owner uses them.  The brk heap and the arenas (glibc's heaps, mapped at
multiples of their 64 MiB size), where other threads allocate at any time, are left alone, and
so are threads' stacks: a new block that the kernel placed next to older anonymous memory, in
a mapping that reaches below it to such a multiple, may lie in an arena, so it stays resident
(in a fresh process the cache is given back whole; after a model switch, part of it may stay).
Only resident pages that hold nothing but zeros are given back.

The scan and the advice run in the thread that created the context, before any request can
reach it, with Python's thread switch interval raised meanwhile: other Python threads are held
off for the few milliseconds they take (one already waiting for the GIL may still get a turn at
the start).  What this cannot exclude: code in another thread, outside Python or at that first
turn, that maps a block of 4 MiB or more while the context is created and writes a page of it
that held only zeros during those milliseconds.  In ``hybrid serve`` the other threads are
Python's (the server, the ledger's writer) and a model being replaced, whose buffers all
existed before.

Where transparent huge pages are on for every mapping (``always``), the pages given back are
also advised out of huge pages, so that a token written into the cache later faults in 4 KiB
rather than 2 MiB.  Only Linux has ``/proc/self/maps``; elsewhere nothing is done.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import logging
import platform
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("hybrid.local")

PAGE = 4096
MAPS = Path("/proc/self/maps")
THP_ENABLED = Path("/sys/kernel/mm/transparent_hugepage/enabled")
_MADV_DONTNEED = 4
_MADV_NOHUGEPAGE = 15
_ZERO_PAGE = bytes(PAGE)
# Long enough for a scan of a few thousand pages never to be interrupted by a thread switch.
_NO_SWITCH_S = 60.0
# Allocations at least this large get mappings of their own (see separate_large_allocations).
MMAP_THRESHOLD = 4 * 1024 * 1024
_M_MMAP_THRESHOLD = -3
# glibc's HEAP_MAX_SIZE on 64-bit systems (1 MiB on 32-bit): each arena's heap is mapped at a
# multiple of it.
ARENA_HEAP = 64 * 1024 * 1024 if ctypes.sizeof(ctypes.c_void_p) == 8 else 1024 * 1024


@dataclass(frozen=True)
class Span:
    """A range of addresses.

    Attributes:
        start: Its first address.
        end: The address after its last byte.
    """

    start: int
    end: int

    @property
    def size(self) -> int:
        """Its length in bytes."""
        return self.end - self.start


def writable_anonymous(maps: str) -> tuple[Span, ...]:
    """The private anonymous read-write mappings in a ``/proc/<pid>/maps`` text, but stacks.

    Args:
        maps: The file's text.

    Returns:
        Unnamed mappings with ``rw-p`` permissions (no file, not the brk heap nor the main
        stack), in address order, without those right above an inaccessible ``---p``
        mapping: a thread's stack lies above its guard page.
    """
    spans: list[Span] = []
    guard_end = -1
    for line in maps.splitlines():
        fields = line.split()
        if len(fields) < 5:
            continue
        low, _, high = fields[0].partition("-")
        first, last = int(low, 16), int(high, 16)
        anonymous = fields[4] == "0" and len(fields) == 5  # more fields: a file, [heap], ...
        if anonymous and fields[1] == "rw-p" and first != guard_end:
            spans.append(Span(first, last))
        guard_end = last if fields[1] == "---p" else -1
    return tuple(spans)


def new_spans(before: Iterable[Span], after: Iterable[Span]) -> tuple[Span, ...]:
    """The addresses of ``after`` not in ``before``: memory that became writable between them.

    Args:
        before: Mappings at the first look.
        after: Mappings at the second.

    Returns:
        The parts of ``after``'s mappings that no mapping of ``before`` covered, page-aligned
        inwards, in address order.
    """
    old = sorted(before, key=lambda span: span.start)
    spans: list[Span] = []
    for span in sorted(after, key=lambda span: span.start):
        start = span.start
        for covered in old:
            if covered.end <= start or covered.start >= span.end:
                continue
            if covered.start > start:
                spans.append(Span(start, covered.start))
            start = max(start, covered.end)
        if start < span.end:
            spans.append(Span(start, span.end))
    aligned = (Span(-(-span.start // PAGE) * PAGE, span.end // PAGE * PAGE) for span in spans)
    return tuple(span for span in aligned if span.size > 0)


def outside_arenas(spans: Iterable[Span], mappings: Iterable[Span]) -> tuple[Span, ...]:
    """The spans that cannot be part of a glibc arena's heap.

    An arena's heap starts at a multiple of :data:`ARENA_HEAP` and grows upwards inside that
    block; a mapping that holds such a multiple at or below a span may hold a heap there, so
    that span is dropped.

    Args:
        spans: Parts of ``mappings``.
        mappings: The mappings they lie in.

    Returns:
        The spans whose mapping starts above the last multiple of :data:`ARENA_HEAP` at or
        below them.
    """
    ordered = sorted(mappings, key=lambda mapping: mapping.start)
    kept: list[Span] = []
    for span in spans:
        mapping = next((m for m in ordered if m.start <= span.start < m.end), None)
        if mapping is not None and span.start // ARENA_HEAP * ARENA_HEAP < mapping.start:
            kept.append(span)
    return tuple(kept)


def zero_runs(span: Span, resident: Sequence[bool]) -> list[Span]:
    """The runs of resident pages of ``span`` that hold only zeros.

    Args:
        span: Page-aligned readable memory of this process.
        resident: Which of the span's pages are in RAM (one flag per page); only those are
            read, so that reading never maps pages in.

    Returns:
        Runs of consecutive such pages, in address order.
    """
    runs: list[Span] = []
    run_start: int | None = None
    for index, in_ram in enumerate(resident):
        address = span.start + index * PAGE
        zero = in_ram and ctypes.string_at(address, PAGE) == _ZERO_PAGE
        if zero and run_start is None:
            run_start = address
        elif not zero and run_start is not None:
            runs.append(Span(run_start, address))
            run_start = None
    if run_start is not None:
        runs.append(Span(run_start, span.start + len(resident) * PAGE))
    return runs


def resident_pages(span: Span) -> list[bool]:
    """Which pages of a page-aligned span of this process are in RAM (``mincore``).

    Returns:
        One flag per page; all False where the kernel cannot tell (or off Linux).
    """
    pages = span.size // PAGE
    libc = _libc()
    flags = (ctypes.c_ubyte * pages)()
    if libc is None or libc.mincore(ctypes.c_void_p(span.start), ctypes.c_size_t(span.size), flags):
        return [False] * pages
    return [bool(flag & 1) for flag in flags]


def separate_large_allocations(threshold: int = MMAP_THRESHOLD) -> bool:
    """Have glibc map every allocation of ``threshold`` bytes or more on its own, from now on.

    glibc's own threshold starts at 128 KiB and rises to the size of each large block freed
    (up to 32 MiB), so after a model has loaded, a KV buffer of a few MiB would be put in an
    arena, where its pages cannot be given back.  A fixed threshold stops that rise for the
    whole process: allocations above it are mapped and returned to the system when freed.

    Args:
        threshold: The size in bytes; the default stays above the candidates array llama.cpp
            allocates for every token it samples (12 bytes per vocabulary entry: 3 MiB for
            262k tokens), which is allocated from an arena, as fast as before.

    Returns:
        Whether the C library took the setting (False off Linux or without ``mallopt``).
    """
    libc = _libc()
    if libc is None or not hasattr(libc, "mallopt"):
        return False
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, threshold))


def snapshot() -> tuple[Span, ...]:
    """This process's private anonymous read-write mappings (none off Linux)."""
    if platform.system() != "Linux":
        return ()
    try:
        return writable_anonymous(MAPS.read_text(encoding="ascii", errors="replace"))
    except OSError:
        return ()


def give_back(before: Iterable[Span]) -> int:
    """Give back the zeroed resident pages of the large allocations made since ``before``.

    Call it right after the allocation that cleared them, in the thread that made it, before
    anything can use that memory (see the module's docstring).

    Args:
        before: :func:`snapshot` taken before the allocation.

    Returns:
        Bytes given back (0 off Linux, or where the kernel refused).
    """
    libc = _libc()
    if libc is None:
        return 0
    after = snapshot()
    spans = [
        span
        for span in outside_arenas(new_spans(before, after), after)
        if span.size >= MMAP_THRESHOLD
    ]
    not_huge = _thp_always()

    given = 0
    with _no_thread_switch():
        for span in spans:
            for run in zero_runs(span, resident_pages(span)):
                address, size = ctypes.c_void_p(run.start), ctypes.c_size_t(run.size)
                if not_huge:
                    libc.madvise(address, size, _MADV_NOHUGEPAGE)
                if libc.madvise(address, size, _MADV_DONTNEED) == 0:
                    given += run.size
    if given:
        log.debug("gave back %.1f MB of zeroed pages", given / 1e6)
    return given


@contextlib.contextmanager
def _no_thread_switch() -> Iterator[None]:
    """Hold other Python threads off meanwhile, by raising the thread switch interval.

    A thread already waiting for the GIL may still take one turn at the start; the block must
    not wait on input or output, which would let the others run.
    """
    interval = sys.getswitchinterval()
    sys.setswitchinterval(_NO_SWITCH_S)
    try:
        yield
    finally:
        sys.setswitchinterval(interval)


def _thp_always() -> bool:
    try:
        return "[always]" in THP_ENABLED.read_text(encoding="ascii", errors="replace")
    except OSError:
        return False


@functools.cache
def _libc() -> ctypes.PyDLL | None:
    """The C library, its calls made with the GIL held (no Python thread runs meanwhile)."""
    if platform.system() != "Linux":
        return None
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    libc = ctypes.PyDLL(name, use_errno=True)
    libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    libc.madvise.restype = ctypes.c_int
    libc.mincore.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p)
    libc.mincore.restype = ctypes.c_int
    if hasattr(libc, "mallopt"):
        libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
        libc.mallopt.restype = ctypes.c_int
    return libc
