"""A bounded FIFO of jobs for one local model, run one at a time on a dedicated thread.

A llama.cpp context is not thread-safe, so every job that touches it runs on the queue's single
worker thread, in arrival order.  The queue knows its depth and estimates how long a newcomer
would wait; both are cheap to read from any thread, for ``/health`` and for routing decisions.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from hybrid.errors import QueueFullError

T = TypeVar("T")

# Weight of the newest job in the running mean of job durations.
_EWMA_WEIGHT = 0.3


class WorkQueue:
    """Runs submitted callables one at a time, first in first out, with a bounded waiting line.

    Args:
        max_waiting: How many jobs may wait behind the running one; one more is refused.
        initial_job_s: Assumed duration of a job before any has been measured.
        clock: Monotonic clock, injectable for tests.
    """

    def __init__(
        self,
        *,
        max_waiting: int,
        initial_job_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hybrid-local")
        self._max_waiting = max_waiting
        self._clock = clock
        self._lock = threading.Lock()
        self._waiting = 0
        self._running_since: float | None = None
        self._mean_job_s = initial_job_s

    @property
    def max_waiting(self) -> int:
        """How many jobs may wait behind the running one."""
        return self._max_waiting

    @property
    def depth(self) -> int:
        """Jobs waiting plus the one running."""
        with self._lock:
            return self._waiting + (self._running_since is not None)

    @property
    def waiting(self) -> int:
        """Jobs admitted but not started."""
        with self._lock:
            return self._waiting

    def expected_wait_s(self) -> float:
        """Estimated seconds before a job submitted now would start.

        Returns:
            The running job's expected remainder plus the mean duration of each waiting job.
        """
        with self._lock:
            remaining = 0.0
            if self._running_since is not None:
                elapsed = self._clock() - self._running_since
                remaining = max(self._mean_job_s - elapsed, 0.1 * self._mean_job_s)
            return remaining + self._waiting * self._mean_job_s

    def submit(self, job: Callable[[], T]) -> Future[T]:
        """Queue a job.

        Args:
            job: Runs on the worker thread; its result or exception lands in the future.

        Returns:
            A future; cancelling it before the job starts removes the job from the queue.

        Raises:
            QueueFullError: ``max_waiting`` jobs are already waiting behind a running one.
        """
        with self._lock:
            busy = self._waiting > 0 or self._running_since is not None
            if busy and self._waiting >= self._max_waiting:
                depth = self._waiting + (self._running_since is not None)
                retry_after = max(1.0, self._mean_job_s * (self._waiting + 1))
                raise QueueFullError(depth=depth, retry_after=retry_after)
            self._waiting += 1
        future = self._executor.submit(self._run, job)
        future.add_done_callback(self._forget_if_cancelled)
        return future

    def close(self) -> None:
        """Drop the jobs that have not started and wait for the running one to end."""
        self._executor.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            self._waiting = 0

    def _run(self, job: Callable[[], T]) -> T:
        with self._lock:
            self._waiting -= 1
            self._running_since = self._clock()
        try:
            return job()
        finally:
            with self._lock:
                took = self._clock() - (self._running_since or self._clock())
                self._mean_job_s += _EWMA_WEIGHT * (took - self._mean_job_s)
                self._running_since = None

    def _forget_if_cancelled(self, future: Future[T]) -> None:
        # A future cancelled before it started never reaches _run, so it is still counted.
        if future.cancelled():
            with self._lock:
                self._waiting -= 1
