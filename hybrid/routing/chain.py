"""Building the router's policy chain from the ``[routing]`` settings."""

from __future__ import annotations

from hybrid.routing.policies.capability import CapabilityPolicy
from hybrid.routing.policies.capacity import CapacityPolicy
from hybrid.routing.policies.length import LengthPolicy
from hybrid.routing.policy import Policy, Router
from hybrid.settings_routing import RoutingSettings


def build_router(settings: RoutingSettings) -> Router:
    """The enabled policies in chain order: capability, length, capacity.

    Args:
        settings: The ``[routing]`` settings.

    Returns:
        The router.
    """
    policies: list[Policy] = []
    if settings.capability.enabled:
        policies.append(CapabilityPolicy())
    if settings.length.enabled:
        policies.append(LengthPolicy())
    if settings.capacity.enabled:
        policies.append(CapacityPolicy(settings.capacity))
    return Router(policies)
