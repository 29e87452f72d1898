"""The capacity policy's ETA with a batched local model: a newcomer beside running answers
joins their batch at its per-stream speed instead of waiting for them to end."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pytest

from hybrid.backend import Generation
from hybrid.generation import GenerationDone, GenerationRequest, Message, SamplingParams, Usage
from hybrid.local.queue import WorkQueue
from hybrid.local.speed import SpeedMeter
from hybrid.routing.context import route_context
from hybrid.routing.local_model import LocalCapacity
from hybrid.routing.policies.capacity import DEFAULT_DECODE_TOKENS_PER_S, CapacityPolicy
from hybrid.routing.policy import LocalStatus, RouteContext, joined_batch
from hybrid.settings.routing import CapacitySettings

# A 100-token prompt at 500 tok/s takes 0.2 s; the answer is 200 tokens.
PROMPT_TOKENS, ANSWER_TOKENS, PREFILL = 100, 200, 500.0
REQUEST = GenerationRequest(
    "r1", messages=(Message("user", "hi"),), params=SamplingParams(max_tokens=ANSWER_TOKENS)
)
# The mean job takes 4 s: with one slot busy, a newcomer waits for it.
JOB_S = 4.0


@dataclass(frozen=True)
class Job:
    tokens: tuple[int, ...]
    max_tokens: int


class Local:
    """A ready local model with a real queue and a real speed meter; it never answers."""

    model_id = "local-model"
    context_length = 8192
    embedding_size = 4
    supports: frozenset[str] = frozenset()
    state = "ready"
    last_speed = None

    def __init__(self, queue: WorkQueue, speed: SpeedMeter) -> None:
        self.queue = queue
        self.speed = speed

    def backend(self) -> Local:
        return self

    def expected_load_s(self) -> float:
        return 0.0

    async def wake(self) -> None:
        return None

    async def prepare(self, request: GenerationRequest) -> Job:
        return Job(tokens=(0,) * PROMPT_TOKENS, max_tokens=request.params.max_tokens or 16)

    async def start(self, request: GenerationRequest, *, prepared: Job | None = None) -> Generation:
        raise AssertionError("routing only")

    async def prompt_embedding(
        self, request: GenerationRequest, *, prepared: Job | None = None
    ) -> np.ndarray:
        raise AssertionError("routing only")

    def release_hand_off(self) -> None:
        raise AssertionError("routing only")


def measured(*samples: tuple[float, float]) -> SpeedMeter:
    """A meter that has seen answers at (per-stream tok/s, batch size), with known prefill."""
    speed = SpeedMeter()
    for rate, batch in samples:
        speed.observe(
            GenerationDone(
                "stop",
                Usage(1000, 50),
                time_to_first_token_s=1000 / PREFILL,
                decode_tokens_per_s=rate,
                batch_size=batch,
            ),
            constrained=False,
        )
    return speed


@pytest.fixture
def busy() -> Iterator[tuple[list[WorkQueue], threading.Event]]:
    """Queues whose submitted jobs run until the test ends."""
    queues: list[WorkQueue] = []
    release = threading.Event()
    yield queues, release
    release.set()
    for queue in queues:
        queue.close()


def running(busy: tuple[list[WorkQueue], threading.Event], *, slots: int, jobs: int) -> WorkQueue:
    """A queue with ``slots`` slots and ``jobs`` jobs submitted, all started that can start."""
    queues, release = busy
    queue = WorkQueue(max_waiting=8, slots=slots, initial_job_s=JOB_S, clock=lambda: 50.0)
    queues.append(queue)
    started = threading.Semaphore(0)

    def job() -> None:
        started.release()
        release.wait(10)

    for _ in range(jobs):
        queue.submit(job)
    for _ in range(min(slots, jobs)):
        assert started.acquire(timeout=10)
    return queue


def decide(queue: WorkQueue, speed: SpeedMeter) -> tuple[RouteContext, str, str]:
    local: LocalCapacity[Job] = Local(queue, speed)  # the fake has the protocol's shape (mypy)
    context, _, _ = asyncio.run(route_context(local, REQUEST, count_tokens=True, load=None))
    verdict = CapacityPolicy(CapacitySettings(latency_target_s=8.0)).evaluate(context)
    return context, verdict.outcome, verdict.reason


def test_a_request_beside_running_answers_stays_local_where_one_slot_would_escalate(
    busy: tuple[list[WorkQueue], threading.Event],
) -> None:
    # Alone 50 tok/s; three together 30 tok/s each (90 in all).
    speed = measured((50.0, 1.0), (30.0, 3.0))
    # One slot, busy: 4 s wait + 0.2 s prompt + 200 / 50 = 8.2 s, over the 8 s target.
    _, outcome, reason = decide(running(busy, slots=1, jobs=1), speed)
    assert (outcome, reason) == ("cloud", "capacity:eta_8.2s>8s")
    # Four slots, two running: no wait, and it decodes third in the batch: 0.2 + 200 / 30.
    context, outcome, reason = decide(running(busy, slots=4, jobs=2), speed)
    assert (context.local.slots, context.local.running, context.local.batch_size) == (4, 2, 3)
    assert context.local.expected_wait_s == 0.0
    assert context.local.stream_decode_tokens_per_s == 30.0
    assert (outcome, reason) == ("pass", "capacity:eta_6.9s")


def test_with_every_slot_taken_the_newcomer_waits_then_joins_a_full_batch(
    busy: tuple[list[WorkQueue], threading.Event],
) -> None:
    speed = measured((50.0, 1.0), (40.0, 2.0))
    context, outcome, reason = decide(running(busy, slots=2, jobs=2), speed)
    assert context.local.batch_size == 2
    assert context.local.expected_wait_s == pytest.approx(JOB_S)
    # 4 s + 0.2 s + 200 / 40 = 9.2 s.
    assert (outcome, reason) == ("cloud", "capacity:eta_9.2s>8s")


def test_unmeasured_batches_are_assumed_to_share_the_single_stream_rate(
    busy: tuple[list[WorkQueue], threading.Event],
) -> None:
    # Only measured alone (50 tok/s): in a batch of 4, 12.5 tok/s each until measured.
    context, outcome, reason = decide(running(busy, slots=4, jobs=3), measured((50.0, 1.0)))
    assert context.local.stream_decode_tokens_per_s == pytest.approx(12.5)
    assert (outcome, reason) == ("cloud", "capacity:eta_16.2s>8s")


def test_with_nothing_measured_the_default_speed_is_shared_too() -> None:
    policy = CapacityPolicy(CapacitySettings(latency_target_s=100.0))

    def eta(running: int) -> float:
        status = LocalStatus("ready", 8192, slots=4, running=running)
        context = RouteContext((), "hi", 0, ANSWER_TOKENS, status, ANSWER_TOKENS)
        return policy.predicted_seconds(context)

    assert eta(0) == pytest.approx(ANSWER_TOKENS / DEFAULT_DECODE_TOKENS_PER_S)
    assert eta(3) == pytest.approx(4 * ANSWER_TOKENS / DEFAULT_DECODE_TOKENS_PER_S)


def test_the_joined_batch_counts_the_newcomer_up_to_the_slots() -> None:
    assert [joined_batch(4, running) for running in range(6)] == [1, 2, 3, 4, 4, 4]
    assert joined_batch(1, 0) == 1 and joined_batch(0, 0) == 1
