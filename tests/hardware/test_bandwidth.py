"""The bandwidth benchmark (tiny buffers, fake clocks) and its JSON cache."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from hybrid.hardware.bandwidth import (
    MIB,
    BandwidthCache,
    bandwidth_cache_key,
    cached_bandwidth,
    measure_memory_bandwidth,
)


def ticking(step: float) -> Callable[[], float]:
    """A clock that advances ``step`` seconds on every reading."""
    now = [0.0]

    def clock() -> float:
        now[0] += step
        return now[0]

    return clock


@pytest.mark.parametrize("threads", [1, 3])
def test_real_copy_reports_a_plausible_bandwidth(threads: int) -> None:
    measured = measure_memory_bandwidth(buffer_bytes=4 * MIB, max_seconds=0.05, threads=threads)
    # Any machine that runs the tests copies faster than 100 MB/s and slower than 10 TB/s.
    assert 1e8 < measured < 1e13


def test_bandwidth_counts_read_and_write_of_the_best_copy() -> None:
    # Every copy appears to take exactly one tick: 2 x 1 MiB per 0.5 s.
    measured = measure_memory_bandwidth(
        buffer_bytes=MIB, max_seconds=100, max_repeats=3, clock=ticking(0.5)
    )
    assert measured == pytest.approx(2 * MIB / 0.5)


def test_benchmark_stops_at_its_time_budget() -> None:
    readings: list[float] = []
    clock = ticking(1.0)

    def counting_clock() -> float:
        readings.append(clock())
        return readings[-1]

    measure_memory_bandwidth(
        buffer_bytes=MIB, max_seconds=0.5, max_repeats=50, clock=counting_clock
    )
    # One deadline reading, then one timed copy (start, end, deadline check) and out.
    assert len(readings) == 4


def test_benchmark_rejects_nonsense_arguments() -> None:
    with pytest.raises(ValueError, match="positive"):
        measure_memory_bandwidth(buffer_bytes=0)


def test_cache_round_trip_and_keys(tmp_path: Path) -> None:
    cache = BandwidthCache(tmp_path / "probe" / "bandwidth.json")
    key = bandwidth_cache_key("AMD EPYC", 32 * 1024**3)

    assert cache.get(key) is None
    cache.put(key, 28.5e9)

    assert BandwidthCache(cache.path).get(key) == 28.5e9
    assert cache.get(bandwidth_cache_key("AMD EPYC", 64 * 1024**3)) is None
    assert json.loads(cache.path.read_text())["entries"][key]["bytes_per_s"] == 28.5e9


def test_corrupt_cache_reads_as_empty_and_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "bandwidth.json"
    path.write_text("{not json")
    cache = BandwidthCache(path)

    assert cache.get("k") is None
    cache.put("k", 1e9)
    assert cache.get("k") == 1e9


def test_cached_bandwidth_measures_only_once(tmp_path: Path) -> None:
    cache = BandwidthCache(tmp_path / "bandwidth.json")
    runs: list[int] = []

    def measure() -> float:
        runs.append(1)
        return 20e9

    assert cached_bandwidth(cache, "k", measure) == 20e9
    assert cached_bandwidth(cache, "k", measure) == 20e9
    assert len(runs) == 1


def test_unwritable_cache_still_returns_the_measurement(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    cache = BandwidthCache(blocker / "bandwidth.json")

    assert cached_bandwidth(cache, "k", lambda: 9e9) == 9e9
    assert cache.get("k") is None
