"""What the routes share: the settings, the local model and the live hardware sampler."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastapi import Request

if TYPE_CHECKING:
    from collections.abc import Mapping

    from hybrid.cloud.provider import CloudProvider
    from hybrid.hardware.sampler import LiveSampler
    from hybrid.local.runtime import LocalRuntime
    from hybrid.routing.dispatcher import Dispatcher
    from hybrid.settings import Settings


@dataclass(frozen=True)
class AppState:
    """The application's long-lived parts, built by ``create_app`` and its lifespan."""

    settings: Settings
    runtime: LocalRuntime
    dispatcher: Dispatcher
    providers: Mapping[str, CloudProvider]
    sampler: LiveSampler | None


def app_state(request: Request) -> AppState:
    """The state of the application serving ``request``."""
    state: AppState = request.app.state.hybrid
    return state
