"""What the routes share: settings, the local model, the sampler, the ledger and the events."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastapi import Request

if TYPE_CHECKING:
    from collections.abc import Mapping

    from hybrid.api.accounting import Accountant
    from hybrid.api.events import EventBus
    from hybrid.api.learning import Learner
    from hybrid.api.metrics import Metrics
    from hybrid.cloud.provider import CloudProvider
    from hybrid.hardware.sampler import LiveSampler
    from hybrid.ledger.writer import LedgerWriter
    from hybrid.local.runtime import LocalRuntime
    from hybrid.routing.calibration.background import BackgroundCalibration
    from hybrid.routing.dispatcher import Dispatcher
    from hybrid.routing.policies.difficulty import CalibratedModel
    from hybrid.settings import Settings


@dataclass(frozen=True)
class AppState:
    """The application's long-lived parts, built by ``create_app`` and its lifespan."""

    settings: Settings
    runtime: LocalRuntime
    dispatcher: Dispatcher
    providers: Mapping[str, CloudProvider]
    sampler: LiveSampler | None
    accountant: Accountant
    ledger: LedgerWriter
    bus: EventBus
    metrics: Metrics
    calibration: CalibratedModel | None = None
    learner: Learner | None = None
    background: BackgroundCalibration | None = None


def app_state(request: Request) -> AppState:
    """The state of the application serving ``request``."""
    state: AppState = request.app.state.hybrid
    return state
