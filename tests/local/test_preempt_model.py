"""A background answer on the real embedded model stops for a client request that needs its
slot, and says so (``PreemptedError``) instead of passing for a whole answer.

Overlap is made certain without timing: the background answer is held by a JSON schema to an
array of at least 800 numbers, longer than its output cap, so it cannot end before the client
request arrives.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from hybrid.backend import collect
from hybrid.errors import PreemptedError
from hybrid.generation import GenerationRequest, ResponseFormat, SamplingParams, TextDelta
from hybrid.local.backend import LocalBackend
from hybrid.local.engine import LlamaEngine, LoadOptions
from hybrid.local.prompt import ChatFormatter
from hybrid.local.queue import WorkQueue
from hybrid.models.embedded import ensure_embedded_model

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

LONG = ResponseFormat(
    "json_schema", {"type": "array", "items": {"type": "integer"}, "minItems": 800}
)


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaEngine]:
    path: Path = ensure_embedded_model(tmp_path_factory.mktemp("home"))
    engine = LlamaEngine.load(
        path, LoadOptions(n_ctx=1024, n_threads=2, n_gpu_layers=0, n_batch=64)
    )
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def lanes(loaded: LlamaEngine) -> Iterator[tuple[LocalBackend, LocalBackend]]:
    """The model's client lane and its low-priority lane, over one queue with one slot."""
    queue = WorkQueue(max_waiting=4)
    client, background = (
        LocalBackend(
            loaded,
            lane,
            ChatFormatter(None),
            model_id="gemma",
            default_max_tokens=24,
            default_temperature=0.0,
        )
        for lane in (queue, queue.background())
    )
    yield client, background
    queue.close()


def test_a_client_request_stops_the_background_answer_in_its_slot(
    lanes: tuple[LocalBackend, LocalBackend],
) -> None:
    client, background = lanes
    numbers = GenerationRequest(
        "background",
        prompt="A list of numbers:",
        params=SamplingParams(max_tokens=900, temperature=0, response_format=LONG),
    )
    question = GenerationRequest(
        "client", prompt="The capital of France is", params=SamplingParams(max_tokens=8)
    )

    async def scenario() -> tuple[str, BaseException | None, str]:
        generation = await background.start(numbers)
        events = aiter(generation)
        first = await anext(events)  # the background answer runs
        assert isinstance(first, TextDelta)
        answered = await collect(await client.start(question))
        stopped: BaseException | None = None
        try:
            async for _ in events:
                pass
        except PreemptedError as exc:
            stopped = exc
        finally:
            await generation.aclose()
        again = await collect(await background.start(question))
        return answered.done.finish_reason, stopped, again.done.finish_reason

    answered, stopped, again = asyncio.run(scenario())
    assert answered in ("stop", "length")
    assert isinstance(stopped, PreemptedError)
    assert "ask again" in str(stopped)
    # With the model free again, the lane answers to the end.
    assert again in ("stop", "length")


def test_a_stopped_prompt_evaluation_says_so_and_the_next_one_is_whole(loaded: LlamaEngine) -> None:
    tokens = loaded.tokenize("The capital of France is", add_bos=True)
    stop = threading.Event()
    stop.set()  # stopped before its first batch step

    with pytest.raises(PreemptedError, match="stopped early"):
        loaded.embed(tokens, stop)
    whole = loaded.embed(tokens, threading.Event())

    assert whole.shape == (loaded.n_embd,) and np.isfinite(whole).all()
    assert np.array_equal(whole, loaded.embed(tokens))
