"""A bounded FIFO of jobs for one local model, run up to ``slots`` at a time.

The model answers up to ``slots`` requests at once (its engine decodes them together in one
batch, see :mod:`hybrid.local.engine`); each running job holds one of the queue's worker
threads while the engine works on it, and jobs start in arrival order as slots free up.  The
queue knows its depth and estimates how long a newcomer would wait; both are cheap to read
from any thread, for ``/health`` and for routing decisions.

Beside the clients' line there is a low-priority lane (:meth:`WorkQueue.background`), for work
that must never slow serving down (background calibration): a background job starts only when
no client job is waiting or running, one at a time, and is never refused.  It takes one slot:
a client job that arrives while it runs takes another slot.  When it holds the last free slot
(always, with one slot), a job submitted with ``preempt`` is told to stop (the local model
stops an answer at its next token, and its caller may ask again later), so the client job
waits for no background answer; one without waits for that one job only, so background work
is cut into short jobs.  Background jobs count in neither :attr:`WorkQueue.waiting` nor
``max_waiting``.

A client job may be submitted as a *hand-off* (``submit(job, hand_off=True)``): one whose
caller will submit a follow-up client job at once, such as the router's look at a prompt
before its answer, which reuses the prompt the first job left in the model's cache.  Background
work then waits for that follow-up (the next client job submitted), for :meth:`WorkQueue.release`,
or at most ``hand_off_s``, so that a calibration item does not evict the prompt in between.
"""

from __future__ import annotations

import copy
import heapq
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from hybrid.errors import QueueFullError

T = TypeVar("T")

# Weight of the newest job in the running mean of job durations.
_EWMA_WEIGHT = 0.3


@dataclass(eq=False)
class _Pending:
    """A background job not started yet, and the future its caller holds."""

    job: Callable[[], Any]
    future: Future[Any]
    # Tells the running job to stop early, for a client job that needs its slot (or None).
    preempt: Callable[[], None] | None = None
    preempted: bool = False


class _Line:
    """The state both lanes of one queue share: the worker thread, the counts, the backlog."""

    def __init__(
        self, *, max_waiting: int, slots: int, initial_job_s: float, clock: Callable[[], float]
    ) -> None:
        self.executor = ThreadPoolExecutor(max_workers=slots, thread_name_prefix="hybrid-local")
        self.slots = slots
        self.max_waiting = max_waiting
        self.clock = clock
        self.lock = threading.Lock()
        self.waiting = 0
        # When each running client job started (one entry per job, in no particular order).
        self.running: list[float] = []
        # When the running background job started, or None.
        self.background_since: float | None = None
        # The running background job, or None.
        self.current: _Pending | None = None
        self.mean_job_s = initial_job_s
        self.mean_background_s = initial_job_s
        self.backlog: deque[_Pending] = deque()
        # A background job handed to the executor and not finished (at most one at a time).
        self.background_dispatched = False
        self.closed = False
        # While set (a monotonic time), background work waits for a hand-off's follow-up.
        self.held_until: float | None = None


class WorkQueue:
    """Runs submitted callables up to ``slots`` at a time, first in first out, with a bounded
    waiting line.

    Args:
        max_waiting: How many jobs may wait for a free slot; one more is refused.
        slots: How many jobs run at once (the model's parallel sequences).
        initial_job_s: Assumed duration of a job before any has been measured.
        clock: Monotonic clock, injectable for tests.
        hand_off_s: The longest background work waits for a hand-off's follow-up.
    """

    def __init__(
        self,
        *,
        max_waiting: int,
        slots: int = 1,
        initial_job_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        hand_off_s: float = 5.0,
    ) -> None:
        if slots < 1:
            raise ValueError(f"a work queue needs at least one slot, not {slots}")
        self._line = _Line(
            max_waiting=max_waiting, slots=slots, initial_job_s=initial_job_s, clock=clock
        )
        self._hand_off_s = hand_off_s
        self._low = False

    def background(self) -> WorkQueue:
        """The same queue seen from its low-priority lane.

        Returns:
            A queue whose :meth:`submit` puts jobs in the background lane: each starts only
            when no client job waits or runs, they run in arrival order, and none is refused.
            Its depth, waiting count and expected wait are the clients' line's.
        """
        lane = copy.copy(self)
        lane._low = True
        return lane

    @property
    def is_background(self) -> bool:
        """Whether :meth:`submit` uses the low-priority lane."""
        return self._low

    @property
    def max_waiting(self) -> int:
        """How many jobs may wait for a free slot."""
        return self._line.max_waiting

    @property
    def slots(self) -> int:
        """How many jobs run at once."""
        return self._line.slots

    @property
    def running(self) -> int:
        """Client jobs running now (background work not counted)."""
        with self._line.lock:
            return len(self._line.running)

    @property
    def depth(self) -> int:
        """Jobs waiting plus those running (a running background job counts)."""
        line = self._line
        with line.lock:
            return line.waiting + len(line.running) + (line.background_since is not None)

    @property
    def waiting(self) -> int:
        """Client jobs admitted but not started."""
        with self._line.lock:
            return self._line.waiting

    @property
    def clients(self) -> int:
        """Client jobs waiting plus those running (background work not counted)."""
        line = self._line
        with line.lock:
            return line.waiting + len(line.running)

    @property
    def background_waiting(self) -> int:
        """Background jobs submitted but not started."""
        with self._line.lock:
            return len(self._line.backlog)

    def expected_wait_s(self) -> float:
        """Estimated seconds before a client job submitted now would start.

        Returns:
            0 while a slot is free and nobody waits for one.  Otherwise each slot frees when
            its running job's expected remainder has passed (the mean duration less the time
            it has run, at least a tenth of the mean), the waiting jobs take the slots that
            free first, each for the mean duration, and the newcomer starts when the next
            slot frees after them.
        """
        line = self._line
        with line.lock:
            now = line.clock()
            frees = [
                max(line.mean_job_s - (now - since), 0.1 * line.mean_job_s)
                for since in line.running
            ]
            current = line.current
            if line.background_since is not None and (current is None or not current.preempt):
                # A background job that stops for a client job frees its slot at once.
                mean = line.mean_background_s
                frees.append(max(mean - (now - line.background_since), 0.1 * mean))
            frees.extend([0.0] * max(line.slots - len(frees), 0))
            heapq.heapify(frees)
            for _ in range(line.waiting):
                heapq.heappush(frees, heapq.heappop(frees) + line.mean_job_s)
            return frees[0]

    def submit(
        self,
        job: Callable[[], T],
        *,
        hand_off: bool = False,
        preempt: Callable[[], None] | None = None,
    ) -> Future[T]:
        """Queue a job.

        Args:
            job: Runs on the worker thread; its result or exception lands in the future.
            hand_off: The caller will submit a follow-up client job right after this one:
                background work waits for it (or :meth:`release`, or ``hand_off_s``).
            preempt: For the background lane: called (once, from the submitting thread)
                when a client job needs the slot the job runs in; the job should then end
                soon.  Without it, the client job waits for the job to end.

        Returns:
            A future; cancelling it before the job starts removes the job from the queue.

        Raises:
            QueueFullError: Every slot is taken and ``max_waiting`` jobs already wait (never
                raised by the background lane).
        """
        if self._low:
            return self._submit_background(job, preempt)
        line = self._line
        stop: Callable[[], None] | None = None
        with line.lock:
            taken = len(line.running) + (line.background_since is not None)
            busy = line.waiting > 0 or taken >= line.slots
            if busy and line.waiting >= line.max_waiting:
                depth = line.waiting + taken
                retry_after = max(1.0, line.mean_job_s * (line.waiting // line.slots + 1))
                raise QueueFullError(depth=depth, retry_after=retry_after)
            line.waiting += 1
            # A client job is the follow-up any earlier hand-off waited for.
            line.held_until = line.clock() + self._hand_off_s if hand_off else None
            current = line.current
            if (
                taken >= line.slots
                and current is not None
                and current.preempt is not None
                and not current.preempted
            ):
                current.preempted = True
                stop = current.preempt
        if stop is not None:
            stop()
        if hand_off:
            timer = threading.Timer(self._hand_off_s, self._dispatch_background)
            timer.daemon = True
            timer.start()  # background work resumes when the hold lapses
        future = line.executor.submit(self._run, job)
        future.add_done_callback(self._forget_if_cancelled)
        return future

    def release(self) -> None:
        """End a hand-off's hold without a follow-up (its caller went elsewhere)."""
        with self._line.lock:
            self._line.held_until = None
        self._dispatch_background()

    def close(self) -> None:
        """Drop the jobs that have not started and wait for the running one to end."""
        line = self._line
        with line.lock:
            line.closed = True
            dropped = list(line.backlog)
            line.backlog.clear()
        for pending in dropped:
            pending.future.cancel()
        line.executor.shutdown(wait=True, cancel_futures=True)
        with line.lock:
            line.waiting = 0

    def _submit_background(
        self, job: Callable[[], T], preempt: Callable[[], None] | None
    ) -> Future[T]:
        future: Future[T] = Future()
        line = self._line
        with line.lock:
            closed = line.closed
            if not closed:
                line.backlog.append(_Pending(job, future, preempt))
        if closed:
            future.cancel()
            return future
        self._dispatch_background()
        return future

    def _dispatch_background(self) -> None:
        """Hand the next background job to the worker when nothing else is queued or running."""
        line = self._line
        with line.lock:
            if (
                line.closed
                or line.background_dispatched
                or not line.backlog
                or line.waiting > 0
                or line.running
                or line.background_since is not None
                or (line.held_until is not None and line.clock() < line.held_until)
            ):
                return
            line.background_dispatched = True
        try:
            line.executor.submit(self._run_background)
        except RuntimeError:  # shut down between the check and the submit
            with line.lock:
                line.background_dispatched = False

    def _run_background(self) -> None:
        line = self._line
        with line.lock:
            # A client job may have arrived after this one was handed over: it goes first, and
            # this one returns to the front of the backlog (handed over again when it is done).
            held = line.held_until is not None and line.clock() < line.held_until
            if line.waiting > 0 or line.running or not line.backlog or held:
                line.background_dispatched = False
                return
            pending = line.backlog.popleft()
            if not pending.future.set_running_or_notify_cancel():
                line.background_dispatched = False
                started = False
            else:
                line.background_since = line.clock()
                line.current = pending
                started = True
        if not started:
            self._dispatch_background()
            return
        try:
            result = pending.job()
        except BaseException as exc:
            pending.future.set_exception(exc)
        else:
            pending.future.set_result(result)
        finally:
            with line.lock:
                if not pending.preempted:  # a job stopped early says nothing of its length
                    took = line.clock() - (line.background_since or line.clock())
                    line.mean_background_s += _EWMA_WEIGHT * (took - line.mean_background_s)
                line.background_since = None
                line.current = None
                line.background_dispatched = False
        self._dispatch_background()

    def _run(self, job: Callable[[], T]) -> T:
        line = self._line
        with line.lock:
            line.waiting -= 1
            started = line.clock()
            line.running.append(started)
        try:
            return job()
        finally:
            with line.lock:
                line.running.remove(started)
                took = line.clock() - started
                line.mean_job_s += _EWMA_WEIGHT * (took - line.mean_job_s)
            self._dispatch_background()

    def _forget_if_cancelled(self, future: Future[T]) -> None:
        # A future cancelled before it started never reaches _run, so it is still counted.
        if future.cancelled():
            with self._line.lock:
                self._line.waiting -= 1
            self._dispatch_background()
