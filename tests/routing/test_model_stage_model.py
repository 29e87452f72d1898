"""The model stage on the real embedded model: a probed request kept local reuses its prompt."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from routing_fakes import Replay

from hybrid.backend import Completion, collect
from hybrid.generation import GenerationRequest, Message, SamplingParams
from hybrid.local.backend import LocalBackend
from hybrid.local.engine import LlamaEngine, LoadOptions
from hybrid.local.prompt import ChatFormatter
from hybrid.local.queue import WorkQueue
from hybrid.models.embedded import ensure_embedded_model
from hybrid.routing.answer import Answer
from hybrid.routing.chain import build_router
from hybrid.routing.difficulty.features import FEATURE_VERSION, N_FEATURES
from hybrid.routing.difficulty.model import DifficultyModel
from hybrid.routing.difficulty.probe import ProbeStage
from hybrid.routing.difficulty.store import find, gguf_sha256
from hybrid.routing.dispatcher import Dispatcher
from hybrid.routing.names import ModelNames, ProviderModels
from hybrid.settings.routing import DifficultySettings, RoutingSettings

pytestmark = pytest.mark.slow


class Runtime:
    """The parts of LocalRuntime the dispatcher reads, around a real backend."""

    state = "ready"

    def __init__(self, backend: LocalBackend) -> None:
        self._backend = backend
        self.model_id = backend.model_id

    def backend(self) -> LocalBackend:
        return self._backend


@pytest.fixture(scope="module")
def path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_embedded_model(tmp_path_factory.mktemp("home"))


@pytest.fixture(scope="module")
def model(path: Path) -> Iterator[tuple[LocalBackend, LlamaEngine]]:
    options = LoadOptions(n_ctx=1024, n_threads=2, n_gpu_layers=0, n_batch=64)
    engine = LlamaEngine.load(path, options)
    backend = LocalBackend(
        engine,
        WorkQueue(max_waiting=4),
        ChatFormatter(None),
        model_id="gemma",
        default_max_tokens=16,
        default_temperature=0.0,
    )
    yield backend, engine
    backend.queue.close()
    engine.close()


def difficulty(dim: int) -> DifficultyModel:
    """Every prompt scores 0.5 on the features (in the band); the probe keeps it local."""
    probe = ProbeStage(np.zeros(dim), -2.0, np.zeros(dim), np.ones(dim), (0.3, 0.7), 0.5)
    return DifficultyModel(
        weights=np.zeros(N_FEATURES),
        bias=0.0,
        threshold=0.5,
        feature_version=FEATURE_VERSION,
        mean=np.zeros(N_FEATURES),
        scale=np.ones(N_FEATURES),
        probe=probe,
    )


def dispatcher(backend: LocalBackend, *, model_stage: bool) -> Dispatcher:
    names = ModelNames([ProviderModels("openai", ("gpt-4.1-mini",), usable=True)], None)
    settings = RoutingSettings(difficulty=DifficultySettings(model_stage=model_stage))
    model = difficulty(backend.embedding_size)
    router = build_router(settings, difficulty=lambda: model)
    runtime = Runtime(backend)
    return Dispatcher(runtime, {}, names, router=router)


def test_a_request_the_probe_keeps_local_is_answered_from_the_evaluated_prompt(
    model: tuple[LocalBackend, LlamaEngine],
) -> None:
    backend, engine = model
    request = GenerationRequest(
        "r1",
        messages=(Message("user", "Name the largest planet of the solar system."),),
        params=SamplingParams(max_tokens=16, temperature=0),
    )
    other = GenerationRequest("r0", prompt="Unrelated words to fill the cache.")

    async def answer(built: Dispatcher) -> tuple[str, str, int]:
        await backend.prompt_embedding(other)  # the cache holds another prompt
        started = await built.start(request, model="hybrid")
        text = (await collect(started.generation)).text
        return started.reason, text, engine.prompt_tokens_evaluated

    plain_reason, plain, evaluated_plain = asyncio.run(
        answer(dispatcher(backend, model_stage=False))
    )
    reason, text, evaluated = asyncio.run(answer(dispatcher(backend, model_stage=True)))
    assert plain_reason == "difficulty:0.50<=0.50"
    assert reason == "difficulty:0.50~probe:0.12<=0.50"
    assert text == plain and text
    assert evaluated_plain > 10 and evaluated == 0


class Cloud:
    name = "openai"

    async def start(self, request: GenerationRequest) -> Replay:
        return Replay("cloud answer")


def test_asked_for_every_request_the_shipped_calibration_decides_on_the_models_view(
    model: tuple[LocalBackend, LlamaEngine], path: Path, tmp_path: Path
) -> None:
    backend, engine = model
    found = find(tmp_path, gguf_sha256(path))
    assert found is not None and found.source == "shipped"
    shipped = found.model
    assert shipped.probe is not None and shipped.probe.every_threshold is not None
    names = ModelNames([ProviderModels("openai", ("gpt-4.1-mini",), usable=True)], None)
    settings = RoutingSettings(difficulty=DifficultySettings(model_stage="every"))
    router = build_router(settings, difficulty=lambda: shipped)
    providers: dict[str, Any] = {"openai": Cloud()}
    built = Dispatcher(Runtime(backend), providers, names, router=router)  # type: ignore[arg-type]
    request = GenerationRequest(
        "r2",
        messages=(Message("user", "Say hello to my friend Anna."),),
        params=SamplingParams(max_tokens=8, temperature=0),
    )

    async def answer() -> tuple[Answer, str, int, np.ndarray]:
        started = await built.start(request, model="hybrid")
        text = (await collect(started.generation)).text
        evaluated = engine.prompt_tokens_evaluated
        return started, text, evaluated, await backend.prompt_embedding(request)

    started, text, evaluated, vector = asyncio.run(answer())

    # The first request: each stage's score is its own (nothing recent to read it beside).
    feature = started.verdicts[-2].score
    assert feature is not None
    probe = shipped.probe
    expected = probe.every(feature, probe.score(vector))
    assert started.score == pytest.approx(expected, abs=1e-6)
    # A greeting both stages find easy stays local, answered from the prompt the probe
    # evaluated: no prompt token is evaluated again.
    assert started.reason == (
        f"difficulty:{feature:.2f}~probe:{expected:.2f}<={probe.every_threshold:.2f}"
    )
    assert started.route == "local" and text and evaluated == 0


def test_calibration_answers_carry_the_confidence_the_cascade_reads(
    model: tuple[LocalBackend, LlamaEngine],
) -> None:
    from hybrid.routing.calibration.items import calibration_set
    from hybrid.routing.calibration.runner import ItemAnswer, answer_items
    from hybrid.routing.cascade import confidence

    backend, _ = model
    items = [item for item in calibration_set(0, per_category=1) if item.category == "facts"]
    asked = GenerationRequest(
        request_id="again",
        messages=items[0].presentations[0],
        params=SamplingParams(max_tokens=8, temperature=0.0, stop=("\n",), seed=0, top_logprobs=0),
    )

    async def both() -> tuple[ItemAnswer, Completion]:
        (answer,) = await answer_items(
            backend, items, max_tokens=8, progress=lambda d, t: None, embed=True
        )
        return answer, await collect(await backend.start(asked))

    answer, again = asyncio.run(both())
    assert answer.texts[0] == again.text and again.logprobs
    assert answer.confidence is not None and 0 < answer.confidence <= 1
    assert answer.confidence == pytest.approx(confidence([lp.logprob for lp in again.logprobs]))
