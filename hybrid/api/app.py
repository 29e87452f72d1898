"""The application factory: ``create_app(settings)`` and its lifespan.

The lifespan starts the hardware sampler and the background load of the local model, and on
shutdown frees them in reverse order.  Uvicorn owns signals and the graceful drain of in-flight
requests; by the time the lifespan exits, every response has finished or been cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

from fastapi import FastAPI

from hybrid import __version__
from hybrid.api.accounting import Accountant
from hybrid.api.anthropic_schema import MessagesRequest
from hybrid.api.browsers import AllowedHosts, AllowedOrigins
from hybrid.api.direct import DirectRoute, DirectRoutes
from hybrid.api.errors import install_error_handlers
from hybrid.api.events import EventBus, hardware_event
from hybrid.api.learning import build_learner
from hybrid.api.metrics import Metrics
from hybrid.api.middleware import HybridMiddleware
from hybrid.api.openapi import document_errors
from hybrid.api.routes import admin, chat, completions, feedback, messages, meta
from hybrid.api.schema import ChatCompletionRequest, CompletionRequest
from hybrid.api.state import AppState
from hybrid.ledger.budget import Budget, SpendSeed
from hybrid.ledger.costing import Costing
from hybrid.ledger.prices import PriceTable
from hybrid.ledger.writer import LedgerWriter
from hybrid.routing.calibration.background import BackgroundCalibration
from hybrid.routing.chain import build_router
from hybrid.routing.dispatcher import Dispatcher
from hybrid.routing.names import ModelNames
from hybrid.routing.policies.difficulty import CalibratedModel
from hybrid.routing.providers import build_providers

if TYPE_CHECKING:
    from hybrid.hardware.probe import HardwareProbe
    from hybrid.hardware.sampler import LiveSampler
    from hybrid.local.runtime import LocalRuntime
    from hybrid.settings import Settings


async def publish_hardware(state: AppState, interval_s: float) -> None:
    """Send a ``hardware`` event (docs/events.md) every ``interval_s``, for as long as it runs."""
    while True:
        await asyncio.sleep(interval_s)
        sample = state.sampler.latest_or_none() if state.sampler is not None else None
        event = hardware_event(sample, state.runtime)
        state.metrics.hardware(event)
        state.bus.publish("hardware", event)


def create_app(
    settings: Settings,
    *,
    runtime: LocalRuntime | None = None,
    probe: HardwareProbe | None = None,
    gpu_energy: Callable[[], float | None] | None = None,
) -> FastAPI:
    """Build the hybrid HTTP application.

    Args:
        settings: The effective settings.
        runtime: The local model's runtime; built from the settings when omitted.
        probe: The hardware probe; the real one when omitted.
        gpu_energy: Reads the GPUs' energy counter in joules (NVML's when omitted).

    Returns:
        The ASGI application, ready for uvicorn.
    """
    from hybrid.hardware.gpu import PynvmlSource
    from hybrid.hardware.probe import probe_for
    from hybrid.hardware.sampler import LiveSampler
    from hybrid.local.runtime import LocalRuntime

    hardware = probe if probe is not None else probe_for(settings.home)
    local = runtime if runtime is not None else LocalRuntime.for_settings(settings, hardware)
    sampler: LiveSampler = LiveSampler(hardware.sample, interval_s=settings.probe.sample_interval_s)
    names = ModelNames.from_settings(settings.cloud)
    calibrated = CalibratedModel(settings.home, lambda: local.loaded_path)
    background = (
        BackgroundCalibration(
            home=settings.home,
            calibration=calibrated,
            backend=local.background_backend,
            model_name=lambda: local.model_id,
            per_category=settings.routing.calibration.per_category,
        )
        if settings.routing.calibration.background and settings.routing.difficulty.enabled
        else None
    )
    pool = build_providers(settings.cloud)
    bus = EventBus()
    metrics = Metrics()
    ledger = LedgerWriter(
        settings.ledger.resolved_path(settings.home),
        settings.ledger.retention_days,
        keep_signals=settings.routing.learn.keep_signals,
    )
    accountant = Accountant(
        ledger,
        Costing(
            PriceTable.shipped(settings.pricing.overrides),
            settings.energy,
            reference_model=settings.pricing.reference_model,
            default_model=names.default_target.qualified if names.default_target else None,
        ),
        Budget(settings.budget, SpendSeed(at=time.time())),
        bus,
        metrics,
        count_tokens=local.count_tokens,
        gpu_energy=gpu_energy or PynvmlSource().energy_joules,
        gpu_offloaded=lambda: local.loaded is not None and local.loaded.plan.n_gpu_layers > 0,
    )
    dispatcher = Dispatcher(
        local,
        pool.providers,
        names,
        router=build_router(
            settings.routing,
            difficulty=calibrated,
        ),
        failover=names.targets(settings.cloud.failover, setting="cloud.failover"),
        local_fallback=settings.cloud.local_fallback,
        private_to_cloud=settings.routing.privacy.allow_cloud,
        load=sampler.latest_or_none,
        cascade_below=(
            settings.routing.cascade.min_confidence if settings.routing.cascade.enabled else None
        ),
        budget=lambda provider: accountant.budget.capped(provider),
    )
    state = AppState(
        settings=settings,
        runtime=local,
        dispatcher=dispatcher,
        providers=pool.providers,
        sampler=sampler,
        accountant=accountant,
        ledger=ledger,
        bus=bus,
        metrics=metrics,
        calibration=calibrated,
        background=background,
        learner=build_learner(
            settings.routing.learn,
            ledger=ledger,
            accountant=accountant,
            calibrated=calibrated,
            providers=pool.providers,
            names=names,
        ),
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        ledger.start()
        seed = await ledger.read(lambda store: SpendSeed.from_store(store, time.time()))
        accountant.budget = Budget(settings.budget, seed)
        metrics.budget(accountant.budget)
        sampler.start()
        loading = asyncio.create_task(local.load())
        # Look the difficulty model up as soon as the model is loaded, not on the first request.
        loading.add_done_callback(lambda _: calibrated())
        ticking = asyncio.create_task(publish_hardware(state, settings.probe.sample_interval_s))
        # Calibrates a model that has none, on the queue's low-priority lane.
        calibrating = asyncio.create_task(background.run()) if background else None
        try:
            yield
        finally:
            ticking.cancel()
            if calibrating is not None:
                calibrating.cancel()
            await local.close()
            # A load still running finishes on its thread and frees what it loaded.
            await asyncio.gather(
                loading, ticking, *filter(None, [calibrating]), return_exceptions=True
            )
            if state.learner is not None:
                await state.learner.aclose()  # shadow calls still running, before the providers
            await pool.aclose()
            sampler.stop()
            # Last: every response has ended, so every record is queued; close commits them.
            ledger.close()

    app = FastAPI(
        title="hybrid",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.hybrid = state
    install_error_handlers(app)
    document_errors(app)
    app.include_router(chat.router)
    app.include_router(completions.router)
    app.include_router(messages.router)
    app.include_router(meta.router)
    app.include_router(admin.router)
    app.include_router(feedback.router)
    # Inside the middleware below (which has read the body and checked the key).
    app.add_middleware(
        DirectRoutes,
        routes={
            "/v1/chat/completions": DirectRoute(ChatCompletionRequest, chat.chat_completions),
            "/v1/completions": DirectRoute(CompletionRequest, completions.completions),
            "/v1/messages": DirectRoute(MessagesRequest, messages.messages),
        },
    )
    app.add_middleware(
        HybridMiddleware,
        model_id=lambda: local.model_id,
        max_body_bytes=settings.server.max_body_bytes,
        api_key=settings.server.api_key,
        allowed_hosts=AllowedHosts.of(settings.server.allowed_hosts, settings.server.host),
        allowed_origins=AllowedOrigins.of(settings.server.allowed_origins),
        body_timeout_s=settings.server.body_timeout_s,
    )
    return app
