"""Each policy's decision changes with its input: capabilities, lengths, live load."""

from __future__ import annotations

import pytest

from hybrid.hardware.snapshot import LiveSample
from hybrid.routing.chain import build_router
from hybrid.routing.policies.capability import CapabilityPolicy
from hybrid.routing.policies.capacity import CapacityPolicy
from hybrid.routing.policies.length import LengthPolicy
from hybrid.routing.policy import LocalStatus, Policy, RouteContext, Router, Verdict
from hybrid.settings.routing import CapacitySettings, RoutingSettings

READY = LocalStatus(
    "ready",
    context_length=8192,
    queue_depth=0,
    expected_wait_s=0.0,
    decode_tokens_per_s=50.0,
    prefill_tokens_per_s=500.0,
)


def load(
    cpu: float = 10.0,
    own: float = 0.0,
    memory: float = 40.0,
    battery: float | None = None,
    on_battery: bool | None = None,
) -> LiveSample:
    return LiveSample(
        taken_at=0.0,
        cpu_percent=cpu,
        memory_available_bytes=8 << 30,
        memory_percent=memory,
        gpu_utilization_percent=None,
        battery_percent=battery,
        on_battery=on_battery,
        process_cpu_percent=own,
    )


def context(
    prompt_tokens: int | None = 100,
    max_tokens: int = 200,
    local: LocalStatus = READY,
    needs: frozenset[str] = frozenset(),
    sample: LiveSample | None = None,
) -> RouteContext:
    return RouteContext(
        messages=(),
        text="hi",
        prompt_tokens=prompt_tokens,
        max_tokens=max_tokens,
        local=local,
        needs=needs,
        load=sample,
    )


def test_length_escalates_only_what_does_not_fit() -> None:
    policy = LengthPolicy()
    assert policy.evaluate(context(8000, 192)).outcome == "pass"
    verdict = policy.evaluate(context(9000, 312))
    assert (verdict.outcome, verdict.reason) == ("cloud", "length:9312>8192")
    assert policy.evaluate(context(None)).outcome == "pass"


def test_capability_escalates_what_the_local_model_cannot_do() -> None:
    policy = CapabilityPolicy()
    assert policy.evaluate(context()).outcome == "pass"
    verdict = policy.evaluate(context(needs=frozenset({"images"})))
    assert (verdict.outcome, verdict.reason) == ("cloud", "capability:images")
    with_tools = LocalStatus("ready", 8192, supports=frozenset({"tools"}))
    assert policy.evaluate(context(local=with_tools, needs=frozenset({"tools"}))).outcome == "pass"


@pytest.mark.parametrize(
    ("sample", "local", "reason"),
    [
        (load(cpu=97, own=5), READY, "capacity:cpu_92%>85%"),
        (load(memory=98), READY, "capacity:memory_98%>95%"),
        (load(battery=12, on_battery=True), READY, "capacity:battery_12%<20%"),
        (None, LocalStatus("loading"), "capacity:local_loading"),
        (None, LocalStatus("failed"), "capacity:local_failed"),
    ],
)
def test_capacity_escalates_a_busy_or_absent_machine(
    sample: LiveSample | None, local: LocalStatus, reason: str
) -> None:
    verdict = CapacityPolicy(CapacitySettings()).evaluate(context(sample=sample, local=local))
    assert (verdict.outcome, verdict.reason) == ("cloud", reason)


def test_capacity_ignores_load_that_is_hybrids_own_and_a_charged_battery() -> None:
    policy = CapacityPolicy(CapacitySettings())
    assert policy.evaluate(context(sample=load(cpu=97, own=90))).outcome == "pass"
    assert policy.evaluate(context(sample=load(battery=12, on_battery=False))).outcome == "pass"


def test_capacity_predicts_completion_time_from_measured_speeds() -> None:
    policy = CapacityPolicy(CapacitySettings(latency_target_s=8.0))
    # 2 s queue + 1000 tokens at 500/s + 200 tokens at 50/s = 8 s: on the target, not above.
    busy = LocalStatus(
        "ready",
        8192,
        queue_depth=1,
        expected_wait_s=2.0,
        decode_tokens_per_s=50.0,
        prefill_tokens_per_s=500.0,
    )
    assert policy.evaluate(context(1000, 200, busy)).outcome == "pass"
    verdict = policy.evaluate(context(1000, 250, busy))
    assert (verdict.outcome, verdict.reason) == ("cloud", "capacity:eta_9.0s>8s")
    slow = LocalStatus("ready", 8192, decode_tokens_per_s=10.0, prefill_tokens_per_s=500.0)
    assert policy.evaluate(context(100, 200, slow)).reason == "capacity:eta_20.2s>8s"


class Always(Policy):
    def __init__(self, name: str, outcome: str, pin: bool = False) -> None:
        self.name = name
        self._outcome = outcome
        self._pin = pin

    def evaluate(self, context: RouteContext) -> Verdict:
        return Verdict(self.name, self._outcome, f"{self.name}:{self._outcome}", pin=self._pin)  # type: ignore[arg-type]


def test_the_first_opinion_decides_and_every_verdict_is_kept() -> None:
    router = Router([Always("a", "pass"), Always("b", "cloud"), Always("c", "local")])
    decision = router.decide(context())
    assert decision.target == "cloud"
    assert decision.reasons == ("b:cloud", "c:local")
    assert [v.policy for v in decision.verdicts] == ["a", "b", "c"]


def test_a_pin_beats_every_later_opinion() -> None:
    router = Router([Always("privacy", "local", pin=True), Always("length", "cloud")])
    decision = router.decide(context())
    assert decision.pinned and decision.target == "local"
    assert decision.reason == "privacy:local"


def test_policies_can_be_switched_off() -> None:
    settings = RoutingSettings.model_validate(
        {"capability": {"enabled": False}, "length": {"enabled": False}}
    )
    names = [p.name for p in build_router(settings).policies]
    assert "capability" not in names and "length" not in names and "capacity" in names
    decision = build_router(settings).decide(context(8190, 10, needs=frozenset({"images"})))
    assert decision.target == "local"
