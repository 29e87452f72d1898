"""The application factory: ``create_app(settings)`` and its lifespan.

The lifespan starts the hardware sampler and the background load of the local model, and on
shutdown frees them in reverse order.  Uvicorn owns signals and the graceful drain of in-flight
requests; by the time the lifespan exits, every response has finished or been cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from fastapi import FastAPI

from hybrid import __version__
from hybrid.api.errors import install_error_handlers
from hybrid.api.middleware import BodyLimitMiddleware, HybridHeadersMiddleware
from hybrid.api.routes import chat, completions, messages, meta
from hybrid.api.state import AppState
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


def create_app(
    settings: Settings,
    *,
    runtime: LocalRuntime | None = None,
    probe: HardwareProbe | None = None,
) -> FastAPI:
    """Build the hybrid HTTP application.

    Args:
        settings: The effective settings.
        runtime: The local model's runtime; built from the settings when omitted.
        probe: The hardware probe; the real one when omitted.

    Returns:
        The ASGI application, ready for uvicorn.
    """
    from hybrid.hardware.probe import probe_for
    from hybrid.hardware.sampler import LiveSampler
    from hybrid.local.runtime import LocalRuntime

    hardware = probe if probe is not None else probe_for(settings.home)
    local = runtime if runtime is not None else LocalRuntime.for_settings(settings, hardware)
    sampler: LiveSampler = LiveSampler(hardware.sample, interval_s=settings.probe.sample_interval_s)
    names = ModelNames.from_settings(settings.cloud)
    calibrated = CalibratedModel(settings.home, lambda: local.loaded_path)
    pool = build_providers(settings.cloud)
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
    )
    state = AppState(
        settings=settings,
        runtime=local,
        dispatcher=dispatcher,
        providers=pool.providers,
        sampler=sampler,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        sampler.start()
        loading = asyncio.create_task(local.load())
        # Look the difficulty model up as soon as the model is loaded, not on the first request.
        loading.add_done_callback(lambda _: calibrated())
        try:
            yield
        finally:
            await local.close()
            # A load still running finishes on its thread and frees what it loaded.
            await asyncio.gather(loading, return_exceptions=True)
            await pool.aclose()
            sampler.stop()

    app = FastAPI(
        title="hybrid",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.hybrid = state
    install_error_handlers(app)
    app.include_router(chat.router)
    app.include_router(completions.router)
    app.include_router(messages.router)
    app.include_router(meta.router)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.server.max_body_bytes)
    app.add_middleware(HybridHeadersMiddleware, model_id=lambda: local.model_id)
    return app
