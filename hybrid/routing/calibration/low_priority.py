"""Running a fit while the server serves, at the lowest CPU priority.

A fit made while serving (background calibration's, a refit from traffic) is seconds of NumPy
work: fitting the probe on 900 prompt vectors takes about 3.6 s on two cores, with NumPy's BLAS
using both.  The local model's answers need the same cores.  :func:`run_low_priority` runs such
work on a thread of its own that

- has the lowest scheduling priority (nice 19, on Linux, where a thread has its own), so that
  an answer generated meanwhile takes the cores it needs and the fit gets what is left;
- holds NumPy's BLAS to one thread while it runs (``threadpoolctl``), so that the fit does not
  start a thread per core at normal priority.

The thread ends with the work: without privileges a thread's priority cannot be raised again,
so no thread that might later serve a request is lowered.  Such work runs one at a time, since
the BLAS limit is the process's and is restored when the work ends.
"""

from __future__ import annotations

import asyncio
import functools
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from threadpoolctl import threadpool_limits

T = TypeVar("T")

NICE = 19
"""The scheduling priority of the work's thread: the lowest there is."""

_ONE_AT_A_TIME = threading.Lock()


def lower_this_thread() -> bool:
    """Give the calling thread the lowest scheduling priority.

    Returns:
        Whether it now has it: False where threads have no priority of their own (not Linux)
        or the system refused.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICE)
    except OSError:
        return False
    return True


def _limited(fn: Callable[[], T]) -> T:
    with _ONE_AT_A_TIME, threadpool_limits(limits=1, user_api="blas"):
        return fn()


async def run_low_priority(fn: Callable[..., T], /, *args: object) -> T:
    """Run ``fn(*args)`` on a new thread at the lowest priority, with BLAS on one thread.

    Args:
        fn: CPU-bound work (a fit); it must not serve requests.
        args: Its arguments.

    Returns:
        What ``fn`` returned; what it raised is raised here.  Cancelling the caller does not
        stop the work, which ends on its thread (its result is dropped).
    """
    loop = asyncio.get_running_loop()
    pool = ThreadPoolExecutor(
        max_workers=1, thread_name_prefix="hybrid-low-priority", initializer=lower_this_thread
    )
    try:
        return await loop.run_in_executor(pool, _limited, functools.partial(fn, *args))
    finally:
        pool.shutdown(wait=False)
