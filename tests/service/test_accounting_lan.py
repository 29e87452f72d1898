"""A LAN answer as accounted: priced at lan.usd_per_1m_tokens against the cloud model it
replaced, recorded under its server, counted in /metrics, and never spent from the budget."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from hybrid.backend import ReplayGeneration
from hybrid.generation import GenerationDone, GenerationRequest, Message, TextDelta, Usage
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
TARGET = "openai/gpt-4.1-mini"
REASON = "lan:gpu-box/qwen2.5-32b;capacity:eta_14s>8s"
RATE = 2.0  # USD per million tokens


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def account(
    tmp_path: Path, answer: Answer, *, budget: Budget, metrics: Metrics
) -> tuple[LedgerRecord, list[tuple[str, Any]]]:
    """Account one answer with a real ledger; return its stored record and the events sent."""
    cpu = Clock()
    writer = LedgerWriter(tmp_path / "ledger.sqlite3", retention_days=0)
    bus = EventBus()
    accountant = Accountant(
        writer,
        Costing(
            PriceTable.shipped(),
            EnergySettings(cpu_watts=10.0, usd_per_kwh=0.2),
            reference_model=TARGET,
            lan_usd_per_1m_tokens=RATE,
        ),
        budget,
        bus,
        metrics,
        count_tokens=len,
        perf=Clock(),
        cpu=cpu,
    )

    async def scenario() -> tuple[list[LedgerRecord], list[tuple[str, Any]]]:
        writer.start()
        try:
            with bus.follow() as events:
                ticket = accountant.open("r1", "openai", "gpt-4.1-mini", stream=True)
                watched = await accountant.watch(ticket, answer, REQUEST)
                cpu.now += 30.0  # this process's CPU: not what the LAN answer cost
                async for _ in watched.generation:
                    pass
                await watched.generation.aclose()
                sent = [events.get_nowait() for _ in range(events.qsize())]
            return await writer.recent(10), sent
        finally:
            writer.close()

    [record], sent = asyncio.run(scenario())
    return record, sent


def lan_answer(counterfactual: str | None = TARGET) -> Answer:
    events = [TextDelta("Hello"), GenerationDone("stop", Usage(1000, 500))]
    return Answer(
        ReplayGeneration(events),
        "lan",
        "gpu-box/qwen2.5-32b",
        REASON,
        counterfactual=counterfactual,
    )


def test_a_lan_answer_is_recorded_under_its_server_and_priced_at_the_lan_rate(
    tmp_path: Path,
) -> None:
    record, _ = account(
        tmp_path,
        lan_answer(),
        budget=Budget(BudgetSettings(), SpendSeed(at=0.0)),
        metrics=Metrics(),
    )

    assert (record.route, record.provider, record.model) == ("lan", "gpu-box", lan_answer().model)
    assert record.reasons == ("lan:gpu-box/qwen2.5-32b", "capacity:eta_14s>8s")
    assert record.cloud_cost_usd == 0.0
    assert record.energy_cost_usd == pytest.approx(1500 * RATE / 1e6)  # not the 30 CPU seconds
    assert record.counterfactual_model == TARGET
    price = PriceTable.shipped().lookup(TARGET)
    assert price is not None
    assert record.counterfactual_cost_usd == pytest.approx(price.cost(1000, 500))
    assert record.cost_avoided_usd == pytest.approx(price.cost(1000, 500) - 1500 * RATE / 1e6)
    assert record.price_known


def test_without_a_configured_cloud_it_is_compared_with_the_reference_model(
    tmp_path: Path,
) -> None:
    record, _ = account(
        tmp_path,
        lan_answer(counterfactual=None),
        budget=Budget(BudgetSettings(), SpendSeed(at=0.0)),
        metrics=Metrics(),
    )

    assert record.counterfactual_model == TARGET
    assert record.counterfactual_cost_usd is not None and record.energy_cost_usd is not None
    assert record.cost_avoided_usd == pytest.approx(
        record.counterfactual_cost_usd - record.energy_cost_usd
    )


def test_a_lan_answer_never_adds_cloud_spend_even_under_a_tiny_cap(tmp_path: Path) -> None:
    budget = Budget(BudgetSettings(daily_usd=0.000001), SpendSeed(at=time.time()))
    metrics = Metrics()

    record, sent = account(tmp_path, lan_answer(), budget=budget, metrics=metrics)

    assert record.energy_cost_usd is not None and record.energy_cost_usd > 0.000001
    assert budget.spend() == (0.0, 0.0)
    assert budget.state() == "ok" and budget.capped("gpu-box") is None
    assert [name for name, _ in sent] == ["request_started", "request_finished"]  # no budget
    assert sent[1][1]["route"] == "lan"
    assert (
        metrics.registry.get_sample_value("hybrid_cloud_spend_usd_total", {"provider": "gpu-box"})
        is None
    )


def test_lan_answers_are_counted_in_the_metrics_with_their_own_route(tmp_path: Path) -> None:
    metrics = Metrics()
    record, _ = account(
        tmp_path, lan_answer(), budget=Budget(BudgetSettings(), SpendSeed(at=0.0)), metrics=metrics
    )

    def sample(name: str, **labels: str) -> float | None:
        return metrics.registry.get_sample_value(name, labels)

    requests = {"route": "lan", "model": "gpu-box/qwen2.5-32b", "status": "ok", "reason": "lan"}
    assert sample("hybrid_requests_total", **requests) == 1
    assert sample("hybrid_tokens_total", route="lan", kind="completion") == 500
    assert sample("hybrid_request_latency_seconds_count", route="lan") == 1
    assert sample("hybrid_cost_avoided_usd", decided="router") == pytest.approx(
        record.cost_avoided_usd
    )
    assert sample("hybrid_cloud_spend_usd_total", provider="gpu-box") is None
