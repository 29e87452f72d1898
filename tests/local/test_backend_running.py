"""The local backend's ``running`` context, with a scripted engine: entered on the worker
thread as a job starts on the model (after its wait in the queue), left as it ends or is
stopped, so that a local shadow answer's energy is metered over the model's work alone."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import pytest

from hybrid.backend import collect
from hybrid.errors import PreemptedError
from hybrid.generation import (
    GenerationDone,
    GenerationEvent,
    GenerationRequest,
    SamplingParams,
    TextDelta,
    Usage,
)
from hybrid.local.backend import LocalBackend
from hybrid.local.engine import EngineJob
from hybrid.local.prompt import ChatFormatter
from hybrid.local.queue import WorkQueue

TIMEOUT_S = 5


class LoggingEngine:
    """Notes what it evaluates in ``log``; an answer holds until told to stop when ``hold``."""

    n_ctx = 64
    n_embd = 4
    n_vocab = 100

    def __init__(self, log: list[str], *, hold: bool = False) -> None:
        self.log = log
        self.hold = hold
        self.answering = threading.Event()

    def tokenize(self, text: str, *, add_bos: bool) -> list[int]:
        return [len(word) for word in text.split()]

    def longest_token_bytes(self) -> int | None:
        return None

    def embed(self, tokens: Sequence[int], cancel: object = None) -> np.ndarray:
        self.log.append("prefill")
        return np.zeros(4, dtype=np.float32)

    def run(
        self, job: EngineJob, cancel: threading.Event, emit: Callable[[GenerationEvent], None]
    ) -> None:
        self.log.append("answer")
        emit(TextDelta("Paris"))
        self.answering.set()
        if self.hold:
            assert cancel.wait(TIMEOUT_S)
            emit(GenerationDone("length", Usage(len(job.tokens), 1), cancelled=True))
            return
        emit(GenerationDone("stop", Usage(len(job.tokens), 1)))


@pytest.fixture
def queue() -> Iterator[WorkQueue]:
    lanes = WorkQueue(max_waiting=4)
    yield lanes
    lanes.close()


def background(engine: LoggingEngine, queue: WorkQueue) -> LocalBackend:
    return LocalBackend(
        engine,
        queue.background(),
        ChatFormatter(None),
        model_id="m",
        default_max_tokens=8,
        default_temperature=0.0,
    )


def metered(log: list[str]) -> Callable[[], contextlib.AbstractContextManager[object]]:
    @contextlib.contextmanager
    def running() -> Iterator[None]:
        log.append("metering")
        try:
            yield
        finally:
            log.append("metered")

    return running


ASK = GenerationRequest("r", prompt="What is the capital of France?", params=SamplingParams())


def test_a_background_job_is_metered_from_its_start_on_the_model_not_from_its_wait(
    queue: WorkQueue,
) -> None:
    log: list[str] = []
    engine = LoggingEngine(log)
    local = background(engine, queue)
    gate = threading.Event()

    def client() -> None:
        log.append("client starts")
        assert gate.wait(TIMEOUT_S)
        log.append("client ends")

    async def run() -> str:
        queue.submit(client)  # holds the model: the background answer waits
        generation = await local.start(ASK, running=metered(log))
        gate.set()
        answered = await collect(generation)
        await local.prompt_embedding(ASK, running=metered(log))
        return answered.text

    assert asyncio.run(run()) == "Paris"
    assert log == [
        "client starts",
        "client ends",
        *("metering", "answer", "metered"),
        *("metering", "prefill", "metered"),
    ]


def test_a_background_answer_a_client_request_stops_is_metered_until_it_stops(
    queue: WorkQueue,
) -> None:
    log: list[str] = []
    engine = LoggingEngine(log, hold=True)
    local = background(engine, queue)

    async def run() -> BaseException | None:
        generation = await local.start(ASK, running=metered(log))
        assert await asyncio.to_thread(engine.answering.wait, TIMEOUT_S)
        # A client request needs the only slot: the answer stops, and the client's job runs
        # once it has.
        client = queue.submit(lambda: log.append("client"))
        (outcome,) = await asyncio.gather(collect(generation), return_exceptions=True)
        await asyncio.wrap_future(client)
        return outcome if isinstance(outcome, BaseException) else None

    assert isinstance(asyncio.run(run()), PreemptedError)
    assert log == ["metering", "answer", "metered", "client"]
