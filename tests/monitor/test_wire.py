"""The monitor reads exactly what docs/events.md says the daemon sends."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from monitor_fakes import record, snapshot, stats

from hybrid.monitor.wire import (
    Budget,
    HardwareSample,
    MalformedEventError,
    ModeChange,
    RequestRecord,
    RequestStarted,
    Snapshot,
    Totals,
    parse_event,
    parse_stats,
)

EVENTS_MD = Path(__file__).resolve().parents[2] / "docs" / "events.md"


def doc_examples() -> dict[str, Any]:
    """Each JSON example of docs/events.md that is valid JSON, by the heading above it."""
    examples: dict[str, Any] = {}
    heading = ""
    text = EVENTS_MD.read_text()
    for match in re.finditer(r"^(#+ [^\n]*|`\w+`:)$|^```json\n(.*?)^```", text, re.M | re.S):
        if match.group(1):
            heading = match.group(1).strip("#: `")
        else:
            try:
                examples[heading] = json.loads(match.group(2))
            except ValueError:
                pass  # the stats example has {Totals} placeholders
    return examples


def test_the_documented_examples_parse_into_every_field() -> None:
    examples = doc_examples()

    finished = parse_event("request_finished", examples["request_finished"])
    hardware = parse_event("hardware", examples["hardware"])

    assert isinstance(finished, RequestRecord)
    assert finished.route == "local"
    assert [v.policy for v in finished.verdicts] == ["privacy", "difficulty"]
    assert finished.verdicts[1].score == 0.21
    assert finished.cost_avoided_usd == pytest.approx(0.0000312)
    assert isinstance(hardware, HardwareSample)
    assert hardware.decode_tokens_per_s == 68.9
    assert hardware.gpu_utilization_percent is None
    assert parse_event("budget", examples["Budget"]) == Budget(0.0042, 1.0, 0.31, None, "ok")
    assert parse_event("mode", examples["mode"]) == ModeChange("local-only")
    started = parse_event("request_started", examples["request_started"])
    assert isinstance(started, RequestStarted)
    assert started.model_requested == "gpt-4.1-mini"
    assert parse_stats(stats(today=examples["Totals"])).today == Totals(
        13, 9, 3, 0, 1804, 960, 0.0042, 0.0131, 0.75, refused=1, off_cloud_share=0.75
    )


def test_a_snapshot_carries_recent_requests_and_the_latest_hardware() -> None:
    event = parse_event("snapshot", snapshot())

    assert isinstance(event, Snapshot)
    assert [r.id for r in event.recent] == ["r2", "r1"]
    assert event.hardware is not None
    assert event.model is not None and event.model.id == "gemma-3-270m-q4_k_m"
    assert parse_event("snapshot", snapshot(hardware=None, recent=[])) is not None


def test_keys_a_newer_daemon_adds_are_ignored_and_unknown_events_skipped() -> None:
    event = parse_event("request_finished", record(carbon_g=0.3))

    assert isinstance(event, RequestRecord)
    assert parse_event("retention", {"days": 30}) is None


def test_an_unknown_price_stays_unknown() -> None:
    event = parse_event(
        "request_finished",
        record(price_known=False, counterfactual_cost_usd=None, cost_avoided_usd=None),
    )

    assert isinstance(event, RequestRecord)
    assert event.cost_avoided_usd is None


@pytest.mark.parametrize(
    ("name", "data", "field"),
    [
        ("request_finished", record(time="yesterday"), "time"),
        ("request_finished", {"time": 1.0, "route": "local"}, "id"),
        ("budget", {"daily_spend_usd": "a lot"}, "daily_spend_usd"),
        ("mode", "not an object", "the body"),
    ],
)
def test_a_body_of_the_wrong_shape_is_an_error_naming_the_field(
    name: str, data: Any, field: str
) -> None:
    with pytest.raises(MalformedEventError) as caught:
        parse_event(name, data)

    assert str(caught.value).startswith(f"the '{name}' event does not match docs/events.md")
    assert f"({field}:" in str(caught.value)


def test_cascade_legs_of_one_request_have_distinct_keys() -> None:
    first = parse_event("request_finished", record("a", leg="cascade_local"))
    second = parse_event("request_finished", record("a", leg="cascade_cloud"))

    assert isinstance(first, RequestRecord) and isinstance(second, RequestRecord)
    assert first.key != second.key
