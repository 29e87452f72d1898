"""The service: what answers requests, built once, started and closed as one.

:class:`Service` holds the long-lived parts that every request goes through after it has been
parsed: the local model's runtime, the dispatcher, the cloud providers, the ledger's writer,
the accountant, the event bus, the metrics, the learner and the background calibration.
:func:`hybrid.service.build.build_service` builds it; the HTTP server
(:func:`hybrid.api.app.create_app`) calls :meth:`Service.start` and :meth:`Service.close` from
its lifespan, and its routes hand requests to :func:`hybrid.service.answering.start_answer`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from hybrid.errors import LedgerUnavailableError
from hybrid.ledger.budget import Budget, SpendSeed
from hybrid.service.events import hardware_event
from hybrid.service.switching import ModelSwitching

if TYPE_CHECKING:
    from hybrid.cloud.provider import CloudProvider
    from hybrid.hardware.sampler import LiveSampler
    from hybrid.ledger.fleet_budget import FleetBudget
    from hybrid.ledger.writer import LedgerWriter
    from hybrid.local.runtime import LocalRuntime
    from hybrid.local.status import ModelChange
    from hybrid.routing.calibration.background import BackgroundCalibration
    from hybrid.routing.dispatcher import Dispatcher
    from hybrid.routing.lan import LanTier
    from hybrid.routing.policies.difficulty import CalibratedModel
    from hybrid.service.accounting import Accountant
    from hybrid.service.events import EventBus
    from hybrid.service.learning import Learner
    from hybrid.service.metrics import Metrics
    from hybrid.service.providers import ProviderPool
    from hybrid.service.refitting import TrafficRefitter
    from hybrid.settings import Settings


@dataclass
class _Running:
    """The tasks :meth:`Service.start` started, for :meth:`Service.close` to end."""

    loading: asyncio.Task[None] | None = None
    ticking: asyncio.Task[None] | None = None
    calibrating: asyncio.Task[None] | None = None
    idling: asyncio.Task[None] | None = None
    lan: asyncio.Task[None] | None = None
    refitting: asyncio.Task[None] | None = None


@dataclass(frozen=True, eq=False)
class Service:
    """hybrid's long-lived parts, built by :func:`~hybrid.service.build.build_service`.

    Attributes:
        settings: The effective settings.
        runtime: The local model's runtime (loaded by :meth:`start`).
        dispatcher: Decides and starts every answer.
        pool: The cloud providers and the HTTP clients they own.
        sampler: The live hardware sampler (the capacity policy's load, ``hardware`` events).
        accountant: Writes each request's ledger record, tells the bus and the metrics.
        ledger: The ledger's writer.
        bus: The live event stream.
        metrics: The Prometheus metrics.
        calibration: The difficulty model for the served file.
        learner: Keeps learning signals and runs shadow comparisons.
        background: Calibrates a model that has no calibration, when enabled.
        refitter: Refits the difficulty model from labelled traffic while serving, when
            enabled (``routing.learn.refit_after``).
        lan: The team's LAN servers, when any is configured.
        fleet_budget: The budget shared with the daemons of a shared ledger (``ledger.url``);
            None keeps this daemon's budget in memory.
    """

    settings: Settings
    runtime: LocalRuntime
    dispatcher: Dispatcher
    pool: ProviderPool
    sampler: LiveSampler
    accountant: Accountant
    ledger: LedgerWriter
    bus: EventBus
    metrics: Metrics
    calibration: CalibratedModel
    learner: Learner
    background: BackgroundCalibration | None = None
    refitter: TrafficRefitter | None = None
    lan: LanTier | None = None
    fleet_budget: FleetBudget | None = None
    _running: _Running = field(default_factory=_Running, init=False, repr=False)

    @property
    def providers(self) -> Mapping[str, CloudProvider]:
        """The cloud providers by name (every configured one, with or without its key)."""
        return self.pool.providers

    async def start(self) -> None:
        """Open the ledger, start sampling, and start loading the local model.

        Returns once the ledger is open and the budget seeded from it (on a shared ledger: the
        fleet's budget read, and what an earlier run of this instance held counted); the model
        loads in the background (requests meanwhile get ``model_not_ready`` or go to the
        cloud).  Also starts the ``hardware`` events and, when enabled, the background
        calibration and the refits from labelled traffic.

        Raises:
            LedgerError: The ledger or its journal cannot be opened, or a shared budget's
                database refuses the login or has a newer schema (a shared ledger's database
                that is unavailable is not an error: see
                :class:`~hybrid.ledger.writer.LedgerWriter` and
                :class:`~hybrid.ledger.fleet_budget.FleetBudget`).
        """
        self.ledger.start()
        if self.fleet_budget is not None:
            loop = asyncio.get_running_loop()
            await self.fleet_budget.start(lambda: _call_soon(loop, self._budget_changed))
            self.accountant.budget = self.fleet_budget
        else:
            self.accountant.budget = Budget(self.settings.budget, await self._spend_seed())
        self.metrics.budget(self.accountant.budget)
        self.sampler.start()
        running = self._running
        running.loading = asyncio.create_task(self.runtime.load())
        # Look the difficulty model up as soon as the model is loaded, not on the first request.
        running.loading.add_done_callback(lambda _: self.calibration())
        self.runtime.subscribe(self._model_changed)
        # Unloads the model after local.keep_alive idle seconds (returns at once when off).
        running.idling = asyncio.create_task(self.runtime.keep_alive())
        running.ticking = asyncio.create_task(
            self.publish_hardware(self.settings.probe.sample_interval_s)
        )
        if self.lan is not None:
            # Checks each LAN server, then keeps their health and load fresh.
            running.lan = asyncio.create_task(self.lan.pool.start())
        if self.background is not None:
            # Calibrates a model that has none, on the queue's low-priority lane.
            running.calibrating = asyncio.create_task(self.background.run())
        if self.refitter is not None:
            running.refitting = asyncio.create_task(self.refitter.run())

    async def close(self) -> None:
        """Stop what :meth:`start` started and free everything, in reverse order.

        Call it once every answer has ended (the HTTP server's graceful drain): the ledger is
        closed last, committing every record still queued.  Safe without :meth:`start`.
        """
        running = self._running
        for task in (running.ticking, running.calibrating, running.idling, running.refitting):
            if task is not None:
                task.cancel()
        await self.runtime.close()
        # A load still running finishes on its thread and frees what it loaded.
        tasks = [
            t
            for t in (
                running.loading,
                running.ticking,
                running.calibrating,
                running.idling,
                running.refitting,
            )
            if t
        ]
        await asyncio.gather(*tasks, return_exceptions=True)
        running.loading = running.ticking = running.calibrating = running.idling = None
        running.refitting = None
        await self.learner.aclose()  # shadow calls still running, before the providers
        await self.pool.aclose()
        if self.lan is not None:
            if running.lan is not None:
                running.lan.cancel()
                await asyncio.gather(running.lan, return_exceptions=True)
                running.lan = None
            await self.lan.pool.aclose()
        self.sampler.stop()
        if self.fleet_budget is not None:
            # Every response has ended, so every settlement is queued: write them.
            await asyncio.to_thread(self.fleet_budget.close)
        # Last: every response has ended, so every record is queued; close commits them.
        self.ledger.close()

    async def _spend_seed(self) -> SpendSeed:
        """Today's and this month's spend, from the ledger."""
        try:
            return await self.ledger.read(lambda store: SpendSeed.from_store(store, time.time()))
        except LedgerUnavailableError as exc:
            # A shared ledger that is down: serve, counting the spend this daemon journaled.
            logging.getLogger(__name__).warning("%s; the budget counts journaled spend only", exc)
            return SpendSeed.from_store(self.ledger.journaled, time.time())

    def _budget_changed(self) -> None:
        """The fleet's budget moved (another daemon spent, the database went or came back):
        tell the event stream and the metrics."""
        budget = self.accountant.budget
        self.bus.publish("budget", budget.to_dict())
        self.metrics.budget(budget)

    @property
    def switching(self) -> ModelSwitching:
        """Switches the local model by name (``POST /v1/hybrid/model``)."""
        return ModelSwitching(self.settings, self.runtime)

    def _model_changed(self, change: ModelChange) -> None:
        """Tell the event stream, and point background calibration at the model served now:
        stopped while no model is loaded, started over for a switched-in or reloaded one."""
        self.bus.publish("model", {"change": change.kind, **change.status.to_json()})
        if change.kind in ("switched", "reloaded"):
            self.calibration()  # look the new file's calibration up now, not on a request
        if self.background is None:
            return
        running = self._running
        if change.kind in ("unloaded", "switched", "reloaded", "failed"):
            stopped = running.calibrating
            if stopped is not None:
                stopped.cancel()
            running.calibrating = None
            if change.kind in ("switched", "reloaded"):
                running.calibrating = asyncio.create_task(self._calibrate_after(stopped))

    async def _calibrate_after(self, stopped: asyncio.Task[None] | None) -> None:
        """Background calibration of the model served now, once the previous run has ended."""
        assert self.background is not None
        if stopped is not None:
            await asyncio.gather(stopped, return_exceptions=True)
        self.background.reset()
        await self.background.run()

    async def publish_hardware(self, interval_s: float) -> None:
        """Send a ``hardware`` event (docs/events.md) every ``interval_s`` until cancelled."""
        while True:
            await asyncio.sleep(interval_s)
            event = hardware_event(self.sampler.latest_or_none(), self.runtime)
            self.metrics.hardware(event)
            self.bus.publish("hardware", event)


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
    """Run ``callback`` on the event loop, from any thread; nothing once the loop is closed."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(callback)
