"""The local backend's check and hand-over of logit_bias and the penalties: a token id the
model does not have is a bad request; the rest reach the engine's job."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import pytest

from hybrid.errors import InvalidRequestError
from hybrid.generation import GenerationEvent, GenerationRequest, SamplingParams
from hybrid.local.backend import LocalBackend
from hybrid.local.engine import EngineJob
from hybrid.local.prompt import ChatFormatter
from hybrid.local.queue import WorkQueue


class SmallVocabEngine:
    """A tokenizer of 1,000 tokens, one per character; never asked to generate."""

    n_ctx = 1024
    n_vocab = 1000

    def tokenize(self, text: str, *, add_bos: bool) -> list[int]:
        return [1, *(ord(c) % 1000 for c in text)]

    def longest_token_bytes(self) -> int | None:
        return None

    def run(
        self, job: EngineJob, cancel: threading.Event, emit: Callable[[GenerationEvent], None]
    ) -> None:
        raise AssertionError("a refused request must not reach the model")


def prepare(**params: object) -> EngineJob:
    local = LocalBackend(
        SmallVocabEngine(),  # type: ignore[arg-type]
        WorkQueue(max_waiting=4),
        ChatFormatter(None),
        model_id="small",
        default_max_tokens=8,
        default_temperature=0.0,
    )
    request = GenerationRequest("r", prompt="hi", params=SamplingParams(**params))  # type: ignore[arg-type]
    try:
        return asyncio.run(local.prepare(request))
    finally:
        local.queue.close()


def test_bias_and_penalties_reach_the_engines_job() -> None:
    job = prepare(
        logit_bias=((5, -100.0), (999, 3.5)), frequency_penalty=1.5, presence_penalty=-0.5
    )
    assert job.logit_bias == ((5, -100.0), (999, 3.5))
    assert (job.frequency_penalty, job.presence_penalty) == (1.5, -0.5)


def test_no_penalty_is_a_penalty_of_zero() -> None:
    job = prepare()
    assert (job.logit_bias, job.frequency_penalty, job.presence_penalty) == ((), 0.0, 0.0)


def test_a_biased_token_outside_the_vocabulary_is_a_bad_request() -> None:
    with pytest.raises(InvalidRequestError) as caught:
        prepare(logit_bias=((5, 1.0), (1000, -100.0), (50000, 2.0)))
    assert caught.value.param == "logit_bias"
    message = str(caught.value)
    assert "1000, 50000" in message and "0 to 999" in message and "small" in message
