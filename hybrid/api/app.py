"""The application factory: ``create_app(settings)`` and its lifespan.

``create_app`` builds the service (:func:`hybrid.service.build.build_service`) and adds HTTP to
it: the routes, the middleware and the error handlers.  The lifespan starts the service (the
ledger, the hardware sampler, the background load of the local model) and on shutdown closes it.
Uvicorn owns signals and the graceful drain of in-flight requests; by the time the lifespan
exits, every response has finished or been cancelled.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

from fastapi import FastAPI

from hybrid import __version__
from hybrid.api.browsers import AllowedHosts, AllowedOrigins
from hybrid.api.errors import install_error_handlers
from hybrid.api.middleware import HybridMiddleware
from hybrid.api.openapi import document_api
from hybrid.api.routes import admin, chat, completions, feedback, messages, meta, model
from hybrid.service.build import build_service

if TYPE_CHECKING:
    from hybrid.hardware.probe import HardwareProbe
    from hybrid.local.runtime import LocalRuntime
    from hybrid.settings import Settings


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
    service = build_service(
        settings,
        runtime=runtime,
        probe=probe,
        gpu_energy=gpu_energy,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await service.start()
        try:
            yield
        finally:
            await service.close()

    app = FastAPI(
        title="hybrid",
        version=__version__,
        lifespan=lifespan,
        # Swagger UI on /docs, over /openapi.json (its script and styles come from a CDN).
        redoc_url=None,
    )
    app.state.hybrid = service
    install_error_handlers(app)
    routers = [r.router for r in (chat, completions, messages, meta, admin, feedback, model)]
    for router in routers:
        app.include_router(router)
    document_api(app, routers)
    app.add_middleware(
        HybridMiddleware,
        model_id=lambda: service.runtime.model_id,
        max_body_bytes=settings.server.max_body_bytes,
        api_key=settings.server.api_key,
        allowed_hosts=AllowedHosts.of(settings.server.allowed_hosts, settings.server.host),
        allowed_origins=AllowedOrigins.of(settings.server.allowed_origins),
        body_timeout_s=settings.server.body_timeout_s,
    )
    return app
