"""Prefix reuse on a sliding-window model (the embedded Gemma 3: a window of 512 on most
layers), on the real model: a start whose window the sliding layers no longer hold is read
again, and the answer is the one a fresh cache gives."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from greedy import engine_job

from hybrid.generation import GenerationDone, GenerationEvent, TextDelta
from hybrid.local.engine import LlamaEngine, LoadOptions
from hybrid.models.embedded import ensure_embedded_model

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

START = (
    "The history of the city of Paris begins with a small Celtic settlement on an island in "
    "the Seine. Over the centuries,"
)


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaEngine]:
    path: Path = ensure_embedded_model(tmp_path_factory.mktemp("home"))
    # One slot: every request reuses what the one before left.  n_batch 64: the sliding layers
    # hold the last 512 + 64 positions of a sequence.
    options = LoadOptions(n_ctx=1024, n_threads=2, n_gpu_layers=0, n_batch=64, n_parallel=1)
    loaded = LlamaEngine.load(path, options)
    yield loaded
    loaded.close()


def answer(engine: LlamaEngine, prompt: str, max_tokens: int) -> tuple[str, GenerationDone]:
    parts: list[str] = []
    done: list[GenerationDone] = []

    def emit(event: GenerationEvent) -> None:
        if isinstance(event, TextDelta):
            parts.append(event.text)
        elif isinstance(event, GenerationDone):
            done.append(event)

    engine.run(engine_job(engine, prompt, max_tokens=max_tokens), threading.Event(), emit)
    return "".join(parts), done[0]


def test_a_start_whose_window_was_dropped_is_read_again(engine: LlamaEngine) -> None:
    fresh, _ = answer(engine, START, 12)
    # A long prompt with the same start: past 576 positions the sliding layers drop its
    # beginning, so they no longer hold the window before the end of the shared start.
    long_prompt = START + " the city grew" + " and grew, street by street," * 100
    assert len(engine.tokenize(long_prompt, add_bos=True)) > 700
    answer(engine, long_prompt, 1)
    again, done = answer(engine, START, 12)
    assert done.usage.cache_read_tokens == 0
    assert engine.prompt_tokens_evaluated == done.usage.prompt_tokens
    assert again == fresh


def test_a_start_still_in_the_window_is_reused(engine: LlamaEngine) -> None:
    first, _ = answer(engine, START, 12)
    longer, done = answer(engine, START + first + " It", 12)
    assert done.usage.cache_read_tokens >= len(engine.tokenize(START, add_bos=True)) - 1
    assert longer
