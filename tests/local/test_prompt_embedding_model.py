"""The prompt vector on the real embedded model: its size, determinism, and prefix reuse."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from hybrid.generation import (
    GenerationDone,
    GenerationRequest,
    ResponseFormat,
    SamplingParams,
    TextDelta,
    TokenLogprob,
)
from hybrid.local.backend import LocalBackend
from hybrid.local.engine import LlamaEngine, LoadOptions
from hybrid.local.prompt import ChatFormatter
from hybrid.local.queue import WorkQueue
from hybrid.models.embedded import ensure_embedded_model

pytestmark = pytest.mark.slow

QUESTION = "Question: What is the capital of France? Answer in one sentence.\nAnswer:"
OTHER = "Write a Python function that reverses a singly linked list in place."


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalBackend, LlamaEngine]]:
    path: Path = ensure_embedded_model(tmp_path_factory.mktemp("home"))
    engine = LlamaEngine.load(
        path, LoadOptions(n_ctx=1024, n_threads=2, n_gpu_layers=0, n_batch=64)
    )
    backend = LocalBackend(
        engine,
        WorkQueue(max_waiting=4),
        ChatFormatter(None),
        model_id="gemma",
        default_max_tokens=24,
        default_temperature=0.0,
    )
    yield backend, engine
    backend.queue.close()
    engine.close()


def ask(text: str) -> GenerationRequest:
    return GenerationRequest("r", prompt=text, params=SamplingParams(max_tokens=24, temperature=0))


def answer(backend: LocalBackend, request: GenerationRequest) -> tuple[str, int]:
    async def scenario() -> tuple[str, int]:
        generation = await backend.start(request)
        text, prompt_tokens = "", 0
        async for event in generation:
            if isinstance(event, TextDelta):
                text += event.text
            elif isinstance(event, GenerationDone):
                prompt_tokens = event.usage.prompt_tokens
        return text, prompt_tokens

    return asyncio.run(scenario())


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def embed(backend: LocalBackend, request: GenerationRequest) -> np.ndarray:
    return asyncio.run(backend.prompt_embedding(request))


def test_the_vector_has_the_models_size_and_is_deterministic(
    model: tuple[LocalBackend, LlamaEngine],
) -> None:
    backend, engine = model
    first = embed(backend, ask(QUESTION))
    again = embed(backend, ask(QUESTION))
    assert first.dtype == np.float32 and first.shape == (engine.n_embd,) == (640,)
    assert backend.embedding_size == 640
    assert np.all(np.isfinite(first)) and np.linalg.norm(first) > 0
    assert np.array_equal(first, again)
    # From the same cache, the same vector, bit for bit.
    embed(backend, ask(OTHER))
    after_other = embed(backend, ask(QUESTION))
    embed(backend, ask(OTHER))
    assert np.array_equal(embed(backend, ask(QUESTION)), after_other)
    # From another cache (the other prompt's BOS reused) the prompt is evaluated in other
    # batches, and llama.cpp's sums are not batch-invariant: the same direction, not the same
    # bits.
    assert cosine(after_other, first) > 0.99


def test_different_prompts_give_different_vectors(
    model: tuple[LocalBackend, LlamaEngine],
) -> None:
    backend, _ = model
    question, other = embed(backend, ask(QUESTION)), embed(backend, ask(OTHER))
    assert not np.allclose(question, other, rtol=1e-2, atol=1e-2)
    assert cosine(question, other) < 0.95


def test_the_answer_after_the_vector_is_the_same_and_reuses_the_prompt(
    model: tuple[LocalBackend, LlamaEngine],
) -> None:
    backend, engine = model
    request = ask(QUESTION)
    # Both answers start from the same cache: the other prompt's.
    answer(backend, ask(OTHER))
    plain, prompt_tokens = answer(backend, request)
    evaluated_plain = engine.prompt_tokens_evaluated
    answer(backend, ask(OTHER))
    embed(backend, request)
    assert engine.prompt_tokens_evaluated == evaluated_plain
    after, _ = answer(backend, request)
    evaluated_after = engine.prompt_tokens_evaluated
    assert plain and after == plain
    # Without the vector the prompt is evaluated (all but the BOS the other prompt shares);
    # after it, none: the answer starts from the logits the vector's decode left.
    assert evaluated_plain >= prompt_tokens - 1 > 10
    assert evaluated_after == 0


def test_the_answer_after_the_vector_counts_as_cached_only_what_the_vector_found_cached(
    model: tuple[LocalBackend, LlamaEngine],
) -> None:
    backend, engine = model
    request = ask(QUESTION)
    answer(backend, ask(OTHER))  # the cache shares only the BOS with the question
    embed(backend, request)
    evaluated_by_vector = engine.prompt_tokens_evaluated

    async def scenario() -> GenerationDone:
        generation = await backend.start(request)
        events = [event async for event in generation]
        assert isinstance(events[-1], GenerationDone)
        return events[-1]

    done = asyncio.run(scenario())
    # The vector evaluated the prompt for this very request: that is not a cache hit.
    assert evaluated_by_vector > 10
    assert done.usage.cache_read_tokens == done.usage.prompt_tokens - evaluated_by_vector == 1


def answer_events(
    backend: LocalBackend, request: GenerationRequest
) -> tuple[str, list[TokenLogprob]]:
    async def scenario() -> tuple[str, list[TokenLogprob]]:
        generation = await backend.start(request)
        text, logprobs = "", []
        async for event in generation:
            if isinstance(event, TextDelta):
                text += event.text
                logprobs.extend(event.logprobs)
        return text, logprobs

    return asyncio.run(scenario())


def test_a_sampled_scored_or_constrained_answer_after_the_vector_starts_from_its_logits(
    model: tuple[LocalBackend, LlamaEngine],
) -> None:
    backend, engine = model
    requests = (
        GenerationRequest(
            "r",
            prompt=QUESTION,
            params=SamplingParams(max_tokens=12, temperature=0.8, seed=7, top_logprobs=3),
        ),
        GenerationRequest(
            "r",
            prompt=QUESTION,
            params=SamplingParams(
                max_tokens=12, temperature=0, response_format=ResponseFormat("json_object")
            ),
        ),
    )
    for request in requests:
        answer(backend, ask(OTHER))
        plain, plain_logprobs = answer_events(backend, request)
        answer(backend, ask(OTHER))
        embed(backend, request)
        after, after_logprobs = answer_events(backend, request)
        assert engine.prompt_tokens_evaluated == 0
        assert after == plain and after
        assert bool(after_logprobs) == (request.params.top_logprobs is not None)
        assert [p.token for p in after_logprobs] == [p.token for p in plain_logprobs]
        for kept, fresh in zip(after_logprobs, plain_logprobs, strict=True):
            assert kept.logprob == pytest.approx(fresh.logprob, abs=0.02)
            assert [t.token for t in kept.top] == [t.token for t in fresh.top]
    # The last request is the constrained one: the grammar held.
    assert after.lstrip().startswith("{")


def test_the_kept_logits_serve_only_the_prompt_they_end(
    model: tuple[LocalBackend, LlamaEngine],
) -> None:
    backend, engine = model
    longer = ask(QUESTION + " The capital")
    answer(backend, ask(OTHER))
    plain, _ = answer(backend, longer)
    answer(backend, ask(OTHER))
    embed(backend, ask(QUESTION))
    after, _ = answer(backend, longer)
    # The vector's prompt is cached, so only the words after it are evaluated, and the answer
    # samples from the logits of the longer prompt's own last token.
    added = len(engine.tokenize(QUESTION + " The capital", add_bos=True)) - len(
        engine.tokenize(QUESTION, add_bos=True)
    )
    assert engine.prompt_tokens_evaluated == added > 0
    # The same answer's first line: sampled from the shorter prompt's logits, it would not
    # continue "The capital". Later tokens may differ where two are nearly tied, since the
    # prompt was evaluated in other batch shapes (on some CPUs a blank line more or less).
    assert after.split("\n")[0] == plain.split("\n")[0] and after.split("\n")[0]
