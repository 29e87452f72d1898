"""A work queue with several slots: jobs run side by side, newcomers wait for a free slot."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest

from hybrid.errors import QueueFullError
from hybrid.local.queue import WorkQueue


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def queue(clock: Clock) -> Iterator[WorkQueue]:
    q = WorkQueue(max_waiting=1, slots=2, initial_job_s=4.0, clock=clock)
    yield q
    q.close()


def held(gate: threading.Event, started: threading.Event) -> Callable[[], str]:
    def job() -> str:
        started.set()
        assert gate.wait(10)
        return "done"

    return job


def test_jobs_run_side_by_side_up_to_the_slots(queue: WorkQueue) -> None:
    gate = threading.Event()
    first, second = threading.Event(), threading.Event()
    running = [queue.submit(held(gate, first)), queue.submit(held(gate, second))]
    # Both started while neither has finished: two slots.
    assert first.wait(5) and second.wait(5)
    assert queue.slots == 2 and queue.running == 2 and queue.waiting == 0
    third = queue.submit(lambda: "third")
    assert queue.waiting == 1 and queue.depth == 3 and queue.clients == 3
    gate.set()
    assert [future.result(5) for future in running] == ["done", "done"]
    assert third.result(5) == "third"
    assert queue.running == 0 and queue.depth == 0


def test_the_waiting_line_counts_only_once_every_slot_is_taken(queue: WorkQueue) -> None:
    gate = threading.Event()
    starts = [threading.Event(), threading.Event()]
    for started in starts:
        queue.submit(held(gate, started))
    assert all(started.wait(5) for started in starts)
    queue.submit(lambda: None)  # max_waiting = 1: it waits
    with pytest.raises(QueueFullError) as caught:
        queue.submit(lambda: None)
    assert caught.value.depth == 3
    gate.set()


def test_a_newcomer_waits_only_when_every_slot_is_busy(queue: WorkQueue, clock: Clock) -> None:
    gate = threading.Event()
    first, second = threading.Event(), threading.Event()
    queue.submit(held(gate, first))
    assert first.wait(5)
    # One slot free: a newcomer starts at once.
    assert queue.expected_wait_s() == 0.0
    clock.now += 1.0
    queue.submit(held(gate, second))
    assert second.wait(5)
    # Both slots taken: the newcomer starts when the first frees (4 s mean, 1 s run so far).
    assert queue.expected_wait_s() == pytest.approx(3.0)
    queue.submit(lambda: None)
    # One waits already: it takes the first slot to free; the newcomer the second (4 - 0).
    assert queue.expected_wait_s() == pytest.approx(4.0)
    gate.set()


def test_background_work_waits_while_a_client_job_runs_in_any_slot(queue: WorkQueue) -> None:
    gate = threading.Event()
    started = threading.Event()
    ran = threading.Event()
    client = queue.submit(held(gate, started))
    assert started.wait(5)
    background = queue.background().submit(ran.set)
    # A slot is free, but a client's job runs: background work does not start beside it.
    assert not ran.wait(0.2)
    assert queue.background_waiting == 1
    gate.set()
    client.result(5)
    background.result(5)
    assert ran.is_set()


def test_a_queue_needs_a_slot() -> None:
    with pytest.raises(ValueError, match="at least one slot"):
        WorkQueue(max_waiting=1, slots=0)


def test_a_background_job_stopped_early_leaves_the_expected_wait_as_it_was(
    clock: Clock,
) -> None:
    queue = WorkQueue(max_waiting=1, slots=1, initial_job_s=4.0, clock=clock)
    try:
        stop, started = threading.Event(), threading.Event()
        lane = queue.background()

        def long_job() -> str:
            started.set()
            clock.now += 100.0  # it ran 100 s before it was told to stop
            assert stop.wait(5)
            return "stopped"

        stopped = lane.submit(long_job, preempt=stop.set)
        assert started.wait(5)
        assert queue.submit(lambda: "client").result(5) == "client"
        assert stopped.result(5) == "stopped"
        gate, running = threading.Event(), threading.Event()
        plain = lane.submit(held(gate, running))  # cannot be stopped: a client waits for it
        assert running.wait(5)
        # Still the 4 s assumed before any background job ended whole, not 100 s.
        assert queue.expected_wait_s() == pytest.approx(4.0)
        gate.set()
        plain.result(5)
    finally:
        queue.close()
