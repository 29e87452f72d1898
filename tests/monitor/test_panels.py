"""What the panels write for the cases the screenshots do not show."""

from __future__ import annotations

from datetime import UTC

from monitor_fakes import cloud_record, hardware, record

from hybrid.monitor.screens.decision import summary
from hybrid.monitor.widgets.hardware import machine_lines
from hybrid.monitor.widgets.savings import cloud_side
from hybrid.monitor.wire import (
    Budget,
    HardwareSample,
    ModelInfo,
    RequestRecord,
    Totals,
    parse_event,
)


def as_record(data: dict[str, object]) -> RequestRecord:
    event = parse_event("request_finished", data)
    assert isinstance(event, RequestRecord)
    return event


def as_sample(data: dict[str, object]) -> HardwareSample:
    event = parse_event("hardware", data)
    assert isinstance(event, HardwareSample)
    return event


def test_a_budget_past_its_soft_limit_says_so_in_words() -> None:
    text = cloud_side(
        Totals(cloud_spend_usd=0.83, local_share=0.5),
        Totals(local_share=0.8),
        Budget(daily_spend_usd=0.83, daily_cap_usd=1.0, monthly_spend_usd=12.0, monthly_cap_usd=20),
    ).plain.splitlines()

    assert text[0] == "cloud today $0.83"
    assert text[1] == "████████▎░ 83% of $1.00/day"
    assert text[2] == "month $12.00 of $20.00"
    assert text[3] == "local 50% · all time 80%"
    capped = cloud_side(Totals(), Totals(), Budget(state="capped")).plain.splitlines()
    assert capped[0].endswith(" CAPPED")
    assert capped[1] == "no daily cap"


def test_a_laptop_on_battery_with_a_gpu_and_a_busy_queue() -> None:
    sample = as_sample(
        hardware(
            on_battery=True,
            battery_percent=23.0,
            gpu_utilization_percent=97.0,
            vram_used_bytes=7 * 2**30,
            vram_total_bytes=8 * 2**30,
            queue_depth=4,
        )
    )

    lines = machine_lines(sample, 5, ModelInfo("qwen3-4b", "ready")).plain.splitlines()

    assert lines[1] == "GPU 97%  VRAM 7.0 GiB / 8.0 GiB"
    assert lines[2] == "power on battery · battery 23%"
    assert lines[3] == "queue 4 · in flight 5"
    assert lines[4] == "qwen3-4b ready"


def test_a_desktop_without_battery_and_before_any_sample() -> None:
    sample = as_sample(hardware(battery_percent=None, on_battery=None))

    assert machine_lines(sample, 0, None).plain.splitlines()[2] == "power AC"
    assert machine_lines(None, 0, ModelInfo("m", "loading")).plain.splitlines() == [
        "no hardware sample yet",
        "m loading",
    ]


def test_the_decision_of_an_unpriced_cascade_leg() -> None:
    text = summary(
        as_record(
            record(
                "a",
                leg="cascade_local",
                model="my-finetune",
                price_known=False,
                counterfactual_cost_usd=None,
                cost_avoided_usd=None,
                tokens_estimated=True,
            )
        ),
        UTC,
    ).plain

    assert text.startswith("LOCAL (cascade local leg)  ok  2026-11-18 11:06:10  via the openai API")
    assert "tokens     31 in, 12 out (estimated)" in text
    assert "avoided    unknown (no price for the model)" in text


def test_the_decision_of_a_failed_cloud_request_shows_the_error() -> None:
    text = summary(
        as_record(cloud_record(status="error", error="openai: [timeout] no first byte in 30 s")),
        UTC,
    ).plain

    assert "CLOUD  error" in text
    assert "error      openai: [timeout] no first byte in 30 s" in text
