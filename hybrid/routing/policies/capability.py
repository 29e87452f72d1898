"""Capability: what the local model cannot do (images, audio, tools) goes to the cloud."""

from __future__ import annotations

from hybrid.routing.policy import Policy, RouteContext, Verdict


class CapabilityPolicy(Policy):
    """Escalates a request that needs something the local model lacks.

    What the local model can do comes from its backend (``LocalStatus.supports``): ``tools``
    when its chat template renders tools; images and audio never.  A request's tools count as a
    need only when the model may call them (``tool_choice`` other than ``none``).
    """

    name = "capability"

    def evaluate(self, context: RouteContext) -> Verdict:
        """``cloud`` with ``capability:<need>`` naming the first missing capability."""
        missing = sorted(context.needs - context.local.supports)
        if missing:
            return self.verdict("cloud", f"capability:{missing[0]}")
        return self.abstain()
