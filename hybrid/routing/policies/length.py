"""Length: a prompt and requested output that do not fit the local context go to the cloud."""

from __future__ import annotations

from hybrid.routing.policy import Policy, RouteContext, Verdict


class LengthPolicy(Policy):
    """Compares prompt tokens (the local tokenizer's count) plus ``max_tokens`` with the context.

    A prompt too long for the context by its size alone is not tokenized: its count is the
    lower bound its bytes give (:meth:`hybrid.local.backend.LocalBackend.prepare`), so that
    ``length:83340>8192`` still says by how much, at least, it does not fit.
    """

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
