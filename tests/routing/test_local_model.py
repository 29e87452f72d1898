"""Routing reads the local model through hybrid.routing.local_model's protocols: what a local
answer's reason says, from a generation that knows its size, and the real local generation
that does."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from concurrent.futures import Future
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
from greedy import greedy_job

from hybrid.backend import Generation
from hybrid.generation import GenerationDone, GenerationEvent, GenerationRequest, Message, Usage
from hybrid.local.generation import LocalGeneration
from hybrid.routing.chain import build_router
from hybrid.routing.dispatcher import Dispatcher
from hybrid.routing.local_model import LocalCapacity, SizedGeneration
from hybrid.routing.names import ModelNames
from hybrid.settings.routing import RoutingSettings

REQUEST = GenerationRequest("r1", messages=(Message("user", "hi"),))


@dataclass(frozen=True)
class Job:
    tokens: tuple[int, ...]
    max_tokens: int


class Sized(Generation):
    """An answer that knows how many prompt tokens it read and may write."""

    def __init__(self, prompt_tokens: int, max_tokens: int) -> None:
        self.prompt_tokens = prompt_tokens
        self.max_tokens = max_tokens

    async def __aiter__(self) -> AsyncIterator[GenerationEvent]:
        yield GenerationDone("stop", Usage(self.prompt_tokens, 0))

    async def aclose(self) -> None:
        return None


class Unsized(Sized):
    """The same answer, without its size."""

    def __init__(self) -> None:
        pass


class Local:
    """A ready local model whose every answer is ``answer``."""

    model_id = "local-model"
    context_length = 8192
    embedding_size = 4
    supports: frozenset[str] = frozenset()
    queue = SimpleNamespace(depth=0, slots=1, running=0, expected_wait_s=lambda: 0.0)
    speed = SimpleNamespace(
        decode_tokens_per_s=None,
        prefill_tokens_per_s=None,
        typical_answer_tokens=64,
        stream_decode_tokens_per_s=lambda batch_size: None,
    )
    state = "ready"

    def __init__(self, answer: Generation) -> None:
        self.answer = answer

    def backend(self) -> Local:
        return self

    async def prepare(self, request: GenerationRequest) -> Job:
        return Job(tokens=(0,) * 10, max_tokens=100)

    async def start(self, request: GenerationRequest, *, prepared: Job | None = None) -> Generation:
        return self.answer

    async def prompt_embedding(
        self, request: GenerationRequest, *, prepared: Job | None = None
    ) -> np.ndarray:
        raise AssertionError("no probe here: the model stage never asks")

    def release_hand_off(self) -> None:
        raise AssertionError("no probe here: nothing to release")


def reason_of(answer: Generation) -> str:
    local: LocalCapacity[Job] = Local(answer)  # the fake has the protocol's shape (mypy)
    names = ModelNames([], None)  # no cloud: the local model answers and says why
    dispatcher = Dispatcher(local, {}, names, router=build_router(RoutingSettings()))
    return asyncio.run(dispatcher.start(REQUEST, model="hybrid")).reason


def test_a_local_answer_that_knows_its_size_says_it_fits() -> None:
    assert reason_of(Sized(prompt_tokens=31, max_tokens=100)) == "length:131<=8192"


def test_a_local_answer_without_its_size_says_local() -> None:
    assert reason_of(Unsized()) == "local"


def test_the_local_backends_generation_knows_its_size() -> None:
    job = greedy_job([1, 2, 3], max_tokens=5)
    future: Future[None] = Future()
    generation = LocalGeneration(asyncio.Queue(), threading.Event(), future, job)
    assert isinstance(generation, SizedGeneration)
    assert (generation.prompt_tokens, generation.max_tokens) == (3, 5)
