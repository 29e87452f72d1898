"""Log-probabilities a consumer stops mid-answer, and the chosen token's log-probability alone.

A cascade asks a streamed local answer for log-probabilities to weigh its opening only; once
it stands, the generation is told the rest needs none (``stop_logprobs``).  The batch
scheduler's sampling is driven here without a model: llama.cpp's logits row and end-of-
generation check are stood in for, and a scripted sampler picks the tokens.
"""

from __future__ import annotations

import asyncio
import codecs
import ctypes
import itertools
import threading
from collections.abc import Callable, Iterator

import llama_cpp
import numpy as np
import pytest
from greedy import greedy_job

from hybrid.generation import (
    GenerationDone,
    GenerationEvent,
    GenerationRequest,
    SamplingParams,
    TextDelta,
    Usage,
)
from hybrid.local.backend import LocalBackend
from hybrid.local.batch_request import BatchRequest
from hybrid.local.batching import BatchScheduler
from hybrid.local.engine import EngineJob
from hybrid.local.prefix_reuse import Slot
from hybrid.local.prompt import ChatFormatter
from hybrid.local.queue import WorkQueue
from hybrid.local.sampling import Pieces
from hybrid.local.text import StopText

N_VOCAB = 64


def known_pieces() -> Pieces:
    """Token text for a vocabulary of :data:`N_VOCAB` tokens, without a model: ``t<id> ``."""
    pieces = Pieces(None, N_VOCAB)
    pieces._cache.update({token: f"t{token} ".encode() for token in range(N_VOCAB)})
    return pieces


class ScriptedSampler:
    """Picks the given tokens in turn, from the context's row or a kept one."""

    def __init__(self, tokens: list[int]) -> None:
        self._tokens = iter(tokens)

    def sample(self, ctx: object, index: int) -> int:
        return next(self._tokens)

    def sample_row(self, logits: np.ndarray) -> int:
        return next(self._tokens)

    def close(self) -> None:
        """Nothing to free."""


class Rows:
    """The logits row llama.cpp would give each output, counting how often it is read."""

    def __init__(self, row: np.ndarray) -> None:
        self.row = row
        self.reads = 0

    def __call__(self, ctx: object, index: int) -> object:
        self.reads += 1
        return self.row.ctypes.data_as(ctypes.POINTER(ctypes.c_float))


@pytest.fixture
def rows(monkeypatch: pytest.MonkeyPatch) -> Iterator[Rows]:
    logits = np.random.default_rng(7).standard_normal(N_VOCAB).astype(np.float32)
    read = Rows(logits)
    monkeypatch.setattr(llama_cpp, "llama_get_logits_ith", read)
    monkeypatch.setattr(llama_cpp, "llama_vocab_is_eog", lambda vocab, token: False)
    yield read


def sampling(job: EngineJob, tokens: list[int]) -> tuple[BatchScheduler, Slot, list[TextDelta]]:
    """A scheduler, with no context, and a slot whose answer is decoding ``job``; the text
    deltas it emits are collected."""
    scheduler = object.__new__(BatchScheduler)
    scheduler._ctx = None
    scheduler._vocab = None
    scheduler._pieces = known_pieces()
    scheduler._n_ctx = 1024
    scheduler._uses = itertools.count(1)
    scheduler.last_evaluated = 0
    deltas: list[TextDelta] = []

    def emit(event: GenerationEvent) -> None:
        if isinstance(event, TextDelta):
            deltas.append(event)

    request = BatchRequest(tuple(job.tokens), job, threading.Event(), emit, 0.0)
    request.sampler = ScriptedSampler(tokens)  # type: ignore[assignment]
    request.text = StopText((), strip=False)
    request.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    slot = Slot(0, cached=list(job.tokens), request=request)
    request.position = len(job.tokens)
    return scheduler, slot, deltas


def test_tokens_sampled_after_the_stop_get_no_log_probabilities(rows: Rows) -> None:
    stopped = threading.Event()
    job = greedy_job([1, 2, 3], top_logprobs=0, logprobs_stopped=stopped)
    scheduler, slot, deltas = sampling(job, [5, 6, 7, 8])
    scheduler._sample(slot, 0, 1)
    scheduler._sample(slot, 0, 1)
    stopped.set()
    scheduler._sample(slot, 0, 1)
    scheduler._sample(slot, 0, 1)
    assert [delta.text for delta in deltas] == ["t5 ", "t6 ", "t7 ", "t8 "]
    assert [len(delta.logprobs) for delta in deltas] == [1, 1, 0, 0]
    assert rows.reads == 2  # no logits row copied for the tokens after the stop
    shifted = rows.row.astype(np.float64) - rows.row.max()
    expected = shifted[5] - np.log(np.exp(shifted).sum())
    assert deltas[0].logprobs[0].logprob == pytest.approx(expected, abs=1e-5)


def test_an_answer_not_stopped_keeps_every_token_s_log_probability(rows: Rows) -> None:
    job = greedy_job([1, 2, 3], top_logprobs=2, logprobs_stopped=threading.Event())
    scheduler, slot, deltas = sampling(job, [5, 6, 7])
    for _ in range(3):
        scheduler._sample(slot, 0, 1)
    assert [len(delta.logprobs) for delta in deltas] == [1, 1, 1]
    assert all(len(delta.logprobs[0].top) == 2 for delta in deltas)
    assert rows.reads == 3


def test_a_first_token_from_kept_logits_after_the_stop_gets_none(rows: Rows) -> None:
    stopped = threading.Event()
    stopped.set()
    job = greedy_job([1, 2, 3], top_logprobs=0, logprobs_stopped=stopped)
    scheduler, slot, deltas = sampling(job, [5])
    scheduler._sample(slot, None, 1, logits=rows.row.copy())
    assert deltas == [TextDelta("t5 ")]


def test_a_request_that_never_asked_wants_none_whatever_the_flag() -> None:
    stopped = threading.Event()
    asked = BatchRequest((1,), greedy_job([1], top_logprobs=0), stopped, lambda event: None, 0.0)
    assert asked.wants_logprobs  # no flag: to the end
    flagged = greedy_job([1], top_logprobs=0, logprobs_stopped=stopped)
    request = BatchRequest((1,), flagged, threading.Event(), lambda event: None, 0.0)
    assert request.wants_logprobs
    stopped.set()
    assert not request.wants_logprobs
    never = BatchRequest((1,), greedy_job([1]), threading.Event(), lambda event: None, 0.0)
    assert not never.wants_logprobs


class Recording:
    """An engine that notes each job it runs and answers with one piece."""

    n_ctx = 1024

    def __init__(self) -> None:
        self.jobs: list[EngineJob] = []

    def tokenize(self, text: str, *, add_bos: bool) -> list[int]:
        return [1] * (len(text) // 4 + 1)

    def longest_token_bytes(self) -> int | None:
        return None

    def run(
        self, job: EngineJob, cancel: threading.Event, emit: Callable[[GenerationEvent], None]
    ) -> None:
        self.jobs.append(job)
        emit(TextDelta("hi"))
        emit(GenerationDone("stop", Usage(len(job.tokens), 1)))


def test_a_local_generation_told_to_stop_sets_its_own_job_s_flag() -> None:
    engine = Recording()
    local = LocalBackend(
        engine,  # type: ignore[arg-type]
        WorkQueue(max_waiting=4),
        ChatFormatter(None),
        model_id="m",
        default_max_tokens=8,
        default_temperature=0.0,
    )
    request = GenerationRequest("r1", prompt="hello", params=SamplingParams(top_logprobs=0))

    async def scenario() -> None:
        prepared = await local.prepare(request)
        told = await local.start(request, prepared=prepared)
        [event async for event in told]
        untold = await local.start(request, prepared=prepared)
        [event async for event in untold]
        told.stop_logprobs()

    try:
        asyncio.run(scenario())
    finally:
        local.queue.close()
    first, second = engine.jobs
    assert first.logprobs_stopped is not None and first.logprobs_stopped.is_set()
    assert second.logprobs_stopped is not None and not second.logprobs_stopped.is_set()
    assert first.top_logprobs == second.top_logprobs == 0


def full_logprob(logits: np.ndarray, token: int) -> float:
    """The chosen token's log-probability as the whole vocabulary's log-softmax gives it."""
    shifted = logits - logits.max()
    return float((shifted - np.log(np.exp(shifted).sum()))[token])


@pytest.mark.parametrize("scale", [0.1, 1.0, 30.0])
def test_the_chosen_token_s_log_probability_alone_equals_the_full_computation(
    scale: float,
) -> None:
    rng = np.random.default_rng(11)
    pieces = known_pieces()
    for _ in range(20):
        logits = (rng.standard_normal(N_VOCAB) * scale).astype(np.float32)
        kept = logits.copy()
        token = int(rng.integers(N_VOCAB))
        lean = pieces.logprob(logits, token, 0)
        assert np.allclose(lean.logprob, full_logprob(logits, token))
        assert lean.top == () and lean.token == f"t{token} "
        assert np.array_equal(logits, kept)  # the row read is left as it was
        listed = pieces.logprob(logits, token, 3)
        assert np.allclose(listed.logprob, lean.logprob) and len(listed.top) == 3
