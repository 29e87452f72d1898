"""Prefix reuse as accounted: a local answer's reused prompt tokens reach the ledger and
``/metrics``, and never make the cloud answer it replaced look cheaper."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Literal

import pytest

from hybrid.backend import ReplayGeneration
from hybrid.generation import (
    GenerationDone,
    GenerationEvent,
    GenerationRequest,
    Message,
    TextDelta,
    Usage,
)
from hybrid.ledger.budget import Budget, SpendSeed
from hybrid.ledger.costing import Costing
from hybrid.ledger.prices import PriceTable
from hybrid.ledger.record import LedgerRecord
from hybrid.ledger.writer import LedgerWriter
from hybrid.routing.answer import Answer
from hybrid.service.accounting import Accountant
from hybrid.service.events import EventBus
from hybrid.service.metrics import Metrics
from hybrid.settings.ledger import BudgetSettings, EnergySettings

REQUEST = GenerationRequest("r1", messages=(Message("user", "Hi"),))
REFERENCE = "openai/gpt-4.1-mini"
SAVED = "hybrid_local_prefill_tokens_saved_total"


def answered(
    tmp_path: Path,
    usages: list[tuple[Literal["local", "cloud"], Usage]],
    metrics: Metrics,
) -> list[LedgerRecord]:
    """Account one answer per usage, local or cloud, and read back what the ledger holds."""
    writer = LedgerWriter(tmp_path / "ledger.sqlite3", retention_days=0)
    accountant = Accountant(
        writer,
        Costing(
            PriceTable.shipped(),
            EnergySettings(cpu_watts=10.0, gpu_watts=100.0, usd_per_kwh=0.2),
            reference_model=REFERENCE,
        ),
        Budget(BudgetSettings(), SpendSeed(at=0.0)),
        EventBus(),
        metrics,
        count_tokens=lambda text: len(text),
        gpu_energy=lambda: None,
        gpu_offloaded=lambda: False,
        perf=lambda: 100.0,
        cpu=lambda: 100.0,  # no CPU time: no electricity, so cost avoided is the whole price
    )

    async def scenario() -> list[LedgerRecord]:
        writer.start()
        try:
            for index, (route, usage) in enumerate(usages):
                events: list[GenerationEvent] = [TextDelta("Hello"), GenerationDone("stop", usage)]
                model = "local-model" if route == "local" else REFERENCE
                answer = Answer(ReplayGeneration(events), route, model, "policies:pass")
                ticket = accountant.open(f"r{index}", "openai", "hybrid", stream=False)
                watched = await accountant.watch(ticket, answer, REQUEST)
                async for _ in watched.generation:
                    pass
                await watched.generation.aclose()
            by_id = {record.id: record for record in await writer.recent(len(usages))}
            return [by_id[f"r{index}"] for index in range(len(usages))]
        finally:
            writer.close()

    return asyncio.run(scenario())


def sample(metrics: Metrics, name: str) -> float | None:
    return metrics.registry.get_sample_value(name)


def test_reused_tokens_are_recorded_and_counted_but_the_whole_prompt_is_priced(
    tmp_path: Path,
) -> None:
    metrics = Metrics()
    reused, cold = answered(
        tmp_path,
        [
            ("local", Usage(500, 20, cache_read_tokens=400)),
            ("local", Usage(500, 20)),
        ],
        metrics,
    )
    assert reused.cache_read_tokens == 400 and cold.cache_read_tokens == 0
    # What the cloud would have charged is the same with or without the local cache...
    whole = PriceTable.shipped().lookup(REFERENCE)
    assert whole is not None
    assert reused.counterfactual_cost_usd == pytest.approx(whole.cost(500, 20))
    assert reused.counterfactual_cost_usd == cold.counterfactual_cost_usd
    assert reused.cost_avoided_usd == cold.cost_avoided_usd
    # ...and cheaper than pricing the reused part at the cached-input rate would make it.
    cached = whole.cost(500, 20, 400)
    priced = reused.counterfactual_cost_usd
    assert cached is not None and priced is not None and priced > cached
    assert sample(metrics, SAVED) == 400


def test_a_cloud_providers_cache_reads_are_not_local_prefill_saved(tmp_path: Path) -> None:
    metrics = Metrics()
    [cloud, _] = answered(
        tmp_path,
        [
            ("cloud", Usage(1000, 10, cache_read_tokens=900)),
            ("local", Usage(80, 10, cache_read_tokens=64)),
        ],
        metrics,
    )
    assert cloud.cache_read_tokens == 900  # priced as the provider's cached input
    assert sample(metrics, SAVED) == 64
    assert f"{SAVED} 64.0" in metrics.render().decode()


def test_the_local_gauges_follow_hardware_events() -> None:
    metrics = Metrics()
    metrics.hardware({"queue_depth": 3, "running": 2, "slots": 4, "decode_tokens_per_s": 70.0})
    assert sample(metrics, "hybrid_local_running_requests") == 2
    assert sample(metrics, "hybrid_local_slots") == 4
    metrics.hardware({"queue_depth": 0, "running": 0, "slots": None})
    assert sample(metrics, "hybrid_local_running_requests") == 0
    assert sample(metrics, "hybrid_local_slots") == 4  # unknown while no model is ready
