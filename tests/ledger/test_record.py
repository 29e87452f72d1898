"""A ledger record is the request_finished event of docs/events.md, key for key."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from ledger_records import local_record

from hybrid.ledger.record import LedgerRecord

EVENTS_DOC = Path(__file__).resolve().parents[2] / "docs" / "events.md"


def documented_record() -> dict[str, Any]:
    text = EVENTS_DOC.read_text(encoding="utf-8")
    section = text.split("### `request_finished`", 1)[1]
    block = re.search(r"```json\n(.*?)```", section, re.DOTALL)
    assert block is not None
    return json.loads(block.group(1).replace("…", ""))  # type: ignore[no-any-return]


def test_the_documented_record_round_trips_exactly() -> None:
    document = documented_record()
    record = LedgerRecord.from_dict(document)
    assert record.to_dict() == document
    assert list(record.to_dict()) == list(document)


def test_a_record_survives_json() -> None:
    record = local_record(leg="cascade_local", error=None, ttft_s=None)
    assert LedgerRecord.from_dict(json.loads(json.dumps(record.to_dict()))) == record


def test_a_missing_key_is_named() -> None:
    data = local_record().to_dict()
    del data["latency_s"]
    with pytest.raises(ValueError, match="latency_s"):
        LedgerRecord.from_dict(data)


@pytest.mark.parametrize(
    ("field", "value"),
    [("route", "edge"), ("status", "done"), ("leg", "cascade"), ("decided", "user")],
)
def test_values_outside_the_documented_sets_are_refused(field: str, value: str) -> None:
    with pytest.raises(ValueError, match=field):
        local_record(**{field: value})


@pytest.mark.parametrize(("route", "status"), [("local", "refused"), ("none", "error")])
def test_refused_and_route_none_go_together(route: str, status: str) -> None:
    with pytest.raises(ValueError, match="refused"):
        local_record(route=route, status=status)


def test_a_record_from_before_schema_3_reads_with_no_cache_tokens_and_no_decider() -> None:
    data = local_record(decided="router", cache_read_tokens=5).to_dict()
    for key in ("cache_read_tokens", "cache_write_tokens", "decided"):
        del data[key]
    record = LedgerRecord.from_dict(data)
    assert (record.cache_read_tokens, record.cache_write_tokens, record.decided) == (0, 0, None)


def test_only_a_discarded_cascade_leg_is_not_a_request() -> None:
    assert local_record().is_request
    assert local_record(leg="cascade_cloud", route="cloud").is_request
    assert not local_record(leg="cascade_local").is_request
