"""Where a loaded model's weights live: mapped from its file, or copied into huge pages.

llama.cpp maps a GGUF file into memory by default and computes from the mapping.  On x86 it
also repacks some matrices (Q4_0, Q4_K, IQ4_NL) into the layout its matrix kernels read fastest
(the ``CPU_REPACK`` buffer: prompts are read 9-14 % faster with it on two cores).  The repacked
copy is anonymous memory, and the mapped pages it was read from stay resident beside it: Linux
maps the file in folios of up to 2 MiB, each shared with the neighbouring tensors, which are
read for every token.  Those matrices are then held twice (12.7 MiB for Gemma 3 270M).

Copying the file into anonymous memory instead (llama.cpp's ``use_mmap`` off) holds every
weight once.  Copied into 4 KiB pages, though, a token's pass over the weights is about 10 %
slower than over the file's 2 MiB mappings (more TLB misses), so the copy goes into transparent
huge pages: the weight buffers are advised (``MADV_HUGEPAGE``) as soon as llama.cpp has
allocated them, before it reads the file into them, and whatever is still in small pages after
loading is collapsed (``MADV_COLLAPSE``).  This is only done where it can work: on Linux with
transparent huge pages enabled (``always`` or ``madvise``), for a model computed on the CPU,
with twice its file's size of memory available.  Anywhere else, or when the kernel puts none of
the weights in huge pages (``MADV_COLLAPSE`` is Linux 6.1 and later), the file stays mapped as
before.

The weights are the anonymous mappings larger than 64 MiB that appeared while the model loaded
(once loaded, resident almost whole: the loader wrote every byte of them).  glibc's arenas
never grow past 64 MiB, so a larger anonymous mapping is one allocation of its own.  Advice
about page size never changes what memory holds: a mapping taken by mistake only costs its
pages.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import platform
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("hybrid.local")

THP_ENABLED = Path("/sys/kernel/mm/transparent_hugepage/enabled")
MEMINFO = Path("/proc/meminfo")
# A copy is made only when the memory available holds this many times the file: a mapped file
# whose pages the kernel can drop and read again is the safer choice where memory is short.
_AVAILABLE_SHARE = 2
HUGE_PAGE = 2 * 1024 * 1024
# glibc's per-thread arenas (where the vocabulary and llama.cpp's small allocations go) are
# at most 64 MiB: anything larger is a buffer of its own.
MIN_WEIGHTS_BYTES = 64 * 1024 * 1024
# A region is taken for weights when at least this share of it is resident after loading.
_RESIDENT_SHARE = 0.9
_MADV_HUGEPAGE = 14
_MADV_COLLAPSE = 25


@dataclass(frozen=True)
class Region:
    """An anonymous memory mapping of this process.

    Attributes:
        start: Its first address.
        end: The address after its last byte.
        resident: Bytes of it in RAM.
    """

    start: int
    end: int
    resident: int

    @property
    def size(self) -> int:
        """Its length in bytes."""
        return self.end - self.start


def load_model(path: Path, n_gpu_layers: int, huge_pages: bool | None) -> tuple[Any, str]:
    """Load a model's weights through llama.cpp, copied into huge pages or mapped.

    Args:
        path: The GGUF file.
        n_gpu_layers: Blocks offloaded to the GPU.
        huge_pages: Copy the weights into huge pages; None: where that works and fits
            (transparent huge pages available, no layer on a GPU, twice the file's size
            available in memory).  Where the kernel puts none of them in huge pages, the file
            is loaded again, mapped.

    Returns:
        The model (``llama_model *``; None where llama.cpp failed) and where its weights are:
        ``huge pages`` or ``mapped``.
    """
    import llama_cpp

    params = llama_cpp.llama_model_default_params()
    params.n_gpu_layers = n_gpu_layers
    encoded = str(path).encode("utf-8")
    if huge_pages is None:
        huge_pages = (
            n_gpu_layers == 0
            and huge_pages_available()
            and available_memory() >= _AVAILABLE_SHARE * path.stat().st_size
        )
    if huge_pages:
        params.use_mmap = False
        before = own_anonymous_regions()
        advised = False

        def allocated(progress: float, user_data: ctypes.c_void_p) -> bool:
            # Called before each tensor is read; at the first, the buffers exist but are
            # untouched, so the reads fault huge pages in directly (no copy afterwards).
            nonlocal advised
            if not advised:
                advised = True
                advise(weight_regions(before, own_anonymous_regions(), loaded=False))
            return True

        # Kept in a local until the loads end: llama.cpp holds only the function pointer.
        callback = llama_cpp.llama_progress_callback(allocated)
        params.progress_callback = callback
        model = llama_cpp.llama_model_load_from_file(encoded, params)
        if not model:
            return None, "huge pages"
        if collapse(weight_regions(before, own_anonymous_regions())) > 0:
            return model, "huge pages"
        # In small pages the weights are slower to read than mapped from the file.
        log.info("the kernel put none of %s's weights in huge pages; mapping the file", path.name)
        llama_cpp.llama_model_free(model)
        params.use_mmap = True
    return llama_cpp.llama_model_load_from_file(encoded, params), "mapped"


def huge_pages_available(enabled: Path = THP_ENABLED, system: str | None = None) -> bool:
    """Whether this process can move memory into transparent huge pages.

    Args:
        enabled: The kernel's THP mode file (``[always] madvise never`` marks the mode).
        system: The operating system's name; None for this one's.

    Returns:
        True on Linux with THP in ``always`` or ``madvise`` mode.
    """
    if (system or platform.system()) != "Linux":
        return False
    try:
        text = enabled.read_text(encoding="ascii", errors="replace")
    except OSError:
        return False
    return "[always]" in text or "[madvise]" in text


def available_memory(meminfo: Path = MEMINFO) -> int:
    """Bytes of memory available to new allocations (``MemAvailable``; 0 where unknown)."""
    try:
        text = meminfo.read_text(encoding="ascii", errors="replace")
    except OSError:
        return 0
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "MemAvailable:" and fields[1].isdigit():
            return int(fields[1]) * 1024
    return 0


def anonymous_regions(smaps: str) -> tuple[Region, ...]:
    """The anonymous mappings in a ``/proc/<pid>/smaps`` text, with their resident bytes.

    Args:
        smaps: The file's text.

    Returns:
        Mappings without a name (``[heap]``, ``[stack]`` and files left out), in address
        order.
    """
    regions: list[Region] = []
    current: tuple[int, int] | None = None
    for line in smaps.splitlines():
        fields = line.split()
        if not fields:
            continue
        if ":" not in fields[0] and "-" in fields[0]:
            start, _, end = fields[0].partition("-")
            # Five fields: anonymous; a sixth names a file, [heap], [stack] or [vdso].
            current = (int(start, 16), int(end, 16)) if len(fields) == 5 else None
        elif fields[0] == "Rss:" and current is not None:
            regions.append(Region(current[0], current[1], int(fields[1]) * 1024))
            current = None
    return tuple(regions)


def weight_regions(
    before: Iterable[Region],
    after: Iterable[Region],
    *,
    loaded: bool = True,
    min_bytes: int = MIN_WEIGHTS_BYTES,
) -> tuple[Region, ...]:
    """The regions a model load created for its weights.

    Args:
        before: Anonymous regions before the load.
        after: Anonymous regions since (allocated, or also filled).
        loaded: The weights have been read into ``after``'s regions: only regions resident
            almost whole count.
        min_bytes: The smallest region counted.

    Returns:
        Regions of ``after`` that did not exist before and are larger than ``min_bytes``.
    """
    old = {(region.start, region.end) for region in before}
    return tuple(
        region
        for region in after
        if (region.start, region.end) not in old
        and region.size > min_bytes
        and (not loaded or region.resident >= _RESIDENT_SHARE * region.size)
    )


def huge_page_span(region: Region) -> tuple[int, int] | None:
    """The whole 2 MiB pages inside a region, as (start, length), or None if there are none."""
    start = -(-region.start // HUGE_PAGE) * HUGE_PAGE
    end = region.end // HUGE_PAGE * HUGE_PAGE
    return (start, end - start) if end > start else None


def advise(regions: Iterable[Region]) -> int:
    """Ask for transparent huge pages where regions are touched from now on.

    Args:
        regions: Anonymous regions, best before their pages are written.

    Returns:
        Bytes advised.
    """
    return sum(region.size for region in _madvise(regions, _MADV_HUGEPAGE))


def collapse(regions: Iterable[Region]) -> int:
    """Move regions into transparent huge pages, now.

    Args:
        regions: Anonymous regions whose pages are resident.

    Returns:
        Bytes collapsed into huge pages (0 where the kernel refused: too old, THP off).
    """
    advised = _madvise(regions, _MADV_HUGEPAGE)
    return sum(region.size for region in _madvise(advised, _MADV_COLLAPSE))


def own_anonymous_regions() -> tuple[Region, ...]:
    """This process's anonymous regions (none where ``/proc`` cannot be read)."""
    try:
        return anonymous_regions(Path("/proc/self/smaps").read_text(errors="replace"))
    except OSError:
        return ()


def _madvise(regions: Iterable[Region], advice: int) -> list[Region]:
    """Give ``advice`` for the whole huge pages of each region; returns those it was taken for
    (narrowed to those pages)."""
    libc = _libc()
    if libc is None:
        return []
    taken: list[Region] = []
    for region in regions:
        span = huge_page_span(region)
        if span is None:
            continue
        if libc.madvise(ctypes.c_void_p(span[0]), ctypes.c_size_t(span[1]), advice) == 0:
            taken.append(Region(span[0], span[0] + span[1], region.resident))
    return taken


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    libc = ctypes.CDLL(name, use_errno=True)
    libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    libc.madvise.restype = ctypes.c_int
    return libc
