"""Length: a prompt and requested output that do not fit the local context go to the cloud."""

from __future__ import annotations

from hybrid.routing.policy import Policy, RouteContext, Verdict


class LengthPolicy(Policy):
    """Compares prompt tokens (the local tokenizer's count) plus ``max_tokens`` with the context."""

    name = "length"

    def evaluate(self, context: RouteContext) -> Verdict:
        """``cloud`` with ``length:<needed>><context>`` when the request cannot fit locally."""
        capacity = context.local.context_length
        if capacity is None or context.prompt_tokens is None:
            return self.abstain("length:unknown")
        needed = context.prompt_tokens + context.max_tokens
        if needed > capacity:
            return self.verdict("cloud", f"length:{needed}>{capacity}")
        return self.abstain(f"length:{needed}<={capacity}")
