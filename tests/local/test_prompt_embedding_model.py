"""The prompt vector on the real embedded model: its size, determinism, and prefix reuse."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from hybrid.generation import GenerationDone, GenerationRequest, SamplingParams, TextDelta
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
    # after it, only its last token again (for the logits to sample from).
    assert evaluated_plain >= prompt_tokens - 1 > 10
    assert evaluated_after == 1
