"""Background calibration follows the served model: stopped while the model is unloaded,
started over for a model switched in or reloaded."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

from hardware_fakes import idle_probe
from switch_fakes import FakeOpener, fake_runtime

from hybrid.local.status import ModelChange, ModelStatus
from hybrid.service.build import build_service


class CountingCalibration:
    """Stands in for BackgroundCalibration: counts resets, runs until cancelled."""

    def __init__(self) -> None:
        self.resets = 0
        self.runs = 0
        self.cancelled = 0

    def reset(self) -> None:
        self.resets += 1

    async def run(self) -> None:
        self.runs += 1
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise


def test_a_switch_restarts_background_calibration_and_an_unload_stops_it(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        runtime, settings = fake_runtime(tmp_path, FakeOpener())
        service = build_service(settings, runtime=runtime, probe=idle_probe())
        fake = CountingCalibration()
        service = dataclasses.replace(service, background=fake)  # type: ignore[arg-type]
        status = ModelStatus("ready", "second-model", None)
        running = service._running

        service._model_changed(ModelChange("switched", status))
        await asyncio.sleep(0)  # let the new run start
        await asyncio.sleep(0)
        assert (fake.resets, fake.runs) == (1, 1)
        first = running.calibrating
        assert first is not None

        service._model_changed(ModelChange("unloaded", status))
        assert running.calibrating is None
        await asyncio.gather(first, return_exceptions=True)
        assert fake.cancelled == 1

        service._model_changed(ModelChange("reloaded", status))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert (fake.resets, fake.runs) == (2, 2)
        assert running.calibrating is not None
        running.calibrating.cancel()
        await asyncio.gather(running.calibrating, return_exceptions=True)
        await service.pool.aclose()

    asyncio.run(scenario())
