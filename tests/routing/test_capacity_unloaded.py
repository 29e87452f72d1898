"""An idle-unloaded local model: its reload counts in the predicted wait, and a request that
would wait too long goes to the cloud while the model reloads."""

from __future__ import annotations

import asyncio
from pathlib import Path

from switch_fakes import FakeOpener, fake_runtime

from hybrid.generation import GenerationRequest, Message, SamplingParams
from hybrid.routing.context import route_context
from hybrid.routing.policies.capacity import CapacityPolicy
from hybrid.settings.routing import CapacitySettings


def ask(text: str) -> GenerationRequest:
    return GenerationRequest(
        "r", messages=(Message("user", text),), params=SamplingParams(max_tokens=16)
    )


def decide(tmp_path: Path, target_s: float) -> tuple[str, str, str]:
    async def scenario() -> tuple[str, str, str]:
        runtime, _ = fake_runtime(tmp_path, FakeOpener(), keep_alive=0)
        await runtime.load()
        await runtime.unload()
        context, prepared, _ = await route_context(
            runtime, ask("What is the capital of France?"), count_tokens=True, load=None
        )
        assert prepared is None  # nothing to tokenize with
        verdict = CapacityPolicy(CapacitySettings(latency_target_s=target_s)).evaluate(context)
        await runtime.close()
        return context.local.state, verdict.outcome, verdict.reason

    return asyncio.run(scenario())


def test_a_reload_longer_than_the_target_sends_the_request_to_the_cloud(tmp_path: Path) -> None:
    # The fake model loaded in 0.25 s; 16 tokens at the default 30 tok/s add 0.53 s.
    state, outcome, reason = decide(tmp_path, target_s=0.5)
    assert state == "unloaded"
    assert outcome == "cloud"
    assert reason.startswith("capacity:unloaded:eta_") and reason.endswith(">0.5s")


def test_a_quick_reload_keeps_the_request_local(tmp_path: Path) -> None:
    _, outcome, reason = decide(tmp_path, target_s=20)
    assert outcome == "pass"
    assert reason.startswith("capacity:unloaded:eta_")
