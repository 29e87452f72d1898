"""Fakes the dispatcher tests share."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

from hybrid.backend import Generation
from hybrid.cloud.policy import ReliabilityPolicy
from hybrid.errors import ContextLengthExceededError, HybridError, ModelNotReadyError
from hybrid.generation import (
    GenerationDone,
    GenerationEvent,
    GenerationRequest,
    TextDelta,
    TokenLogprob,
    Usage,
)
from hybrid.local.speed import SpeedMeter

LOCAL = "local-model"
BIG = "qwen2.5-32b-instruct"
"""A LAN model's name that reads as able to answer most prompts (32B, instruction-tuned)."""

LAN_POLICY = ReliabilityPolicy(
    connect_timeout_s=2.0,
    first_byte_timeout_s=10.0,
    idle_timeout_s=10.0,
    max_attempts=1,
    max_total_s=10.0,
    backoff_base_s=0.0,
    backoff_max_s=0.0,
    max_retry_after_s=0.0,
    breaker_failures=3,
    breaker_reset_s=30.0,
)
"""Quick to fail: one attempt, no backoff."""


class Replay(Generation):
    """A generation that says ``text`` and stops."""

    def __init__(self, text: str) -> None:
        self.text = text

    async def __aiter__(self) -> AsyncIterator[GenerationEvent]:
        yield TextDelta(self.text)
        yield GenerationDone("stop", Usage(1, 1))

    async def aclose(self) -> None:
        return None


class FakeLocal:
    """Stands in for LocalRuntime and its backend."""

    model_id = LOCAL
    context_length = 8192
    supports: frozenset[str] = frozenset()
    queue = SimpleNamespace(depth=0, slots=1, running=0, expected_wait_s=lambda: 0.0)
    speed = SpeedMeter()
    embedding_size = 4

    def __init__(self, fail: HybridError | None = None) -> None:
        self.fail = fail
        self.started = 0
        self.state = "loading" if isinstance(fail, ModelNotReadyError) else "ready"

    def backend(self) -> FakeLocal:
        if isinstance(self.fail, ModelNotReadyError):
            raise self.fail
        return self

    async def prepare(self, request: GenerationRequest) -> Any:
        if isinstance(self.fail, ContextLengthExceededError):
            raise self.fail
        return SimpleNamespace(tokens=[0] * 10, max_tokens=100)

    async def start(self, request: GenerationRequest, *, prepared: Any = None) -> Generation:
        self.started += 1
        if self.fail is not None:
            raise self.fail
        return Replay("local answer")

    async def prompt_embedding(self, request: GenerationRequest, *, prepared: Any = None) -> Any:
        raise AssertionError("no probe in these tests: the model stage never asks")

    def release_hand_off(self) -> None:
        raise AssertionError("no probe in these tests: nothing to release")


class FakeProvider:
    def __init__(self, name: str, *failures: HybridError) -> None:
        self.name = name
        self.failures = list(failures)
        self.models_asked: list[str | None] = []

    async def start(self, request: GenerationRequest) -> Generation:
        self.models_asked.append(request.model)
        if self.failures:
            raise self.failures.pop(0)
        return Replay(f"{self.name} answer")


class Unsure(Generation):
    """A local answer whose tokens had the given probabilities, a word at a time (the
    log-probabilities on the first); notes whether it was told to stop them."""

    def __init__(self, probabilities: list[float], text: str) -> None:
        self.probabilities = probabilities
        self.text = text
        self.iterations = 0
        self.words_sent = 0
        self.closed = False
        self.logprobs_stopped = False

    def stop_logprobs(self) -> None:
        self.logprobs_stopped = True

    async def __aiter__(self) -> AsyncIterator[GenerationEvent]:
        self.iterations += 1
        logprobs = tuple(TokenLogprob("w", math.log(p), (119,)) for p in self.probabilities)
        words = self.text.split(" ")
        for n, word in enumerate(words):
            self.words_sent += 1
            yield TextDelta(word if n == len(words) - 1 else word + " ", logprobs if n == 0 else ())
        yield GenerationDone("stop", Usage(7, len(self.probabilities)))

    async def aclose(self) -> None:
        self.closed = True


class CascadingLocal(FakeLocal):
    def __init__(self, probabilities: list[float], text: str = "local words") -> None:
        super().__init__()
        self.probabilities = probabilities
        self.text = text
        self.asked: list[GenerationRequest] = []

        self.started_answers: list[Unsure] = []

    async def start(self, request: GenerationRequest, *, prepared: Any = None) -> Generation:
        if self.fail is not None:
            raise self.fail
        self.asked.append(request)
        self.started_answers.append(Unsure(self.probabilities, self.text))
        return self.started_answers[-1]
