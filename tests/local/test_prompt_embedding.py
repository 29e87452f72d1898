"""The local backend's prompt vector, with a scripted engine: where it runs, what it refuses."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence

import numpy as np
import pytest

from hybrid.errors import (
    ContextLengthExceededError,
    GenerationError,
    InvalidRequestError,
    PreemptedError,
    QueueFullError,
)
from hybrid.generation import (
    GenerationDone,
    GenerationEvent,
    GenerationRequest,
    Message,
    SamplingParams,
    Usage,
)
from hybrid.local.backend import LocalBackend
from hybrid.local.engine import EngineJob
from hybrid.local.prompt import ChatFormatter
from hybrid.local.queue import WorkQueue


class VectorEngine:
    """Embeds a prompt as its token count and first token, on whichever thread it is called."""

    n_ctx = 64
    n_embd = 4

    def __init__(self, *, fail: Exception | None = None) -> None:
        self.fail = fail
        self.tokenized = 0
        self.embedded: list[tuple[list[int], str]] = []
        self.release = threading.Event()
        self.release.set()

    def tokenize(self, text: str, *, add_bos: bool) -> list[int]:
        self.tokenized += 1
        return [len(word) for word in text.split()]

    def longest_token_bytes(self) -> int | None:
        return None

    def embed(self, tokens: Sequence[int], cancel: object = None) -> np.ndarray:
        self.release.wait(5)
        if self.fail is not None:
            raise self.fail
        self.embedded.append((list(tokens), threading.current_thread().name))
        return np.array([len(tokens), tokens[0], 0.0, 1.0], dtype=np.float32)

    def run(
        self, job: EngineJob, cancel: threading.Event, emit: Callable[[GenerationEvent], None]
    ) -> None:
        emit(GenerationDone("stop", Usage(len(job.tokens), 0)))


def local(engine: VectorEngine, *, max_waiting: int = 4) -> LocalBackend:
    return LocalBackend(
        engine,
        WorkQueue(max_waiting=max_waiting),
        ChatFormatter(None),
        model_id="m",
        default_max_tokens=8,
        default_temperature=0.0,
    )


def ask(text: str, **params: object) -> GenerationRequest:
    return GenerationRequest("r", prompt=text, params=SamplingParams(**params))  # type: ignore[arg-type]


def test_the_vector_is_the_engines_computed_on_the_queue_thread() -> None:
    engine = VectorEngine()
    backend = local(engine)
    try:
        vector = asyncio.run(backend.prompt_embedding(ask("one three fives")))
    finally:
        backend.queue.close()
    assert vector.tolist() == [3.0, 3.0, 0.0, 1.0]
    assert backend.embedding_size == 4
    assert engine.embedded[0][1].startswith("hybrid-local")


def test_a_prepared_request_is_not_tokenized_again() -> None:
    engine = VectorEngine()
    backend = local(engine)

    async def scenario() -> np.ndarray:
        job = await backend.prepare(ask("a bb"))
        return await backend.prompt_embedding(ask("ignored"), prepared=job)

    try:
        vector = asyncio.run(scenario())
    finally:
        backend.queue.close()
    assert engine.tokenized == 1
    assert engine.embedded[0][0] == [1, 2] and vector[0] == 2.0


def test_a_prompt_that_does_not_fit_is_refused_like_prepare_refuses_it() -> None:
    engine = VectorEngine()
    backend = local(engine)
    try:
        with pytest.raises(ContextLengthExceededError):
            asyncio.run(backend.prompt_embedding(ask("word " * 80)))
        with pytest.raises(ContextLengthExceededError):
            asyncio.run(backend.prompt_embedding(ask("a b c", max_tokens=63)))
    finally:
        backend.queue.close()
    assert engine.embedded == []


def test_a_request_the_model_cannot_take_is_refused() -> None:
    backend = local(VectorEngine())
    request = GenerationRequest(
        "r", messages=(Message("user", "look"),), needs=frozenset({"images"})
    )
    try:
        with pytest.raises(InvalidRequestError, match="reads text only"):
            asyncio.run(backend.prompt_embedding(request))
    finally:
        backend.queue.close()


def test_a_full_queue_refuses_the_embedding() -> None:
    engine = VectorEngine()
    engine.release.clear()  # the first job holds the worker
    backend = local(engine, max_waiting=1)

    async def scenario() -> None:
        first = asyncio.ensure_future(backend.prompt_embedding(ask("a")))
        second = asyncio.ensure_future(backend.prompt_embedding(ask("b")))
        while backend.queue.depth < 2:  # one runs (held), one waits
            await asyncio.sleep(0.01)
        try:
            with pytest.raises(QueueFullError):
                await backend.prompt_embedding(ask("c"))
        finally:
            engine.release.set()
            await asyncio.gather(first, second)

    try:
        asyncio.run(scenario())
    finally:
        backend.queue.close()


def test_a_foreign_failure_on_the_worker_becomes_a_generation_error() -> None:
    backend = local(VectorEngine(fail=OSError("device lost")))
    try:
        with pytest.raises(GenerationError, match="device lost"):
            asyncio.run(backend.prompt_embedding(ask("a")))
    finally:
        backend.queue.close()


class StoppableEngine(VectorEngine):
    """Evaluates a prompt until told to stop, as the real engine stops at its next batch step."""

    def __init__(self) -> None:
        super().__init__()
        self.started = threading.Event()
        self.cancels: list[threading.Event | None] = []

    def embed(self, tokens: Sequence[int], cancel: object = None) -> np.ndarray:
        assert cancel is None or isinstance(cancel, threading.Event)
        self.cancels.append(cancel)
        if len(self.cancels) == 1:  # the first one runs until a client request stops it
            self.started.set()
            assert cancel is not None and cancel.wait(5)
            raise PreemptedError("stopped early")
        return super().embed(tokens)


def test_a_client_request_stops_a_background_prompt_evaluation_in_its_slot() -> None:
    engine = StoppableEngine()
    backend = local(engine)
    background = LocalBackend(
        engine,
        backend.queue.background(),
        ChatFormatter(None),
        model_id="m",
        default_max_tokens=8,
        default_temperature=0.0,
    )

    async def run() -> tuple[BaseException | None, np.ndarray]:
        stopped = asyncio.ensure_future(background.prompt_embedding(ask("one two")))
        assert await asyncio.to_thread(engine.started.wait, 5)
        vector = await backend.prompt_embedding(ask("three four five"))
        (outcome,) = await asyncio.gather(stopped, return_exceptions=True)
        return outcome, vector

    try:
        outcome, vector = asyncio.run(run())
    finally:
        backend.queue.close()
    assert isinstance(outcome, PreemptedError)
    assert vector.tolist()[0] == 3.0  # the client request's prompt was evaluated
    first, second = engine.cancels
    assert first is not None and first.is_set()  # the background evaluation was told to stop
    assert second is not None and not second.is_set()  # a client's never is
