"""The service without HTTP: built from the settings, started, answering, closed."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from hardware_fakes import idle_probe
from scripted import ScriptedBackend, ScriptedRuntime

from hybrid.backend import collect
from hybrid.errors import ConfigError, InvalidRequestError, QueueFullError
from hybrid.generation import GenerationRequest, Message
from hybrid.hardware.snapshot import LiveSample
from hybrid.ledger.record import LedgerRecord
from hybrid.ledger.writer import LedgerWriter
from hybrid.routing.policies.difficulty import CalibratedModel
from hybrid.service.answering import refuse, start_answer
from hybrid.service.build import ON_BATTERY, build_dispatcher, build_service, held_by_battery
from hybrid.service.service import Service
from hybrid.settings import Settings, load_settings

REQUEST = GenerationRequest("r1", messages=(Message("user", "Hi"),))
TIMEOUT_S = 10.0


def settings_in(tmp_path: Path, **cli: Any) -> Settings:
    environ = {"HYBRID_HOME": str(tmp_path / "home")}
    cli = {"probe.measure_bandwidth": False, **cli}
    return load_settings(environ=environ, dotenv_file=None, cli=cli).settings


def service_for(settings: Settings, backend: ScriptedBackend | None = None) -> Service:
    return build_service(
        settings,
        runtime=ScriptedRuntime(settings, backend or ScriptedBackend()),
        probe=idle_probe(),
        gpu_energy=lambda: None,
    )


async def until(condition: Any) -> None:
    """Wait, on the loop, until ``condition()`` holds (the service's tasks run meanwhile)."""
    deadline = time.monotonic() + TIMEOUT_S
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        await asyncio.sleep(0.01)


def recorded(settings: Settings) -> list[LedgerRecord]:
    writer = LedgerWriter(settings.ledger.resolved_path(settings.home), 0)
    writer.start()
    try:
        return asyncio.run(writer.recent(10))
    finally:
        writer.close()


def test_an_answer_started_without_http_is_accounted_for(tmp_path: Path) -> None:
    settings = settings_in(tmp_path)

    async def scenario() -> str:
        service = service_for(settings)
        await service.start()
        try:
            await until(lambda: service.runtime.state == "ready")
            answer = await start_answer(service, REQUEST, api="anthropic", model="local")
            completion = await collect(answer.generation)
            await answer.generation.aclose()
        finally:
            await service.close()
        return completion.text

    assert asyncio.run(scenario()) == "Hello world"
    [record] = recorded(settings)
    assert (record.api, record.route, record.status) == ("anthropic", "local", "ok")
    assert record.model_requested == "local"


def test_requests_turned_away_are_recorded_with_the_reasons_the_service_was_given(
    tmp_path: Path,
) -> None:
    settings = settings_in(tmp_path)
    backend = ScriptedBackend()
    backend.fail_on_start = QueueFullError(depth=3, retry_after=1.0)

    async def scenario() -> None:
        service = service_for(settings, backend)
        await service.start()
        try:
            await until(lambda: service.runtime.state == "ready")
            bad_header = InvalidRequestError("X-Hybrid-Route must be one of auto, local, cloud")
            await refuse(service, REQUEST, bad_header, api="openai", model="hybrid")
            with pytest.raises(QueueFullError):
                await start_answer(service, REQUEST, api="openai", model="local")
        finally:
            await service.close()

    asyncio.run(scenario())
    records = sorted(recorded(settings), key=lambda record: record.time)
    assert [(r.route, r.status) for r in records] == [("none", "refused")] * 2
    assert [r.reasons for r in records] == [
        ("error:invalid_request_error",),
        ("error:rate_limit_exceeded",),
    ]


def test_start_seeds_the_budget_with_the_spend_the_ledger_holds(tmp_path: Path) -> None:
    settings = settings_in(tmp_path, **{"budget.daily_usd": 1.0})
    writer = LedgerWriter(settings.ledger.resolved_path(settings.home), 0)
    writer.start()
    writer.write_nowait(cloud_answer(cost=0.25))
    writer.close()

    async def scenario() -> dict[str, Any]:
        service = service_for(settings)
        assert service.accountant.budget.to_dict()["daily_spend_usd"] == 0.0
        await service.start()
        try:
            return service.accountant.budget.to_dict()
        finally:
            await service.close()

    assert asyncio.run(scenario())["daily_spend_usd"] == pytest.approx(0.25)


def test_a_started_service_publishes_hardware_events(tmp_path: Path) -> None:
    settings = settings_in(tmp_path, **{"probe.sample_interval_s": 0.01})

    async def scenario() -> Any:
        service = service_for(settings)
        await service.start()
        try:
            await until(lambda: service.bus.hardware is not None)
            return service.bus.hardware
        finally:
            await service.close()

    event = asyncio.run(scenario())
    assert event["model_state"] == "ready" and event["queue_depth"] == 0


def power_sample(on_battery: bool | None) -> LiveSample:
    return LiveSample(
        taken_at=0.0,
        cpu_percent=0.0,
        memory_available_bytes=1,
        memory_percent=0.0,
        gpu_utilization_percent=None,
        battery_percent=None if on_battery is None else 64.0,
        on_battery=on_battery,
    )


@pytest.mark.parametrize(
    ("sample", "held"),
    [
        (power_sample(True), ON_BATTERY),
        (power_sample(False), None),
        # No battery, a power source the OS cannot tell, or no sample yet: never held.
        (power_sample(None), None),
        (None, None),
    ],
)
def test_background_work_is_held_on_battery_power_only(
    sample: LiveSample | None, held: str | None
) -> None:
    assert held_by_battery(lambda: sample) == held


def test_close_frees_what_was_built_even_when_the_service_never_started(tmp_path: Path) -> None:
    service = service_for(settings_in(tmp_path))
    assert service.pool.clients and not any(client.is_closed for client in service.pool.clients)
    asyncio.run(service.close())
    assert all(client.is_closed for client in service.pool.clients)
    assert not service.ledger.path.exists()  # never opened


def test_the_dispatcher_is_built_from_the_same_settings_as_the_server(tmp_path: Path) -> None:
    settings = settings_in(tmp_path, **{"cloud.failover": ["nowhere/model-x"]})
    runtime = ScriptedRuntime(settings, ScriptedBackend())
    calibration = CalibratedModel(settings.home, lambda: runtime.loaded_path)
    with pytest.raises(ConfigError, match=r"cloud\.failover names 'nowhere/model-x'"):
        build_dispatcher(settings, runtime, calibration)
    with pytest.raises(ConfigError, match=r"cloud\.failover names 'nowhere/model-x'"):
        service_for(settings)


def cloud_answer(*, cost: float) -> LedgerRecord:
    """An OpenAI answer made now that cost ``cost`` dollars."""
    return LedgerRecord(
        id="c1",
        time=time.time(),
        api="openai",
        route="cloud",
        reasons=("difficulty:0.81>0.52",),
        verdicts=(),
        score=0.81,
        model_requested="hybrid",
        model="openai/gpt-4.1-mini",
        provider="openai",
        prompt_tokens=1000,
        completion_tokens=500,
        tokens_estimated=False,
        ttft_s=0.4,
        latency_s=1.2,
        status="ok",
        error=None,
        cloud_cost_usd=cost,
        counterfactual_model=None,
        counterfactual_cost_usd=None,
        energy_cost_usd=0.0,
        cost_avoided_usd=0.0,
        price_known=True,
        leg=None,
    )
