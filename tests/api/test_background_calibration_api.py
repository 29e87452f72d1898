"""A served model with no calibration routes on its prior and is calibrated in the background,
with the progress in ``/health``: waiting, running, then adopted or kept-prior."""

from __future__ import annotations

import asyncio
import itertools
import threading
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from calibration_fakes import KnowingBackend
from fastapi.testclient import TestClient
from gguf_writer import tiny_model
from hardware_fakes import FakePower, idle_probe
from scripted import ScriptedBackend, ScriptedRuntime, scripted_app

from hybrid.backend import Generation
from hybrid.errors import GenerationError, PreemptedError
from hybrid.generation import GenerationRequest
from hybrid.hardware.snapshot import PowerInfo
from hybrid.routing.calibration.background import (
    BackgroundCalibration,
    progress_path,
    read_progress,
)
from hybrid.routing.calibration.item import CalibrationItem
from hybrid.routing.calibration.items import CATEGORIES, calibration_set
from hybrid.routing.calibration.record import load_record
from hybrid.routing.difficulty.store import find, gguf_sha256, model_path
from hybrid.settings import Settings

PER_CATEGORY = 20  # 20 items a category: enough held out for acceptance to trust a fit
# Categories the embedded model (whose weights the prior reuses) never got right: a model that
# gets them right is one the prior misjudges, so a fit beats it.
KNOWN = {"units", "choice", "counting", "arithmetic"}
TIMEOUT_S = 60


class GatedBackend(KnowingBackend):
    """Answers calibration items (right on ``knows``), holding the first one until released."""

    def __init__(self, knows: Callable[[CalibrationItem], bool]) -> None:
        super().__init__(calibration_set(0, per_category=PER_CATEGORY), knows)
        self.asked = threading.Event()
        self.release = threading.Event()
        self.count = 0

    async def start(self, request: GenerationRequest, *, prepared: Any = None) -> Generation:
        self.count += 1
        self.asked.set()
        assert await asyncio.to_thread(self.release.wait, TIMEOUT_S)
        return await super().start(request)


class SeeingBackend(GatedBackend):
    """A :class:`GatedBackend` that also gives its own vector of each prompt, as the local
    model's backend does: one that tells the items it knows from the rest (with noise)."""

    def __init__(self, knows: Callable[[CalibrationItem], bool]) -> None:
        super().__init__(knows)
        self._knows = {
            tuple(item.presentations[0]): knows(item)
            for item in calibration_set(0, per_category=PER_CATEGORY)
        }
        self.embedded: list[GenerationRequest] = []

    async def prompt_embedding(self, request: GenerationRequest, *, prepared: Any = None) -> Any:
        self.embedded.append(request)
        seed = zlib.crc32(request.messages[-1].content.encode())
        vector = np.random.default_rng(seed).normal(size=8).astype(np.float32)
        vector[0] += 2.0 if self._knows.get(tuple(request.messages), False) else -2.0
        return vector


class UncalibratedFile(ScriptedRuntime):
    """A scripted model served from a GGUF file nobody calibrated; loads when told to."""

    def __init__(self, settings: Settings, path: Path, background: GatedBackend) -> None:
        super().__init__(settings, ScriptedBackend())
        self.path = path
        self.calibrating = background
        self.loaded_event = threading.Event()
        self.ready_event = threading.Event()

    async def load(self) -> None:
        assert await asyncio.to_thread(self.loaded_event.wait, TIMEOUT_S)
        await super().load()
        self.ready_event.set()

    @property
    def loaded_path(self) -> Path | None:
        return self.path if self.state == "ready" else None

    def background_backend(self) -> Any:
        self.backend()
        return self.calibrating


@pytest.fixture
def served(tmp_path: Path) -> Path:
    return tiny_model(arch="llama").write(tmp_path / "mine.gguf")


def settings(settings_for: Callable[..., Settings], **extra: object) -> Settings:
    return settings_for(
        **{
            "probe.measure_bandwidth": False,
            "routing.calibration.per_category": PER_CATEGORY,
            **extra,
        }
    )


def health(client: TestClient) -> dict[str, Any]:
    body: dict[str, Any] = client.get("/health").json()
    return body


def run_to_the_end(
    client: TestClient, runtime: UncalibratedFile, backend: GatedBackend
) -> Iterator[dict[str, Any]]:
    """Health at each stage: loading, the first item running, and the end."""
    yield health(client)
    runtime.loaded_event.set()
    assert backend.asked.wait(TIMEOUT_S)
    yield health(client)
    backend.release.set()
    assert client.app.state.hybrid.background.finished.wait(TIMEOUT_S)  # type: ignore[attr-defined]
    yield health(client)


def calibrated(config: Settings, served: Path, backend: GatedBackend) -> dict[str, Any]:
    """Serve the file with ``backend`` as its background lane until its calibration has ended
    (its first item released once asked); health then."""
    runtime = UncalibratedFile(config, served, backend)
    with TestClient(scripted_app(config, runtime=runtime)) as client:
        *_, done = run_to_the_end(client, runtime, backend)
    return done


def restarted(config: Settings, served: Path, backend: GatedBackend) -> dict[str, Any]:
    """Serve the file again, loaded at once, until its calibration has ended; health then."""
    backend.release.set()
    runtime = UncalibratedFile(config, served, backend)
    runtime.loaded_event.set()
    with TestClient(scripted_app(config, runtime=runtime)) as client:
        assert client.app.state.hybrid.background.finished.wait(TIMEOUT_S)  # type: ignore[attr-defined]
        return health(client)


def test_a_model_the_prior_misjudges_is_calibrated_in_the_background_and_the_fit_adopted(
    settings_for: Callable[..., Settings], served: Path
) -> None:
    config = settings(settings_for)
    backend = GatedBackend(lambda item: item.category in KNOWN)
    runtime = UncalibratedFile(config, served, backend)
    with TestClient(scripted_app(config, runtime=runtime)) as client:
        loading, running, done = run_to_the_end(client, runtime, backend)
        reply = client.post(
            "/v1/chat/completions",
            json={"model": "hybrid", "messages": [{"role": "user", "content": "Hello there"}]},
        )

    assert loading["status"] == "loading"
    assert loading["calibration"]["state"] == "waiting"
    assert loading["calibration"]["background"]["state"] == "waiting"

    assert running["calibration"]["state"] == "prior"
    assert running["calibration"]["source"] == "prior"
    assert running["calibration"]["prior"]["family"] == "llama"
    assert 0 < running["calibration"]["prior"]["expected_accuracy"] < 1
    progress = running["calibration"]["background"]
    assert progress["state"] == "running"
    assert (progress["done"], progress["total"]) == (0, len(CATEGORIES) * PER_CATEGORY)

    progress = done["calibration"]["background"]
    assert progress["state"] == "adopted", progress["message"]
    assert progress["done"] == progress["total"] == len(CATEGORIES) * PER_CATEGORY
    assert progress["accuracy"] == pytest.approx(len(KNOWN) / len(CATEGORIES), abs=1e-4)
    # The fit is in use, saved where `hybrid calibrate` saves, with the answers beside it.
    sha256 = gguf_sha256(served)
    assert done["calibration"]["state"] == "found"
    assert done["calibration"]["source"] == "user"
    assert done["calibration"]["path"] == str(model_path(config.home, sha256))
    record = load_record(config.home, sha256)
    assert record is not None and len(record.answers) == len(CATEGORIES) * PER_CATEGORY
    assert record.per_category == PER_CATEGORY
    # Every presentation of every item was asked once, through the background backend.
    items = calibration_set(0, per_category=PER_CATEGORY)
    assert backend.count == sum(len(item.presentations) for item in items)
    assert "difficulty:" in reply.headers["x-hybrid-reason"]


def test_a_fit_that_cannot_be_trusted_keeps_the_prior(
    settings_for: Callable[..., Settings], served: Path
) -> None:
    config = settings(settings_for)
    backend = GatedBackend(lambda item: False)  # every answer wrong: nothing to learn from
    runtime = UncalibratedFile(config, served, backend)
    with TestClient(scripted_app(config, runtime=runtime)) as client:
        _, running, done = run_to_the_end(client, runtime, backend)
        reply = client.post(
            "/v1/chat/completions",
            json={"model": "hybrid", "messages": [{"role": "user", "content": "Hello there"}]},
        )

    assert running["calibration"]["background"]["state"] == "running"
    progress = done["calibration"]["background"]
    assert progress["state"] == "kept-prior"
    assert "too few to trust" in progress["message"]
    assert progress["accuracy"] == 0
    assert done["calibration"]["state"] == "prior"
    sha256 = gguf_sha256(served)
    assert not model_path(config.home, sha256).exists()
    # The answers are kept for `hybrid calibrate` and the evaluation script to reuse.
    assert load_record(config.home, sha256) is not None
    saved = read_progress(config.home, sha256)
    assert saved is not None and saved.state == "kept-prior"
    assert "difficulty(prior):" in reply.headers["x-hybrid-reason"]


def test_a_restarted_server_resumes_from_the_saved_answers(
    settings_for: Callable[..., Settings], served: Path
) -> None:
    config = settings(settings_for)
    first = GatedBackend(lambda item: False)
    calibrated(config, served, first)
    sha256 = gguf_sha256(served)
    path = progress_path(config.home, sha256)
    assert path.is_file()
    again = GatedBackend(lambda item: False)
    progress = restarted(config, served, again)["calibration"]["background"]
    assert again.count == 0  # every answer came from the saved progress
    assert progress["state"] == "kept-prior" and progress["done"] == len(CATEGORIES) * PER_CATEGORY


ON_BATTERY = PowerInfo(battery_percent=80.0, on_battery=True)


def background_state(client: TestClient, wanted: str) -> dict[str, Any]:
    """``/health``'s background calibration progress once it is in state ``wanted``."""
    for _ in range(TIMEOUT_S * 50):
        progress: dict[str, Any] | None = health(client)["calibration"]["background"]
        if progress is not None and progress["state"] == wanted:
            return progress
        threading.Event().wait(0.02)
    raise AssertionError(f"background calibration never reached {wanted!r}")


def test_on_battery_power_background_calibration_pauses_until_the_machine_is_plugged_in(
    settings_for: Callable[..., Settings], served: Path
) -> None:
    config = settings(settings_for, **{"probe.sample_interval_s": 0.02})
    power = FakePower(ON_BATTERY)
    backend = GatedBackend(lambda item: item.category in KNOWN)
    backend.release.set()
    runtime = UncalibratedFile(config, served, backend)
    runtime.loaded_event.set()
    app = scripted_app(config, runtime=runtime, probe=idle_probe(power))
    with TestClient(app) as client:
        paused = background_state(client, "paused")
        recorded = None
        for _ in range(TIMEOUT_S * 50):  # written off the event loop, just after
            recorded = read_progress(config.home, gguf_sha256(served))
            if recorded is not None and recorded.state == "paused":
                break
            threading.Event().wait(0.02)
        asked_while_paused = backend.count
        power.info = PowerInfo(battery_percent=80.0, on_battery=False)
        assert client.app.state.hybrid.background.finished.wait(TIMEOUT_S)  # type: ignore[attr-defined]
        done = health(client)["calibration"]["background"]

    assert asked_while_paused == 0
    # `hybrid models` reads the progress file: it says paused, and why.
    assert recorded is not None and recorded.state == "paused"
    assert (
        recorded.line() == f"paused: 0/{len(CATEGORIES) * PER_CATEGORY} items ({paused['message']})"
    )
    assert (paused["done"], paused["total"]) == (0, len(CATEGORIES) * PER_CATEGORY)
    assert paused["message"] == (
        "on battery power; resumes on AC power, or with local.background_on_battery"
    )
    assert done["state"] == "adopted", done["message"]
    assert done["done"] == len(CATEGORIES) * PER_CATEGORY


def test_background_calibration_may_run_on_battery_power(
    settings_for: Callable[..., Settings], served: Path
) -> None:
    config = settings(settings_for, **{"local.background_on_battery": True})
    backend = GatedBackend(lambda item: item.category in KNOWN)
    backend.release.set()
    runtime = UncalibratedFile(config, served, backend)
    runtime.loaded_event.set()
    app = scripted_app(config, runtime=runtime, probe=idle_probe(FakePower(ON_BATTERY)))
    with TestClient(app) as client:
        assert client.app.state.hybrid.background.finished.wait(TIMEOUT_S)  # type: ignore[attr-defined]
        done = health(client)["calibration"]["background"]
    assert done["state"] == "adopted", done["message"]
    assert backend.count > 0


class PreemptedOnce(GatedBackend):
    """A :class:`GatedBackend` whose third answer is stopped early once, as a client request
    that needs the model's slot stops it."""

    def __init__(self, knows: Callable[[CalibrationItem], bool]) -> None:
        super().__init__(knows)
        self.stopped: list[str] = []

    async def start(self, request: GenerationRequest, *, prepared: Any = None) -> Generation:
        if self.count == 2 and not self.stopped:
            self.count += 1
            self.stopped.append(request.messages[-1].content)
            raise PreemptedError("a client request needed the local model")
        return await super().start(request)


def test_an_answer_stopped_for_a_client_request_is_asked_again(
    settings_for: Callable[..., Settings], served: Path
) -> None:
    config = settings(settings_for)
    backend = PreemptedOnce(lambda item: item.category in KNOWN)
    done = calibrated(config, served, backend)["calibration"]["background"]

    items = calibration_set(0, per_category=PER_CATEGORY)
    assert done["state"] == "adopted", done["message"]
    # The stopped item was asked again, and graded on its whole answer.
    assert len(backend.stopped) == 1
    assert backend.count == sum(len(item.presentations) for item in items) + 1
    assert done["accuracy"] == pytest.approx(len(KNOWN) / len(CATEGORIES), abs=1e-4)


def test_background_calibration_can_be_switched_off(
    settings_for: Callable[..., Settings], served: Path
) -> None:
    config = settings(settings_for, **{"routing.calibration.background": False})
    backend = GatedBackend(lambda item: True)
    runtime = UncalibratedFile(config, served, backend)
    runtime.loaded_event.set()
    with TestClient(scripted_app(config, runtime=runtime)) as client:
        assert runtime.ready_event.wait(TIMEOUT_S)
        client.app.state.hybrid.calibration.look_up_now()  # type: ignore[attr-defined]
        body = health(client)
    assert body["calibration"]["state"] == "prior"
    assert body["calibration"]["background"] is None
    assert backend.count == 0


def test_a_backend_that_sees_the_prompts_gets_a_model_stage(
    settings_for: Callable[..., Settings], served: Path
) -> None:
    config = settings(settings_for)
    backend = SeeingBackend(lambda item: item.category in KNOWN)
    done = calibrated(config, served, backend)

    progress = done["calibration"]["background"]
    assert progress["state"] == "adopted", progress["message"]
    assert "with the model stage" in progress["message"]
    items = calibration_set(0, per_category=PER_CATEGORY)
    # One vector per item, of its first presentation: the request its answer then reuses.
    assert [request.messages for request in backend.embedded] == [
        item.presentations[0] for item in items
    ]
    sha256 = gguf_sha256(served)
    stored = find(config.home, sha256)
    assert stored is not None and stored.model.probe is not None
    assert stored.model.meta["calibrated_by"] == "background"
    # The vectors were the model's view of what it knows: the probe ranks by them.
    assert stored.model.meta["probe_cv_auroc"] > 0.9
    record = load_record(config.home, sha256)
    assert record is not None
    assert all(answer.embedding is not None for answer in record.answers)


class StoppedOnceSeeing(SeeingBackend):
    """A :class:`SeeingBackend` whose third prompt vector a client request stops early, once."""

    def __init__(self, knows: Callable[[CalibrationItem], bool]) -> None:
        super().__init__(knows)
        self.stopped = False

    async def prompt_embedding(self, request: GenerationRequest, *, prepared: Any = None) -> Any:
        if len(self.embedded) == 2 and not self.stopped:
            self.stopped = True
            self.embedded.append(request)
            raise PreemptedError("a client request needed the local model")
        return await super().prompt_embedding(request, prepared=prepared)


def test_answers_saved_without_vectors_get_them_on_resume_without_being_asked_again(
    settings_for: Callable[..., Settings], served: Path
) -> None:
    config = settings(settings_for)
    first = GatedBackend(lambda item: False)  # a backend without vectors
    calibrated(config, served, first)
    sha256 = gguf_sha256(served)
    before = read_progress(config.home, sha256)
    assert before is not None and before.state == "kept-prior"
    saved = load_record(config.home, sha256)
    assert saved is not None and all(answer.embedding is None for answer in saved.answers)

    again = StoppedOnceSeeing(lambda item: False)
    restarted(config, served, again)

    items = calibration_set(0, per_category=PER_CATEGORY)
    assert again.count == 0  # no answer asked again
    # Every vector read once, and the one a client request stopped read again.
    assert len(again.embedded) == len(items) + 1
    assert again.embedded[2].messages == again.embedded[3].messages
    record = load_record(config.home, sha256)
    assert record is not None
    assert all(answer.embedding is not None for answer in record.answers)


def test_progress_is_written_every_ten_answers_then_every_tenth_more(
    settings_for: Callable[..., Settings], served: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    written: list[int] = []
    save = BackgroundCalibration._save_progress

    def counting(self: BackgroundCalibration, sha256: str, items: Any, answers: Any) -> None:
        written.append(len(answers))
        save(self, sha256, items, answers)

    monkeypatch.setattr(BackgroundCalibration, "_save_progress", counting)
    config = settings(settings_for)
    backend = GatedBackend(lambda item: False)
    calibrated(config, served, backend)

    total = len(CATEGORIES) * PER_CATEGORY
    during = written[:-2]  # then once when the fit starts and once with its outcome
    assert written[-2:] == [total, total]
    assert during[:3] == [10, 20, 30]
    for before, after in itertools.pairwise([0, *during]):
        assert after - before == max(10, before // 10)
    # A crash loses at most the answers since the last write: 10, or a tenth of those written.
    assert total - during[-1] <= max(10, during[-1] // 10)


class BlindBackend(SeeingBackend):
    """A backend whose model gives no prompt vector (llama.cpp fails to read one)."""

    async def prompt_embedding(self, request: GenerationRequest, *, prepared: Any = None) -> Any:
        self.embedded.append(request)
        raise GenerationError("the local model failed to embed the prompt: no hidden state")


def test_a_model_that_gives_no_vectors_is_calibrated_without_the_model_stage(
    settings_for: Callable[..., Settings], served: Path
) -> None:
    config = settings(settings_for)
    backend = BlindBackend(lambda item: item.category in KNOWN)
    done = calibrated(config, served, backend)

    progress = done["calibration"]["background"]
    assert progress["state"] == "adopted", progress["message"]
    assert "model stage" not in progress["message"]
    assert len(backend.embedded) == 1  # asked once, then no more
    items = calibration_set(0, per_category=PER_CATEGORY)
    assert backend.count == sum(len(item.presentations) for item in items)
    stored = find(config.home, gguf_sha256(served))
    assert stored is not None and stored.model.probe is None
    assert done["calibration"]["model_stage"] is None
