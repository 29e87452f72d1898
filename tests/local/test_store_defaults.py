"""An Ollama model's ``params`` (``stop``, ``num_ctx``, ``temperature``) applied when it is
served: the context size it asks for is planned (the machine and ``local.n_ctx`` still decide),
its temperature is the default, its stop sequences end every answer; a request's own win."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
from gguf_writer import tiny_model
from hardware_fakes import GIB, build_snapshot
from model_stores import ollama_model

from hybrid.generation import GenerationEvent, GenerationRequest, Message, SamplingParams
from hybrid.local.engine import EngineJob
from hybrid.local.prompt import ChatFormatter
from hybrid.local.queue import WorkQueue
from hybrid.local.runtime import LocalRuntime
from hybrid.local.slot import LoadedModel, ModelSlot, model_backend
from hybrid.local.speed import SpeedMeter
from hybrid.settings import Settings
from hybrid.wire.fields import MAX_STOP_SEQUENCES

PARAMS = {"stop": ["<|eot|>", "User:"], "num_ctx": 1024, "temperature": 0.7}


class JobEngine:
    """Keeps the jobs it is given; never asked to generate here."""

    n_ctx = 1024
    n_embd = 4

    def tokenize(self, text: str, *, add_bos: bool) -> list[int]:
        return [1] * max(1, len(text.split()))

    def longest_token_bytes(self) -> int | None:
        return None

    def embed(self, tokens: Sequence[int], cancel: object = None) -> np.ndarray:
        raise NotImplementedError

    def run(
        self, job: EngineJob, cancel: threading.Event, emit: Callable[[GenerationEvent], None]
    ) -> None:
        raise AssertionError("not used")


class DefaultsOpener:
    """Opens slots the way ``hybrid serve`` builds their backends, on a :class:`JobEngine`."""

    def __init__(self, settings: Settings) -> None:
        self.local = settings.local
        self.planned: list[LoadedModel] = []

    def __call__(self, planned: LoadedModel, speed: SpeedMeter | None) -> ModelSlot:
        self.planned.append(planned)
        engine = JobEngine()
        queue = WorkQueue(max_waiting=4)
        formatter = ChatFormatter(None)
        backend = model_backend(engine, queue, formatter, planned, self.local, speed)
        background = model_backend(engine, queue.background(), formatter, planned, self.local, None)
        return ModelSlot(planned, backend, background, lambda: None, load_s=0.1)


def ollama_settings(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    params: dict[str, object] | None,
    **local: object,
) -> Settings:
    """Settings serving ``tiny:1b`` from an Ollama store whose params layer is ``params``."""
    weights = tiny_model().write(tmp_path / "weights.gguf")
    store = tmp_path / "ollama"
    ollama_model(store, "tiny:1b", weights, params=params)
    monkeypatch.setenv("OLLAMA_MODELS", str(store))
    return Settings.model_validate(
        {
            "home": tmp_path / "home",
            "local": {"model": "tiny:1b", "stores": ["ollama"], "models_dirs": [], **local},
        }
    )


def served(settings: Settings) -> tuple[LocalRuntime, DefaultsOpener]:
    opener = DefaultsOpener(settings)
    machine = build_snapshot(total=16 * GIB, available=12 * GIB)
    runtime = LocalRuntime(settings, snapshot=lambda: machine, opener=opener, poll_s=0.01)
    asyncio.run(runtime.load())
    assert runtime.state == "ready", runtime.error
    return runtime, opener


def job(runtime: LocalRuntime, params: SamplingParams) -> EngineJob:
    request = GenerationRequest("r", messages=(Message("user", "hello world"),), params=params)

    async def prepare() -> EngineJob:
        return await runtime.backend().prepare(request)

    return asyncio.run(prepare())


def test_the_stores_num_ctx_is_the_planned_context(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, opener = served(ollama_settings(tmp_path, monkeypatch, PARAMS))
    (planned,) = opener.planned
    assert planned.model_id == "tiny:1b"
    assert planned.defaults.n_ctx == 1024
    assert planned.plan.n_ctx == 1024  # the model was trained for 4,096


def test_without_params_the_context_is_planned_from_the_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, opener = served(ollama_settings(tmp_path, monkeypatch, None))
    assert opener.planned[0].plan.n_ctx == 4096


def test_num_ctx_beyond_what_the_model_was_trained_for_is_capped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = ollama_settings(tmp_path, monkeypatch, {"num_ctx": 65536})
    _, opener = served(settings)
    assert opener.planned[0].plan.n_ctx == 4096


def test_an_explicit_n_ctx_setting_wins_over_num_ctx(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, opener = served(ollama_settings(tmp_path, monkeypatch, PARAMS, n_ctx=2048))
    assert opener.planned[0].plan.n_ctx == 2048


def test_the_stores_temperature_and_stops_apply_to_a_request_that_sets_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime, _ = served(ollama_settings(tmp_path, monkeypatch, PARAMS))
    prepared = job(runtime, SamplingParams(max_tokens=4))
    assert prepared.temperature == pytest.approx(0.7)
    assert {"<|eot|>", "User:"} <= set(prepared.stop)
    assert prepared.request_stop == ()  # the model's stops are not reported as the client's


def test_a_requests_own_temperature_and_stops_win(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime, _ = served(ollama_settings(tmp_path, monkeypatch, PARAMS))
    prepared = job(runtime, SamplingParams(max_tokens=4, temperature=0.2, stop=("User:", "END")))
    assert prepared.temperature == pytest.approx(0.2)
    assert prepared.stop.count("User:") == 1  # merged, not repeated
    assert {"END", "<|eot|>"} <= set(prepared.stop)
    assert prepared.request_stop == ("User:", "END")


def test_a_request_with_every_stop_it_may_set_keeps_them_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime, _ = served(ollama_settings(tmp_path, monkeypatch, PARAMS))
    own = tuple(f"s{index}" for index in range(MAX_STOP_SEQUENCES))
    prepared = job(runtime, SamplingParams(max_tokens=4, stop=own))
    assert set(own) <= set(prepared.stop)
    assert "<|eot|>" not in prepared.stop  # no room left within the API's limit


def test_an_explicit_temperature_setting_wins_over_the_stores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime, _ = served(ollama_settings(tmp_path, monkeypatch, PARAMS, temperature=0.0))
    assert job(runtime, SamplingParams(max_tokens=4)).temperature == 0.0


def test_a_plain_file_gets_the_settings_defaults(tmp_path: Path) -> None:
    weights = tiny_model().write(tmp_path / "models" / "plain.gguf")
    settings = Settings.model_validate(
        {"home": tmp_path / "home", "local": {"model": weights, "stores": [], "temperature": 0.3}}
    )
    runtime, opener = served(settings)
    assert opener.planned[0].defaults.stop == ()
    prepared = job(runtime, SamplingParams(max_tokens=4))
    assert prepared.temperature == pytest.approx(0.3)
    assert prepared.request_stop == ()
