"""Capacity: escalate when this machine cannot answer in time right now.

The predicted local completion time is the queue's expected wait (none while a slot is free),
plus the prompt at the prefill speed and the expected output at the decode speed *measured on
this machine* for one answer in the batch the request would join: the local model decodes up
to ``slots`` answers together, so a newcomer beside two running answers decodes in a batch of
three, each stream slower than alone but none waiting for the others to end.  Above the latency
target the request goes to the cloud.  Load from other programs, memory pressure and a low
battery escalate too, as does a local model that is loading or down.  A model unloaded while
idle waits its reload first: that time is part of its prediction (``capacity:unloaded:eta_…``).
"""

from __future__ import annotations

from hybrid.routing.policy import Policy, RouteContext, Verdict
from hybrid.settings.routing import CapacitySettings

# Until a speed has been measured, assume these (the embedded model on two cores decodes about
# 60 tok/s and reads prompts about ten times faster).  In a batch of n, each stream is assumed
# to get a 1/n share of the single-stream rate: the batch gains nothing until measured.
DEFAULT_DECODE_TOKENS_PER_S = 30.0
DEFAULT_PREFILL_TOKENS_PER_S = 300.0


class CapacityPolicy(Policy):
    """Escalates when the local model is down, the machine is busy, or the answer would be late.

    Args:
        settings: The thresholds.
    """

    name = "capacity"

    def __init__(self, settings: CapacitySettings) -> None:
        self._settings = settings

    def predicted_seconds(self, context: RouteContext) -> float:
        """Queue wait + prefill + decode, at the speeds measured on this machine.

        Args:
            context: The request and the local model's state.

        Returns:
            Seconds until the local answer would end: the queue's expected wait, the prompt
            at the prefill speed, and the expected output at the per-stream decode speed of
            the batch the request would join
            (:attr:`~hybrid.routing.policy.LocalStatus.batch_size`).
        """
        local = context.local
        decode = local.stream_decode_tokens_per_s
        if decode is None:
            decode = (local.decode_tokens_per_s or DEFAULT_DECODE_TOKENS_PER_S) / local.batch_size
        prefill = local.prefill_tokens_per_s or DEFAULT_PREFILL_TOKENS_PER_S
        prompt = context.prompt_tokens
        if prompt is None:  # not tokenized (the model is unloaded): four characters a token
            prompt = len(context.text) // 4
        output = context.max_tokens if context.expected_tokens is None else context.expected_tokens
        return local.expected_wait_s + prompt / prefill + output / decode

    def evaluate(self, context: RouteContext) -> Verdict:
        """``cloud`` with the first reason the machine cannot take the request now."""
        settings = self._settings
        state = context.local.state
        if state not in ("ready", "unloaded"):
            return self.verdict("cloud", f"capacity:local_{state}")
        # An unloaded model's wait is its reload: capacity:unloaded:eta_12.3s>8s.
        code = "capacity:unloaded:eta" if state == "unloaded" else "capacity:eta"
        load = context.load
        if load is not None:
            other = load.cpu_percent - (load.process_cpu_percent or 0.0)
            if other > settings.max_other_cpu_percent:
                return self.verdict(
                    "cloud", f"capacity:cpu_{other:.0f}%>{settings.max_other_cpu_percent:.0f}%"
                )
            if load.memory_percent > settings.max_memory_percent:
                return self.verdict(
                    "cloud",
                    f"capacity:memory_{load.memory_percent:.0f}%>{settings.max_memory_percent:.0f}%",
                )
            if (
                load.on_battery
                and load.battery_percent is not None
                and load.battery_percent < settings.min_battery_percent
            ):
                return self.verdict(
                    "cloud",
                    f"capacity:battery_{load.battery_percent:.0f}%<{settings.min_battery_percent:.0f}%",
                )
        eta = self.predicted_seconds(context)
        if eta > settings.latency_target_s:
            return self.verdict("cloud", f"{code}_{eta:.1f}s>{settings.latency_target_s:g}s")
        return self.abstain(f"{code}_{eta:.1f}s")
