"""Budgets reserved before a cloud request is sent, through the whole service against the fake
cloud over real HTTP: concurrent requests at a cap, failures, rejections, cancelled clients."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_cloud import FakeCloud, Fault
from hardware_fakes import idle_probe
from scripted import ScriptedBackend, ScriptedRuntime

from hybrid.backend import collect
from hybrid.errors import ProviderRejectedError
from hybrid.generation import GenerationRequest, Message, SamplingParams, TextDelta
from hybrid.ledger.budget import Budget, Reservation, SpendSeed
from hybrid.ledger.record import LedgerRecord
from hybrid.ledger.writer import LedgerWriter
from hybrid.routing.answer import Answer
from hybrid.service.answering import start_answer
from hybrid.service.build import build_service
from hybrid.service.service import Service
from hybrid.settings import Settings, load_settings
from hybrid.settings.ledger import BudgetSettings

MODEL = "gpt-4.1-mini"
MAX_TOKENS = 4  # the fake cloud stops there: each answer costs about its estimate
CONCURRENT = 64


@pytest.fixture
def cloud() -> Iterator[FakeCloud]:
    with FakeCloud(reply="Hello from the fake cloud, with a few more words.") as fake:
        yield fake


def settings_for(tmp_path: Path, cloud: FakeCloud, **extra: Any) -> Settings:
    cli: dict[str, Any] = {
        "probe.measure_bandwidth": False,
        "cloud.openai.api_key": cloud.openai_key,
        "cloud.openai.base_url": cloud.base_url + "/v1",
        "cloud.max_attempts": 1,
        **extra,
    }
    environ = {"HYBRID_HOME": str(tmp_path / "home")}
    return load_settings(environ=environ, dotenv_file=None, cli=cli).settings


def request(i: int, *, stream: bool = False) -> GenerationRequest:
    return GenerationRequest(
        f"r{i}",
        messages=(Message("user", "Say hello"),),
        params=SamplingParams(max_tokens=MAX_TOKENS),
        stream=stream,
    )


def estimate(service: Service) -> float:
    """One request's estimated cost, as the service reserves it."""
    accountant = service.accountant
    prompt = accountant.count_tokens("Say hello")
    usd = accountant.costing.estimate(f"openai/{MODEL}", prompt, MAX_TOKENS)
    assert usd is not None and usd > 0
    return usd


def with_cap(service: Service, daily_usd: float | None) -> Budget:
    """Put a fresh budget with this daily cap in place (the service reads it on every call)."""
    budget = Budget(BudgetSettings(daily_usd=daily_usd), SpendSeed(at=time.time()))
    service.accountant.budget = budget
    return budget


def run(settings: Settings, scenario: Callable[[Service], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        service = build_service(
            settings,
            runtime=ScriptedRuntime(settings, ScriptedBackend()),
            probe=idle_probe(),
            gpu_energy=lambda: None,
        )
        await service.start()
        try:
            while service.runtime.state != "ready":
                await asyncio.sleep(0.01)
            return await scenario(service)
        finally:
            await service.close()

    return asyncio.run(main())


async def answered(service: Service, i: int) -> Answer:
    answer = await start_answer(service, request(i), api="openai", model=MODEL, override="cloud")
    try:
        await collect(answer.generation)
    finally:
        await answer.generation.aclose()
    return answer


def records(settings: Settings) -> list[LedgerRecord]:
    writer = LedgerWriter(settings.ledger.resolved_path(settings.home), 0)
    writer.start()
    try:
        return asyncio.run(writer.recent(1000))
    finally:
        writer.close()


def test_concurrent_requests_at_the_cap_never_overspend_it(
    tmp_path: Path, cloud: FakeCloud
) -> None:
    settings = settings_for(tmp_path, cloud)
    # Every request is in flight at once: none is settled before all have asked.
    cloud.default_fault = Fault.slow_first_byte(0.2)

    async def scenario(service: Service) -> tuple[list[Answer], Budget, float, float]:
        each = estimate(service)
        cap = 3.5 * each  # room for three requests at a time
        budget = with_cap(service, cap)
        answers = await asyncio.gather(*(answered(service, i) for i in range(CONCURRENT)))
        return answers, budget, cap, each

    answers, budget, cap, each = run(settings, scenario)
    cloud_answers = [a for a in answers if a.route == "cloud"]
    capped = [a for a in answers if a.route == "local"]
    assert len(cloud_answers) + len(capped) == CONCURRENT
    assert 1 <= len(cloud_answers) <= 3
    assert {a.reason for a in capped} == {
        "budget:daily_cap;explicit:cloud"
    }  # answered locally instead
    spent = budget.spend()[0]
    assert 0 < spent <= cap + each
    assert budget.reservations == 0 and budget.reserved() == (0.0, 0.0)
    # Settled with what each answer really cost, as its record says.
    costs = [r.cloud_cost_usd or 0.0 for r in records(settings) if r.route == "cloud"]
    assert len(costs) == len(cloud_answers) == len(cloud.requests)
    assert spent == pytest.approx(sum(costs))


def test_a_failed_cloud_request_releases_its_reservation(tmp_path: Path, cloud: FakeCloud) -> None:
    settings = settings_for(tmp_path, cloud)
    cloud.default_fault = Fault.status(503)

    async def scenario(service: Service) -> tuple[list[Answer], Budget]:
        # Room for one request's estimate: a leaked reservation would refuse the next one.
        budget = with_cap(service, 1.5 * estimate(service))
        answers = [await answered(service, i) for i in range(3)]
        return answers, budget

    answers, budget = run(settings, scenario)
    assert [a.reason.split(":")[0] for a in answers] == ["cloud_unavailable"] * 3
    assert len(cloud.requests) == 3  # each was sent: none found the budget held
    assert budget.reservations == 0 and budget.spend() == (0.0, 0.0)


def test_a_rejected_request_releases_its_reservation(tmp_path: Path, cloud: FakeCloud) -> None:
    settings = settings_for(tmp_path, cloud)
    cloud.push(Fault.not_found())  # a 4xx: the request itself is refused, not failed over

    async def scenario(service: Service) -> Budget:
        budget = with_cap(service, 1.5 * estimate(service))
        with pytest.raises(ProviderRejectedError):
            await answered(service, 0)
        assert budget.reservations == 0
        await answered(service, 1)  # the cap's room is free again
        return budget

    budget = run(settings, scenario)
    assert len(cloud.requests) == 2 and budget.reservations == 0
    assert budget.spend()[0] > 0


def test_no_reservation_outlives_cancelled_clients(tmp_path: Path, cloud: FakeCloud) -> None:
    settings = settings_for(tmp_path, cloud)
    cloud.default_fault = Fault.slow_body(0.05)  # streams long enough to leave in the middle

    async def leave_mid_stream(service: Service, i: int) -> None:
        answer = await start_answer(
            service, request(i, stream=True), api="openai", model=MODEL, override="cloud"
        )
        try:
            async for event in answer.generation:
                if isinstance(event, TextDelta):
                    break  # the client goes away after its first words
        finally:
            await answer.generation.aclose()

    async def scenario(service: Service) -> Budget:
        budget = with_cap(service, None)
        leaving = [asyncio.create_task(leave_mid_stream(service, i)) for i in range(8)]
        # And clients that leave before the cloud has even answered.
        cloud.push(*[Fault.slow_first_byte(5.0)] * 8)
        waiting = [asyncio.create_task(answered(service, 100 + i)) for i in range(8)]
        while len(cloud.requests) < 16:
            await asyncio.sleep(0.01)
        for task in waiting:
            task.cancel()
        await asyncio.gather(*leaving, *waiting, return_exceptions=True)
        return budget

    budget = run(settings, scenario)
    assert budget.reservations == 0 and budget.reserved() == (0.0, 0.0)
    cancelled = [r for r in records(settings) if r.route == "cloud"]
    assert {r.status for r in cancelled} == {"cancelled"}
    # What the clients that left mid-answer were charged is spent, and nothing else.
    assert budget.spend()[0] == pytest.approx(sum(r.cloud_cost_usd or 0.0 for r in cancelled))


class RecordingBudget(Budget):
    """A budget that keeps every estimate it was asked to reserve."""

    def __init__(self) -> None:
        super().__init__(BudgetSettings(daily_usd=1.0), SpendSeed(at=time.time()))
        self.asked: list[float] = []

    async def reserve(self, provider: str, model: str, estimate_usd: float) -> Reservation | str:
        self.asked.append(estimate_usd)
        return await super().reserve(provider, model, estimate_usd)


def test_a_cascade_escalation_reserves_with_the_routers_count_and_settles(
    tmp_path: Path, cloud: FakeCloud
) -> None:
    cascade = {"routing.cascade.enabled": True, "routing.cascade.min_confidence": 0.99}
    settings = settings_for(tmp_path, cloud, **cascade)

    async def scenario(service: Service) -> tuple[Answer, RecordingBudget, float | None]:
        budget = RecordingBudget()
        service.accountant.budget = budget
        answer = await start_answer(service, request(0), api="openai", model="hybrid")
        try:
            await collect(answer.generation)
        finally:
            await answer.generation.aclose()
        # The scripted model's prompt is 7 tokens: the router's count is the one reserved.
        expected = service.accountant.costing.estimate(answer.model, 7, MAX_TOKENS)
        return answer, budget, expected

    answer, budget, expected = run(settings, scenario)
    assert answer.route == "cloud" and answer.discarded is not None  # local, then escalated
    assert budget.asked == [pytest.approx(expected)]
    assert budget.reservations == 0
    [record] = [r for r in records(settings) if r.leg == "cascade_cloud"]
    assert budget.spend()[0] == pytest.approx(record.cloud_cost_usd)
