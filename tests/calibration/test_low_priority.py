"""Fits made while serving run on a thread of their own at the lowest priority, with NumPy's
BLAS on one thread, and leave the rest of the process as it was."""

from __future__ import annotations

import asyncio
import os
import sys
import threading

import numpy as np
import pytest
from threadpoolctl import threadpool_info

from hybrid.routing.calibration.low_priority import NICE, run_low_priority

LINUX = sys.platform.startswith("linux")


def blas_threads() -> list[int]:
    return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]


def seen_from_inside() -> dict[str, object]:
    """What the work sees of its own thread, and a little NumPy work of the kind a fit does."""
    x = np.random.default_rng(0).normal(size=(64, 64))
    return {
        "thread": threading.current_thread(),
        "priority": os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) if LINUX else None,
        "blas": blas_threads(),
        "product": float((x @ x.T).trace()),
    }


def test_the_work_runs_on_its_own_thread_at_the_lowest_priority_with_one_blas_thread() -> None:
    blas_before = blas_threads()
    caller_priority = os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) if LINUX else None

    seen = asyncio.run(run_low_priority(seen_from_inside))

    thread = seen["thread"]
    assert isinstance(thread, threading.Thread)
    assert thread is not threading.current_thread()
    assert thread.name.startswith("hybrid-low-priority")
    thread.join(timeout=10)
    assert not thread.is_alive()  # the lowered thread ends with the work
    assert seen["product"] > 0
    if blas_before:  # NumPy's wheels bring OpenBLAS; a build without a BLAS has no pool
        assert seen["blas"] == [1] * len(blas_before)
    assert blas_threads() == blas_before  # restored
    if LINUX:
        assert seen["priority"] == max(NICE, caller_priority or 0)
        assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == caller_priority


def test_the_result_and_the_error_come_back_to_the_caller() -> None:
    def divide(a: int, b: int) -> float:
        return a / b

    assert asyncio.run(run_low_priority(divide, 6, 3)) == 2
    with pytest.raises(ZeroDivisionError):
        asyncio.run(run_low_priority(divide, 1, 0))


def test_two_at_once_run_one_after_the_other() -> None:
    inside = 0
    most = 0
    lock = threading.Lock()
    gate = threading.Event()

    def work() -> None:
        nonlocal inside, most
        with lock:
            inside += 1
            most = max(most, inside)
        gate.wait(0.2)  # long enough for the other to start, were both let in
        with lock:
            inside -= 1

    async def both() -> None:
        await asyncio.gather(run_low_priority(work), run_low_priority(work))

    asyncio.run(both())
    assert most == 1
