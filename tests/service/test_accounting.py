"""The accountant on its own: a real ledger file, scripted answers, fake clocks."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from hybrid.backend import ReplayGeneration
from hybrid.generation import GenerationDone, GenerationRequest, Message, TextDelta, Usage
from hybrid.ledger.budget import Budget, SpendSeed
from hybrid.ledger.costing import Costing
from hybrid.ledger.prices import PriceTable
from hybrid.ledger.record import LedgerRecord
from hybrid.ledger.writer import LedgerWriter
from hybrid.routing.answer import Answer, DiscardedLeg, PartialAnswer, RoutePlan
from hybrid.routing.names import CloudTarget
from hybrid.routing.policy import RouteDecision
from hybrid.service.accounting import Accountant
from hybrid.service.events import CLOSED, EventBus
from hybrid.service.metrics import Metrics
from hybrid.settings.ledger import BudgetSettings, EnergySettings

REQUEST = GenerationRequest("r1", messages=(Message("user", "Hi"),))


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def run_local_answer(
    tmp_path: Path, *, gpu_energy: list[float | None], offloaded: bool, seconds: float
) -> LedgerRecord:
    perf, cpu = Clock(), Clock()
    energy = iter(gpu_energy)
    writer = LedgerWriter(tmp_path / "ledger.sqlite3", retention_days=0)
    accountant = Accountant(
        writer,
        Costing(
            PriceTable.shipped(),
            EnergySettings(cpu_watts=10.0, gpu_watts=100.0, usd_per_kwh=0.2),
            reference_model="openai/gpt-4.1-mini",
        ),
        Budget(BudgetSettings(), SpendSeed(at=0.0)),
        EventBus(),
        Metrics(),
        count_tokens=lambda text: len(text),
        gpu_energy=lambda: next(energy),
        gpu_offloaded=lambda: offloaded,
        perf=perf,
        cpu=cpu,
    )
    events = [TextDelta("Hello"), GenerationDone("stop", Usage(5, 1))]
    answer = Answer(ReplayGeneration(events), "local", "local-model", "policies:pass")

    async def scenario() -> None:
        writer.start()
        ticket = accountant.open("r1", "openai", "hybrid", stream=False)
        watched = await accountant.watch(ticket, answer, REQUEST)
        perf.now += seconds
        cpu.now += 1.0  # one CPU second
        async for _ in watched.generation:
            pass
        await watched.generation.aclose()
        writer.close()

    asyncio.run(scenario())
    store_records = LedgerWriter(tmp_path / "ledger.sqlite3", 0)
    store_records.start()
    try:
        [record] = asyncio.run(store_records.recent(10))
    finally:
        store_records.close()
    return record


KWH = 3.6e6  # joules


def test_cpu_only_energy_is_cpu_seconds_times_watts(tmp_path: Path) -> None:
    record = run_local_answer(tmp_path, gpu_energy=[None], offloaded=False, seconds=2.0)
    assert record.energy_cost_usd == pytest.approx(1.0 * 10.0 / KWH * 0.2)


def test_measured_gpu_energy_is_added(tmp_path: Path) -> None:
    record = run_local_answer(tmp_path, gpu_energy=[50.0, 80.0], offloaded=True, seconds=2.0)
    assert record.energy_cost_usd == pytest.approx((10.0 + 30.0) / KWH * 0.2)


def test_an_offloaded_model_without_a_counter_prices_its_time_at_gpu_watts(
    tmp_path: Path,
) -> None:
    record = run_local_answer(tmp_path, gpu_energy=[None, None], offloaded=True, seconds=2.0)
    assert record.energy_cost_usd == pytest.approx((10.0 + 2.0 * 100.0) / KWH * 0.2)
    assert record.cost_avoided_usd == pytest.approx(
        (record.counterfactual_cost_usd or 0) - record.energy_cost_usd
    )


def accountant_on(writer: LedgerWriter) -> Accountant:
    return Accountant(
        writer,
        Costing(PriceTable.shipped(), EnergySettings(), reference_model="openai/gpt-4.1-mini"),
        Budget(BudgetSettings(), SpendSeed(at=0.0)),
        EventBus(),
        Metrics(),
        count_tokens=lambda text: len(text),
    )


def recorded(tmp_path: Path) -> list[LedgerRecord]:
    store = LedgerWriter(tmp_path / "ledger.sqlite3", 0)
    store.start()
    try:
        return list(reversed(asyncio.run(store.recent(10))))
    finally:
        store.close()


PLAN = RoutePlan(
    "auto",
    CloudTarget("openai", "gpt-4.1-mini"),
    RouteDecision("local", ("difficulty:0.20<=0.52",), score=0.2),
    None,
    "local-model",
)


@pytest.mark.parametrize("escalating", [False, True])
def test_a_start_cancelled_is_recorded_as_cancelled_on_the_route_it_took(
    tmp_path: Path, escalating: bool
) -> None:
    writer = LedgerWriter(tmp_path / "ledger.sqlite3", retention_days=0)
    accountant = accountant_on(writer)
    cancelled = asyncio.CancelledError()
    if escalating:  # the cascade discarded the local answer; the client left during the call
        DiscardedLeg("local-model", 5, 12, "cascade:0.30<0.35").note(cancelled)

    async def scenario() -> None:
        writer.start()
        ticket = accountant.open("r1", "openai", "hybrid", stream=False)
        accountant.abandoned(ticket, REQUEST, cancelled, PLAN, local_model="local-model")
        writer.close()

    asyncio.run(scenario())
    records = recorded(tmp_path)
    answered = records[-1]
    assert (answered.status, answered.completion_tokens, answered.tokens_estimated) == (
        "cancelled",
        0,
        True,
    )
    assert answered.prompt_tokens == len("Hi") and answered.score == 0.2
    if not escalating:
        assert [(r.route, r.model, r.leg) for r in records] == [("local", "local-model", None)]
        return
    # As when the escalation answers: the discarded local leg, then the cloud's.
    assert [(r.route, r.model, r.status, r.leg) for r in records] == [
        ("local", "local-model", "ok", "cascade_local"),
        ("cloud", "openai/gpt-4.1-mini", "cancelled", "cascade_cloud"),
    ]
    assert records[0].completion_tokens == 12 and records[0].reasons == ("cascade:0.30<0.35",)
    assert sum(r.is_request for r in records) == 1


def test_a_start_cancelled_while_the_cascade_read_counts_what_was_generated(
    tmp_path: Path,
) -> None:
    writer = LedgerWriter(tmp_path / "ledger.sqlite3", retention_days=0)
    accountant = accountant_on(writer)
    cancelled = asyncio.CancelledError()
    PartialAnswer(prompt_tokens=11, completion_tokens=6).note(cancelled)  # the client left

    async def scenario() -> None:
        writer.start()
        ticket = accountant.open("r1", "openai", "hybrid", stream=False)
        accountant.abandoned(ticket, REQUEST, cancelled, PLAN, local_model="local-model")
        writer.close()

    asyncio.run(scenario())
    [record] = recorded(tmp_path)
    assert (record.route, record.model, record.status, record.leg) == (
        "local",
        "local-model",
        "cancelled",
        None,
    )
    assert (record.prompt_tokens, record.completion_tokens) == (11, 6)
    assert record.counterfactual_cost_usd  # the tokens generated are priced too


@pytest.mark.parametrize("replayed", [False, True])
def test_a_discarded_answer_given_after_all_is_one_record(tmp_path: Path, replayed: bool) -> None:
    writer = LedgerWriter(tmp_path / "ledger.sqlite3", retention_days=0)
    accountant = accountant_on(writer)
    leg = DiscardedLeg("local-model", 5, 2, "cascade:declined", replayed=replayed)
    events = [TextDelta("I don't know."), GenerationDone("stop", Usage(5, 2))]
    reason = "cloud_unavailable:openai:unavailable;cascade:declined"
    answer = Answer(ReplayGeneration(events), "local", "local-model", reason, discarded=leg)

    async def scenario() -> None:
        writer.start()
        ticket = accountant.open("r1", "openai", "hybrid", stream=False)
        watched = await accountant.watch(ticket, answer, REQUEST)
        async for _ in watched.generation:
            pass
        await watched.generation.aclose()
        writer.close()

    asyncio.run(scenario())
    records = recorded(tmp_path)
    answered = records[-1]
    assert (answered.route, answered.status, answered.completion_tokens) == ("local", "ok", 2)
    assert answered.reasons == ("cloud_unavailable:openai:unavailable", "cascade:declined")
    if not replayed:  # a second generation: the discarded one is its own leg
        assert [(r.leg, r.completion_tokens) for r in records] == [
            ("cascade_local", 2),
            ("cascade_cloud", 2),
        ]
        return
    # The answer given is the one discarded: its tokens are counted once.
    assert [(r.leg, r.completion_tokens) for r in records] == [(None, 2)]


def test_a_closed_bus_ends_every_follower_now_and_later() -> None:
    async def scenario() -> None:
        bus = EventBus()
        with bus.follow() as early:
            bus.publish("mode", {"mode": "auto"})
            bus.close()
            assert [early.get_nowait(), early.get_nowait()] == [
                ("mode", {"mode": "auto"}),
                CLOSED,
            ]
        with bus.follow() as late:
            assert late.get_nowait() is CLOSED

    asyncio.run(scenario())
