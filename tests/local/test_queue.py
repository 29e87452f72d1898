from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from hybrid.errors import QueueFullError
from hybrid.local.queue import WorkQueue


@pytest.fixture
def queue() -> Iterator[WorkQueue]:
    q = WorkQueue(max_waiting=2)
    yield q
    q.close()


def blocker(gate: threading.Event, started: threading.Event | None = None) -> object:
    def job() -> str:
        if started is not None:
            started.set()
        assert gate.wait(10)
        return "done"

    return job


def test_jobs_run_one_at_a_time_in_arrival_order(queue: WorkQueue) -> None:
    order: list[int] = []
    gate = threading.Event()
    started = threading.Event()
    first = queue.submit(blocker(gate, started))  # type: ignore[arg-type]
    assert started.wait(5)
    later = [queue.submit(lambda i=i: order.append(i)) for i in range(2)]
    assert queue.depth == 3 and queue.waiting == 2
    gate.set()
    first.result(5)
    for future in later:
        future.result(5)
    assert order == [0, 1]
    assert queue.depth == 0


def test_a_full_queue_refuses_with_a_retry_hint(queue: WorkQueue) -> None:
    gate = threading.Event()
    started = threading.Event()
    queue.submit(blocker(gate, started))  # type: ignore[arg-type]
    assert started.wait(5)
    queue.submit(lambda: None)
    queue.submit(lambda: None)
    with pytest.raises(QueueFullError) as caught:
        queue.submit(lambda: None)
    assert caught.value.depth == 3
    assert caught.value.retry_after >= 1
    gate.set()


def test_cancelling_a_waiting_job_frees_its_place(queue: WorkQueue) -> None:
    gate = threading.Event()
    started = threading.Event()
    queue.submit(blocker(gate, started))  # type: ignore[arg-type]
    assert started.wait(5)
    waiting = queue.submit(lambda: None)
    queue.submit(lambda: None)
    assert waiting.cancel()
    assert queue.waiting == 1
    queue.submit(lambda: None)  # the freed place is usable again
    gate.set()


def test_expected_wait_grows_with_the_line(queue: WorkQueue) -> None:
    gate = threading.Event()
    started = threading.Event()
    assert queue.expected_wait_s() == 0
    queue.submit(blocker(gate, started))  # type: ignore[arg-type]
    assert started.wait(5)
    alone = queue.expected_wait_s()
    queue.submit(lambda: None)
    assert queue.expected_wait_s() > alone > 0
    gate.set()


def test_zero_waiting_still_admits_a_job_when_idle() -> None:
    q = WorkQueue(max_waiting=0)
    try:
        assert q.submit(lambda: 42).result(5) == 42
    finally:
        q.close()
