"""Memory bandwidth: a short, bounded micro-benchmark and its on-disk cache.

Generating a token on a CPU reads every weight once, so decode speed is bound by memory
bandwidth: tok/s ~ bandwidth / bytes read per token.  The benchmark copies a buffer much larger
than any CPU cache with numpy (which releases the GIL, so several threads copy at once, as
llama.cpp's threads read at once) and reports the best of a few repeats, counting read and write
traffic as STREAM's "copy" does.  The result depends only on the machine, so it is cached as JSON
in the data dir (``settings.home / "probe" / "bandwidth.json"``) keyed by CPU model and RAM size.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

MIB = 1024**2

CACHE_VERSION = 1


def measure_memory_bandwidth(
    *,
    buffer_bytes: int = 256 * MIB,
    max_seconds: float = 0.6,
    threads: int = 1,
    max_repeats: int = 8,
    clock: Callable[[], float] = time.perf_counter,
) -> float:
    """Measure memory copy bandwidth in bytes per second.

    Allocates two buffers of ``buffer_bytes`` (so budget twice that in RAM), copies one into the
    other once to fault the pages in, then times copies until ``max_repeats`` are done or
    ``max_seconds`` (counted from the first copy) have passed; at least one copy is always timed.

    Args:
        buffer_bytes: Size of each buffer; must exceed the last-level cache to measure RAM
            rather than cache (256 MiB does on current desktop and server CPUs).
        max_seconds: Time budget for the copies; allocation is not counted.
        threads: Threads copying disjoint slices at once; pass the thread count llama.cpp will
            use, since one core alone cannot saturate a many-channel memory system.
        max_repeats: Most timed copies.
        clock: Monotonic clock in seconds.

    Returns:
        ``2 * buffer_bytes / best copy time`` (a copy reads and writes every byte).

    Raises:
        ValueError: ``buffer_bytes``, ``max_seconds``, ``threads`` or ``max_repeats`` is not
            positive.
    """
    if buffer_bytes <= 0 or max_seconds <= 0 or threads <= 0 or max_repeats <= 0:
        raise ValueError(
            "buffer_bytes, max_seconds, threads and max_repeats must all be positive; got "
            f"{buffer_bytes}, {max_seconds}, {threads}, {max_repeats}"
        )
    import numpy as np

    source = np.empty(buffer_bytes, dtype=np.uint8)
    source.fill(1)  # touch every page so the timed copies measure RAM, not page faults
    target = np.empty_like(source)
    bounds = [buffer_bytes * part // threads for part in range(threads + 1)]
    slices = [(source[lo:hi], target[lo:hi]) for lo, hi in itertools.pairwise(bounds)]

    def copy_all(pool: ThreadPoolExecutor | None) -> None:
        if pool is None:
            np.copyto(target, source)
            return
        for future in [pool.submit(np.copyto, dst, src) for src, dst in slices]:
            future.result()

    pool = ThreadPoolExecutor(max_workers=threads) if threads > 1 else None
    try:
        copy_all(pool)
        deadline = clock() + max_seconds
        best = float("inf")
        for _ in range(max_repeats):
            started = clock()
            copy_all(pool)
            best = min(best, clock() - started)
            if clock() >= deadline:
                break
    finally:
        if pool is not None:
            pool.shutdown(wait=True)
    # A clock too coarse to see the copy would divide by zero; one tick is the honest floor.
    best = max(best, 1e-9)
    return 2 * buffer_bytes / best


def bandwidth_cache_key(cpu_model: str, total_ram_bytes: int) -> str:
    """Return the cache key for a machine: its CPU model and RAM size."""
    return f"{cpu_model}|{total_ram_bytes}"


class BandwidthCache:
    """Measured bandwidths stored as JSON, one entry per machine key.

    A missing, unreadable or corrupt file reads as empty: the cache only saves a benchmark run.
    """

    def __init__(self, path: Path) -> None:
        """Create a cache backed by ``path`` (created with its folders on the first ``put``).

        Args:
            path: The JSON file, normally ``settings.home / "probe" / "bandwidth.json"``.
        """
        self.path = path

    def get(self, key: str) -> float | None:
        """Return the cached bytes/s for ``key``, or ``None`` when absent or unreadable."""
        entry = self._entries().get(key)
        if not isinstance(entry, dict):
            return None
        value = entry.get("bytes_per_s")
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            return float(value)
        return None

    def put(self, key: str, bytes_per_s: float) -> None:
        """Store a measurement, replacing the file atomically.

        Raises:
            OSError: The file or its folder cannot be written.
        """
        entries = self._entries()
        entries[key] = {"bytes_per_s": bytes_per_s, "measured_at": time.time()}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        payload = json.dumps({"version": CACHE_VERSION, "entries": entries}, indent=2)
        # Write then rename, so a concurrent reader never sees half a file.
        handle, temporary = tempfile.mkstemp(dir=self.path.parent, suffix=".tmp")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as stream:
                stream.write(payload)
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def _entries(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict) or data.get("version") != CACHE_VERSION:
            return {}
        entries = data.get("entries")
        return dict(entries) if isinstance(entries, dict) else {}


def cached_bandwidth(cache: BandwidthCache, key: str, measure: Callable[[], float]) -> float:
    """Return the cached bandwidth for ``key``, measuring and storing it on a miss.

    A cache that cannot be written (read-only home, full disk) is logged and skipped: the
    measurement is still returned.

    Args:
        cache: Where measurements are kept.
        key: The machine's key (see :func:`bandwidth_cache_key`).
        measure: Runs the benchmark; called only on a miss.

    Returns:
        Bytes per second.
    """
    known = cache.get(key)
    if known is not None:
        return known
    measured = measure()
    try:
        cache.put(key, measured)
    except OSError as exc:
        logging.getLogger(__name__).warning(
            "could not save the memory bandwidth to %s (%s); it will be measured again next time",
            cache.path,
            exc,
        )
    return measured
