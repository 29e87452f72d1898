"""CPU accounting for a benchmark: what a process tree spent, and what the rest of the machine
took meanwhile (on a shared machine, latency figures are only as good as that second number)."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil  # type: ignore[import-untyped,unused-ignore]


def process_cpu_s(pid: int | None) -> float:
    """CPU seconds (user + system) of a process and its children; NaN when unknown."""
    if pid is None:
        return math.nan
    try:
        process = psutil.Process(pid)
        total = 0.0
        for each in [process, *process.children(recursive=True)]:
            times = each.cpu_times()
            total += times.user + times.system
        return total
    except psutil.Error:
        return math.nan


def machine_busy_s() -> float:
    """CPU seconds the whole machine has spent busy since boot (all cores); NaN off Linux."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return math.nan
    ticks = [int(x) for x in fields[:8]]  # user nice system idle iowait irq softirq steal
    busy = sum(ticks) - ticks[3] - ticks[4]
    return busy / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Quietness:
    """How much CPU processes other than this run's took while it measured."""

    others_s: float
    capacity_s: float

    @property
    def share(self) -> float:
        return self.others_s / self.capacity_s if self.capacity_s > 0 else math.nan


def measure_quietness(pids: Sequence[int], run: Callable[[], None]) -> Quietness:
    """Run ``run`` and account for the CPU that the machine spent outside ``pids``."""
    started = time.monotonic()
    busy, own = machine_busy_s(), sum(process_cpu_s(p) for p in pids)
    run()
    busy_after, own_after = machine_busy_s(), sum(process_cpu_s(p) for p in pids)
    capacity = (time.monotonic() - started) * (os.cpu_count() or 1)
    return Quietness(max(0.0, (busy_after - busy) - (own_after - own)), capacity)
