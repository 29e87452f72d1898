"""The queue's low-priority lane: background work runs only when no client work is queued."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest

from hybrid.local.queue import WorkQueue


@pytest.fixture
def queue() -> Iterator[WorkQueue]:
    q = WorkQueue(max_waiting=4)
    yield q
    q.close()


def gated(
    gate: threading.Event, started: threading.Event, log: list[str], name: str
) -> Callable[[], str]:
    def job() -> str:
        log.append(name)
        started.set()
        assert gate.wait(10)
        return name

    return job


def test_a_client_job_submitted_while_background_work_waits_runs_first(queue: WorkQueue) -> None:
    order: list[str] = []
    gate, started = threading.Event(), threading.Event()
    first = queue.submit(gated(gate, started, order, "client-1"))
    assert started.wait(5)
    background = queue.background().submit(lambda: order.append("background"))
    second = queue.submit(lambda: order.append("client-2"))
    assert queue.background_waiting == 1
    gate.set()
    first.result(5), second.result(5), background.result(5)
    assert order == ["client-1", "client-2", "background"]


def test_background_work_never_runs_while_the_queue_holds_client_work(queue: WorkQueue) -> None:
    seen_by_background: list[tuple[int, int]] = []
    gate, started = threading.Event(), threading.Event()
    log: list[str] = []
    running = queue.submit(gated(gate, started, log, "client"))
    assert started.wait(5)
    lane = queue.background()
    jobs = [
        lane.submit(lambda: seen_by_background.append((queue.waiting, len(log)))) for _ in range(3)
    ]
    clients = [queue.submit(lambda i=i: log.append(f"client-{i}")) for i in range(3)]
    gate.set()
    for future in (running, *clients, *jobs):
        future.result(5)
    # Every background job started with no client waiting, after every client had run.
    assert seen_by_background == [(0, 4)] * 3


def test_background_jobs_run_one_at_a_time_in_arrival_order_when_idle(queue: WorkQueue) -> None:
    order: list[int] = []
    lane = queue.background()
    futures = [lane.submit(lambda i=i: order.append(i) or i) for i in range(5)]
    assert [f.result(5) for f in futures] == [0, 1, 2, 3, 4]
    assert order == [0, 1, 2, 3, 4]


def test_a_client_waits_for_at_most_the_one_background_job_running(queue: WorkQueue) -> None:
    order: list[str] = []
    gate, started = threading.Event(), threading.Event()
    lane = queue.background()
    first = lane.submit(gated(gate, started, order, "background-1"))
    later = lane.submit(lambda: order.append("background-2"))
    assert started.wait(5)
    assert queue.depth == 1 and queue.waiting == 0
    client = queue.submit(lambda: order.append("client"))
    gate.set()
    first.result(5), client.result(5), later.result(5)
    assert order == ["background-1", "client", "background-2"]


def test_a_client_job_stops_a_preemptible_background_job_in_the_last_slot(
    queue: WorkQueue,
) -> None:
    order: list[str] = []
    stop, started = threading.Event(), threading.Event()
    told: list[str] = []

    def preempt() -> None:
        told.append("stop")
        stop.set()

    lane = queue.background()
    first = lane.submit(gated(stop, started, order, "background-1"), preempt=preempt)
    later = lane.submit(lambda: order.append("background-2"), preempt=preempt)
    assert started.wait(5)
    # It frees its slot as soon as a client job needs it: no wait is expected.
    assert queue.expected_wait_s() == 0
    client = queue.submit(lambda: order.append("client"))
    assert client.result(5) is None and first.result(5) == "background-1"
    later.result(5)
    assert told == ["stop"]  # once, and not for the job that ran with the model free
    assert order == ["background-1", "client", "background-2"]


def test_a_background_job_is_not_stopped_while_a_slot_is_free() -> None:
    queue = WorkQueue(max_waiting=4, slots=2)
    try:
        gate, started = threading.Event(), threading.Event()
        told: list[str] = []
        lane = queue.background()
        running = lane.submit(
            gated(gate, started, [], "background"), preempt=lambda: told.append("stop")
        )
        assert started.wait(5)
        assert queue.submit(lambda: "client").result(5) == "client"  # the other slot
        assert told == []
        gate.set()
        assert running.result(5) == "background"
    finally:
        queue.close()


def test_background_jobs_are_never_refused_and_do_not_fill_the_clients_line() -> None:
    queue = WorkQueue(max_waiting=1)
    try:
        gate, started = threading.Event(), threading.Event()
        running = queue.submit(gated(gate, started, [], "client"))
        assert started.wait(5)
        lane = queue.background()
        jobs = [lane.submit(lambda: None) for _ in range(10)]
        assert queue.waiting == 0
        queue.submit(lambda: None)  # the one client place is still free
        gate.set()
        running.result(5)
        for job in jobs:
            job.result(5)
    finally:
        queue.close()


def test_a_failing_background_job_reports_its_error_and_the_lane_goes_on(queue: WorkQueue) -> None:
    lane = queue.background()

    def fail() -> None:
        raise ValueError("broken item")

    failed = lane.submit(fail)
    after = lane.submit(lambda: "next")
    with pytest.raises(ValueError, match="broken item"):
        failed.result(5)
    assert after.result(5) == "next"


def test_cancelled_background_jobs_are_skipped_and_close_drops_the_rest() -> None:
    queue = WorkQueue(max_waiting=2)
    gate, started = threading.Event(), threading.Event()
    order: list[str] = []
    running = queue.submit(gated(gate, started, order, "client"))
    assert started.wait(5)
    lane = queue.background()
    skipped = lane.submit(lambda: order.append("skipped"))
    kept = lane.submit(lambda: order.append("kept"))
    assert skipped.cancel()
    gate.set()
    running.result(5), kept.result(5)
    assert order == ["client", "kept"]
    gate2, started2 = threading.Event(), threading.Event()
    blocking = lane.submit(gated(gate2, started2, order, "last"))
    assert started2.wait(5)
    dropped = lane.submit(lambda: order.append("dropped"))
    dropped_done = threading.Event()
    dropped.add_done_callback(lambda _: dropped_done.set())
    closing = threading.Thread(target=queue.close)
    closing.start()  # drops the backlog, then waits for the running job
    assert dropped_done.wait(5)
    gate2.set()
    closing.join(5)
    assert blocking.result(5) == "last"
    assert dropped.cancelled()
    assert lane.submit(lambda: None).cancelled()  # closed: nothing more is taken


def test_after_a_hand_off_background_work_waits_for_the_follow_up(queue: WorkQueue) -> None:
    # The router's look at a prompt, then its answer: a calibration item in between would
    # evict the prompt the look left in the model's cache.
    order: list[str] = []
    background = queue.background().submit(lambda: order.append("background"))
    background.result(5)  # an idle queue runs background work at once
    look = queue.submit(lambda: order.append("look"), hand_off=True)
    look.result(5)
    waiting = queue.background().submit(lambda: order.append("background-2"))
    assert queue.background_waiting == 1  # held for the follow-up, though the queue is idle
    answer = queue.submit(lambda: order.append("answer"))
    answer.result(5), waiting.result(5)
    assert order == ["background", "look", "answer", "background-2"]


def test_a_released_hand_off_lets_background_work_run(queue: WorkQueue) -> None:
    queue.submit(lambda: None, hand_off=True).result(5)
    waiting = queue.background().submit(lambda: "ran")
    assert queue.background_waiting == 1
    queue.release()  # the router escalated: no answer follows on this model
    assert waiting.result(5) == "ran"


def test_a_hand_off_without_a_follow_up_lapses() -> None:
    queue = WorkQueue(max_waiting=4, hand_off_s=0.05)
    try:
        queue.submit(lambda: None, hand_off=True).result(5)
        # Neither a follow-up nor a release: the hold lapses by itself.
        assert queue.background().submit(lambda: "ran").result(10) == "ran"
    finally:
        queue.close()
