"""Building the router's policy chain from the ``[routing]`` settings."""

from __future__ import annotations

from collections.abc import Callable

from hybrid.routing.difficulty.labelled import LabelledScores
from hybrid.routing.difficulty.model import DifficultyModel
from hybrid.routing.policies.capability import CapabilityPolicy
from hybrid.routing.policies.capacity import CapacityPolicy
from hybrid.routing.policies.difficulty import DifficultyPolicy
from hybrid.routing.policies.length import LengthPolicy
from hybrid.routing.policies.privacy import PrivacyPolicy
from hybrid.routing.policy import Policy, Router
from hybrid.routing.privacy import PrivacyScanner
from hybrid.settings.routing import RoutingSettings


def build_router(
    settings: RoutingSettings,
    *,
    difficulty: Callable[[], DifficultyModel | None] | None = None,
    labelled: LabelledScores | None = None,
) -> Router:
    """The enabled policies in chain order: privacy, capability, length, capacity, difficulty.

    Args:
        settings: The ``[routing]`` settings.
        difficulty: Returns the difficulty model calibrated for the served model (None: the
            difficulty policy is left out).
        labelled: The served model's labelled requests, loaded from the ledger while serving
            (None: scores are not read beside them).

    Returns:
        The router.

    Raises:
        ConfigError: A privacy pattern or detector name is invalid.
    """
    policies: list[Policy] = []
    privacy = settings.privacy
    if privacy.enabled:
        scanner = PrivacyScanner(
            detectors=privacy.detectors, user_patterns=privacy.patterns, paths=privacy.paths
        )
        policies.append(PrivacyPolicy(scanner))
    if settings.capability.enabled:
        policies.append(CapabilityPolicy())
    if settings.length.enabled:
        policies.append(LengthPolicy())
    if settings.capacity.enabled:
        policies.append(CapacityPolicy(settings.capacity))
    if settings.difficulty.enabled and difficulty is not None:
        policies.append(
            DifficultyPolicy(
                difficulty,
                threshold=settings.difficulty.threshold,
                model_stage=settings.difficulty.model_stage,
                neighbours=settings.difficulty.neighbours,
                labelled=labelled,
                yes_no=settings.difficulty.yes_no,
            )
        )
    return Router(policies)
