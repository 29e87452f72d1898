"""A slot opener whose models answer with their own id, hold an answer until told, and say
when they are loaded and freed: for tests of switching and idle unloading without llama.cpp."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from gguf_writer import embedded_header
from hardware_fakes import GIB, build_snapshot

from hybrid.generation import GenerationDone, GenerationEvent, TextDelta, Usage
from hybrid.local.backend import LocalBackend
from hybrid.local.engine import EngineJob
from hybrid.local.prompt import ChatFormatter
from hybrid.local.queue import WorkQueue
from hybrid.local.runtime import LocalRuntime
from hybrid.local.slot import LoadedModel, ModelSlot
from hybrid.local.speed import SpeedMeter
from hybrid.settings import Settings


class NamedEngine:
    """Answers every prompt with its model's id; an answer waits while ``hold`` is clear."""

    n_ctx = 512
    n_embd = 4

    def __init__(self, model_id: str, hold: threading.Event) -> None:
        self.model_id = model_id
        self.hold = hold
        self.running = threading.Event()
        self.freed = threading.Event()

    def tokenize(self, text: str, *, add_bos: bool) -> list[int]:
        return [1] * max(1, len(text.split()))

    def longest_token_bytes(self) -> int | None:
        return None

    def embed(self, tokens: object, cancel: object = None) -> object:
        raise NotImplementedError

    def run(
        self, job: EngineJob, cancel: threading.Event, emit: Callable[[GenerationEvent], None]
    ) -> None:
        assert not self.freed.is_set(), "a freed model was asked to answer"
        self.running.set()
        self.hold.wait(30)
        emit(TextDelta(self.model_id))
        emit(GenerationDone("stop", Usage(len(job.tokens), 1)))


class FakeOpener:
    """Opens :class:`NamedEngine` slots; a load waits while ``loading`` is clear.

    Attributes:
        engines: Every engine opened, by model id (the latest of each).
        opened: How many loads finished.
        hold: Shared by every engine: clear it to hold answers mid-generation.
    """

    def __init__(self) -> None:
        self.engines: dict[str, NamedEngine] = {}
        self.opened = 0
        self.speeds: list[SpeedMeter | None] = []
        self.loading = threading.Event()
        self.loading.set()
        self.load_started = threading.Event()
        self.hold = threading.Event()
        self.hold.set()
        self.fail: Exception | None = None

    def __call__(self, planned: LoadedModel, speed: SpeedMeter | None) -> ModelSlot:
        self.load_started.set()
        self.loading.wait(30)
        if self.fail is not None:
            raise self.fail
        engine = NamedEngine(planned.model_id, self.hold)
        self.engines[planned.model_id] = engine
        self.speeds.append(speed)
        queue = WorkQueue(max_waiting=8)
        backend, background = (
            LocalBackend(
                engine,
                lane,
                ChatFormatter(None),
                model_id=planned.model_id,
                default_max_tokens=4,
                default_temperature=0.0,
                speed=meter,
            )
            for lane, meter in ((queue, speed), (queue.background(), None))
        )
        self.opened += 1
        return ModelSlot(planned, backend, background, engine.freed.set, load_s=0.25)


def two_models(folder: Path) -> tuple[Path, Path]:
    """Two model files (the embedded model's header) in ``folder/models``: first, second."""
    first = embedded_header(folder / "models" / "first-model.gguf")
    second = embedded_header(folder / "models" / "second-model.gguf")
    return first, second


def fake_runtime(
    tmp_path: Path, opener: FakeOpener, **local: object
) -> tuple[LocalRuntime, Settings]:
    """A runtime serving ``first-model`` (from ``tmp_path/models``) through ``opener``, on a
    machine with 12 GiB free."""
    first, _ = two_models(tmp_path)
    settings = Settings.model_validate(
        {
            "home": tmp_path / "home",
            "local": {"model": first, "models_dirs": [tmp_path / "models"], **local},
        }
    )
    machine = build_snapshot(total=16 * GIB, available=12 * GIB)
    return LocalRuntime(settings, snapshot=lambda: machine, opener=opener, poll_s=0.01), settings
