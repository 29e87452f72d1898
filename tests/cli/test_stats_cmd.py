"""``hybrid stats``: the ledger's figures for a window, as text or JSON, grouped five ways."""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from hybrid.cli import main
from hybrid.ledger.journal import Journal, journal_path
from hybrid.ledger.record import LedgerRecord, VerdictRecord
from hybrid.ledger.store import LedgerStore

HOUR = 3600.0


def record(seconds_ago: float, **changes: Any) -> LedgerRecord:
    """A local answer ``seconds_ago`` seconds old, with ``changes`` applied."""
    base = LedgerRecord(
        id="r",
        time=time.time() - seconds_ago,
        api="openai",
        route="local",
        reasons=("difficulty:0.21<=0.52",),
        verdicts=(VerdictRecord("difficulty", "local", "difficulty:0.21<=0.52", 0.21),),
        score=0.21,
        model_requested="hybrid",
        model="gemma-3-270m-q4_k_m",
        provider="local",
        prompt_tokens=100,
        completion_tokens=50,
        tokens_estimated=False,
        ttft_s=0.05,
        latency_s=0.5,
        status="ok",
        error=None,
        cloud_cost_usd=0.0,
        counterfactual_model="openai/gpt-4.1-mini",
        counterfactual_cost_usd=0.00012,
        energy_cost_usd=0.00002,
        cost_avoided_usd=0.0001,
        price_known=True,
        leg=None,
        decided="router",
    )
    return dataclasses.replace(base, **changes)


def cloud(seconds_ago: float, **changes: Any) -> LedgerRecord:
    values: dict[str, Any] = {
        "route": "cloud",
        "reasons": ("privacy:none", "difficulty:0.90>0.52"),
        "model": "gpt-4.1-mini",
        "provider": "openai",
        "latency_s": 2.0,
        "ttft_s": 0.4,
        "cloud_cost_usd": 0.25,
        "counterfactual_model": None,
        "counterfactual_cost_usd": None,
        "energy_cost_usd": 0.0,
        "cost_avoided_usd": 0.0,
    }
    return record(seconds_ago, **{**values, **changes})


@pytest.fixture
def home(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HYBRID_HOME", str(isolated / "home"))
    return isolated / "home"


@pytest.fixture
def ledger(home: Path) -> Path:
    path = home / "ledger.sqlite3"
    store = LedgerStore.open(path)
    store.append(
        [
            record(60),
            record(120, latency_s=1.5),
            record(180, reasons=("capacity:cpu_91%>85%",), status="error", error="boom"),
            cloud(240),
            cloud(
                300,
                reasons=("explicit:cloud",),
                model="claude-haiku-4-5",
                provider="anthropic",
                decided="client",
            ),
            record(3 * 86_400),  # outside 24h and 1h, inside 7d
        ]
    )
    store.close()
    return path


def stats_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    assert main(["stats", "--json", *argv]) == 0
    document = json.loads(capsys.readouterr().out)
    assert isinstance(document, dict)
    return document


def test_without_a_ledger_it_says_nothing_was_recorded_and_where_it_looked(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["stats"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("no requests recorded yet")
    assert str(home / "ledger.sqlite3") in out
    assert not (home / "ledger.sqlite3").exists()  # looking creates nothing


def test_without_a_ledger_json_is_empty_totals_and_the_line_goes_to_stderr(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["stats", "--json", "--by", "day"]) == 0
    captured = capsys.readouterr()
    document = json.loads(captured.out)
    assert document["recorded"] is False
    assert document["totals"]["requests"] == 0 and document["groups"] == []
    assert "no requests recorded yet" in captured.err


def test_the_summary_shows_requests_share_spend_savings_and_latency(
    ledger: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["stats"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"ledger: {ledger}"
    assert lines[1].startswith("window: last 24h (since ")
    text = "\n".join(lines)
    assert "requests      5 (3 local, 2 cloud, 0 refused, 1 errors; local share 60%)" in text
    assert "tokens        500 prompt, 250 completion" in text
    assert "cloud spend   $0.500000" in text
    assert "cost avoided  $0.000300" in text
    # Four answered requests: 0.5, 1.5, 2.0, 2.0 s; 1.5 s falls in the bucket up to 1.6 s.
    assert "latency       p50 <= 1.60 s, p95 <= 2.00 s" in text


@pytest.mark.parametrize(
    ("avoided", "shown"),
    [(-0.0000004, "$0.000000"), (-0.000012, "-$0.000012"), (-2.5, "-$2.50"), (0.0003, "$0.000300")],
)
def test_cost_avoided_below_zero_puts_the_sign_before_the_dollar(
    home: Path, capsys: pytest.CaptureFixture[str], avoided: float, shown: str
) -> None:
    # The energy of answers given to no client (a local shadow answer) is avoided spend below 0.
    store = LedgerStore.open(home / "ledger.sqlite3")
    store.append([record(60, cost_avoided_usd=avoided)])
    store.close()
    assert main(["stats"]) == 0
    assert f"cost avoided  {shown}\n" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("window", "requests"), [("1h", 5), ("24h", 5), ("7d", 6), ("30d", 6), ("all", 6)]
)
def test_since_picks_the_window(
    ledger: Path, capsys: pytest.CaptureFixture[str], window: str, requests: int
) -> None:
    document = stats_json(capsys, "--since", window)
    assert document["window"] == window
    assert document["totals"]["requests"] == requests


@pytest.mark.parametrize(
    ("by", "expected"),
    [
        ("route", {"local": 3, "cloud": 2}),
        ("model", {"gemma-3-270m-q4_k_m": 3, "gpt-4.1-mini": 1, "claude-haiku-4-5": 1}),
        ("reason", {"difficulty": 2, "capacity:cpu": 1, "privacy:none": 1, "explicit:cloud": 1}),
    ],
)
def test_by_groups_requests(
    ledger: Path, capsys: pytest.CaptureFixture[str], by: str, expected: dict[str, int]
) -> None:
    document = stats_json(capsys, "--by", by)
    groups = {g["key"]: g["totals"]["requests"] for g in document["groups"]}
    assert groups == expected
    assert sum(groups.values()) == document["totals"]["requests"]


def test_by_reason_groups_the_model_stages_decisions_by_stage_not_by_score(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = LedgerStore.open(home / "ledger.sqlite3")
    store.append(
        [
            record(60, reasons=("difficulty:0.18~probe:0.52<=0.61",)),
            record(70, reasons=("difficulty:0.17~probe:0.49<=0.61",)),
            cloud(80, reasons=("difficulty:0.35~probe:0.66>0.61",)),
            record(90, reasons=("difficulty:0.05<=0.50~probe_unavailable:busy",)),
            record(100, reasons=("difficulty:0.12<=0.50~probe_unavailable:busy",)),
        ]
    )
    store.close()

    document = stats_json(capsys, "--by", "reason")

    groups = {g["key"]: g["totals"]["requests"] for g in document["groups"]}
    assert groups == {"difficulty~probe": 3, "difficulty~probe_unavailable:busy": 2}


def test_by_day_is_one_utc_day_per_row_oldest_first(
    ledger: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    document = stats_json(capsys, "--by", "day", "--since", "all")
    days = [g["key"] for g in document["groups"]]
    assert days == sorted(days) and len(days) >= 2
    assert sum(g["totals"]["requests"] for g in document["groups"]) == 6


@pytest.mark.parametrize("by", ["route", "model", "reason", "day", "decided"])
def test_by_prints_an_aligned_table_under_the_summary(
    ledger: Path, capsys: pytest.CaptureFixture[str], by: str
) -> None:
    assert main(["stats", "--since", "all", "--by", by]) == 0
    out = capsys.readouterr().out
    table = out.split("\n\n")[-1].splitlines()
    assert table[0].split()[:3] == [by, "requests", "local"]
    assert len(table) >= 3  # the header and one row per group
    # The counts are right-aligned under their header.
    ends = {next(itertools.islice(re.finditer(r"\S+", row), 1, None)).end() for row in table}
    assert ends == {table[0].index("requests") + len("requests")}


def test_json_carries_totals_and_latency_as_documented(
    ledger: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    document = stats_json(capsys, "--by", "route")
    assert set(document) == {
        "labels",
        "ledger",
        "recorded",
        "window",
        "since",
        "totals",
        "latency",
        "by",
        "groups",
    }
    assert set(document["totals"]) == {
        "requests",
        "local",
        "lan",
        "cloud",
        "errors",
        "refused",
        "prompt_tokens",
        "completion_tokens",
        "cloud_spend_usd",
        "cost_avoided_usd",
        "local_share",
        "off_cloud_share",
        "prefill_saved_tokens",
    }
    assert document["latency"]["p50_s"] == 1.6  # the upper bound of 1.5 s's bucket
    assert document["latency"]["ttft_p95_s"] == 0.4
    local = next(g for g in document["groups"] if g["key"] == "local")
    assert local["latency"]["samples"] == 2  # the error is not an answered request


def refused(seconds_ago: float) -> LedgerRecord:
    """A request turned away before any model ran: a full local queue."""
    return record(
        seconds_ago,
        route="none",
        status="refused",
        reasons=("error:rate_limit_exceeded",),
        verdicts=(),
        score=None,
        model="none",
        provider="none",
        prompt_tokens=0,
        completion_tokens=0,
        ttft_s=None,
        error="the local model's queue is full",
        counterfactual_model=None,
        counterfactual_cost_usd=None,
        energy_cost_usd=0.0,
        cost_avoided_usd=0.0,
        decided=None,
    )


def test_refused_requests_count_apart_and_move_neither_the_share_nor_the_savings(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = LedgerStore.open(home / "ledger.sqlite3")
    store.append([record(60), cloud(120), refused(30), refused(40), refused(50)])
    store.close()
    assert main(["stats"]) == 0
    text = capsys.readouterr().out
    assert "requests      5 (1 local, 1 cloud, 3 refused, 0 errors; local share 50%)" in text
    assert "cost avoided  $0.000100" in text


def test_by_decided_shows_what_the_router_saved_apart_from_what_the_client_pinned(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = LedgerStore.open(home / "ledger.sqlite3")
    store.append(
        [
            record(60, decided="router"),
            record(70, decided="router"),
            record(80, decided="client", reasons=("explicit:local",), cost_avoided_usd=0.004),
            record(90, decided="mode", reasons=("mode:local-only",), cost_avoided_usd=0.002),
            cloud(100, decided="router"),
            refused(110),
        ]
    )
    store.close()
    document = stats_json(capsys, "--by", "decided")
    avoided = {g["key"]: g["totals"]["cost_avoided_usd"] for g in document["groups"]}
    assert avoided == pytest.approx({"router": 0.0002, "client": 0.004, "mode": 0.002, "none": 0})
    requests = {g["key"]: g["totals"]["requests"] for g in document["groups"]}
    assert requests == {"router": 3, "client": 1, "mode": 1, "none": 1}

    assert main(["stats", "--by", "decided"]) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[-5:]}
    header = ["decided", "requests", "local", "lan", "cloud", "refused", "errors"]
    assert rows["decided"][:7] == header
    assert "$0.000200" in rows["router"] and "$0.004000" in rows["client"]


def test_ledger_path_setting_is_where_stats_reads(
    isolated: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = isolated / "elsewhere" / "mine.sqlite3"
    store = LedgerStore.open(path)
    store.append([record(10)])
    store.close()
    monkeypatch.setenv("HYBRID_LEDGER__PATH", str(path))
    document = stats_json(capsys)
    assert document["ledger"] == str(path) and document["totals"]["requests"] == 1


def test_a_ledger_that_is_not_a_database_is_an_error_naming_it(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = home / "ledger.sqlite3"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a database at all, only some text " * 50)
    assert main(["stats"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("hybrid: error: the ledger") and str(path) in err


def test_records_a_killed_server_left_only_in_its_journal_are_counted(
    ledger: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = stats_json(capsys, "--by", "route")["totals"]["requests"]
    journal = Journal(journal_path(ledger))
    journal.append(cloud(5, id="journaled-only"))
    journal.close()

    after = stats_json(capsys, "--by", "route")
    assert after["totals"]["requests"] == before + 1
    cloud_group = next(g for g in after["groups"] if g["key"] == "cloud")
    assert cloud_group["totals"]["requests"] >= 1
    # Read, not written: the journal is still there for the next server start to commit.
    assert journal_path(ledger).stat().st_size > 0


def test_the_labels_line_says_how_many_shadow_labels_are_on_escalated_requests() -> None:
    import io

    from hybrid.cli.stats import _print_labels
    from hybrid.ledger.learning import LabelCount

    out = io.StringIO()
    counts = [
        LabelCount("ab" * 32, feedback=1, shadow=5, usable=6, with_vector=2, shadow_escalated=3),
        LabelCount("cd" * 32, feedback=0, shadow=1, usable=1),
    ]
    _print_labels(counts, out)
    first, second = out.getvalue().splitlines()
    assert first == (
        "labels        model abababababab: 1 feedback, 5 shadow (3 of them on escalated "
        "requests), 0 cascade; 6 usable by a refit, 2 with a prompt vector"
    )
    assert "1 shadow, 0 cascade" in second


@pytest.mark.parametrize("json_flag", [[], ["--json"]])
def test_a_ledger_path_naming_a_folder_is_a_usage_error_naming_the_file_to_give(
    isolated: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    json_flag: list[str],
) -> None:
    folder = isolated / "ledgers"
    store = LedgerStore.open(folder / "ledger.sqlite3")
    store.append([record(10)])
    store.close()
    monkeypatch.setenv("HYBRID_LEDGER__PATH", str(folder))
    assert main(["stats", *json_flag]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        f"hybrid: error: ledger.path {folder} is a folder; name the file, e.g. "
        f"{folder / 'ledger.sqlite3'}\n"
    )
