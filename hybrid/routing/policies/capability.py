"""Capability: what the local model cannot do (images, audio, tools) goes to the cloud."""

from __future__ import annotations

from hybrid.routing.policy import Policy, RouteContext, Verdict


class CapabilityPolicy(Policy):
    """Escalates a request that needs something the local model lacks."""

    name = "capability"

    def evaluate(self, context: RouteContext) -> Verdict:
        """``cloud`` with ``capability:<need>`` naming the first missing capability."""
        missing = sorted(context.needs - context.local.supports)
        if missing:
            return self.verdict("cloud", f"capability:{missing[0]}")
        return self.abstain()
