"""``hybrid stats`` with answers from a team's LAN servers: counted beside local and cloud,
saving like local answers, never cloud spend."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import pytest

from hybrid.cli import main
from hybrid.ledger.record import LedgerRecord
from hybrid.ledger.store import LedgerStore


def local(request_id: str, **changes: Any) -> LedgerRecord:
    record = LedgerRecord(
        id=request_id,
        time=time.time() - 60,
        api="openai",
        route="local",
        reasons=("difficulty:0.21<=0.52",),
        verdicts=(),
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
    return dataclasses.replace(record, **changes)


def lan(request_id: str) -> LedgerRecord:
    # $2 per million tokens on gpu-box: 150 tokens cost $0.0003; the cloud would charge $0.0012.
    return local(
        request_id,
        route="lan",
        reasons=("lan:gpu-box/qwen2.5-32b", "capacity:eta_14s>8s"),
        model="gpu-box/qwen2.5-32b",
        provider="gpu-box",
        counterfactual_cost_usd=0.0012,
        energy_cost_usd=0.0003,
        cost_avoided_usd=0.0009,
    )


def cloud(request_id: str) -> LedgerRecord:
    return local(
        request_id,
        route="cloud",
        model="gpt-4.1-mini",
        provider="openai",
        cloud_cost_usd=0.25,
        counterfactual_model=None,
        counterfactual_cost_usd=None,
        energy_cost_usd=0.0,
        cost_avoided_usd=0.0,
    )


@pytest.fixture
def home(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HYBRID_HOME", str(isolated / "home"))
    home = isolated / "home"
    store = LedgerStore.open(home / "ledger.sqlite3")
    store.append([local("l1"), lan("n1"), lan("n2"), cloud("c1")])
    store.close()
    return home


def test_the_summary_counts_lan_answers_and_the_share_kept_off_the_cloud(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["stats"]) == 0
    out = capsys.readouterr().out

    assert (
        "requests      4 (1 local, 2 lan, 1 cloud, 0 refused, 0 errors; "
        "local share 25%, off cloud 75%)"
    ) in out
    assert "cloud spend   $0.250000" in out  # the cloud answer alone
    assert "cost avoided  $0.001900" in out  # the local answer and both LAN answers


def test_a_ledger_without_lan_answers_keeps_its_summary(
    isolated: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HYBRID_HOME", str(isolated / "home"))
    store = LedgerStore.open(isolated / "home" / "ledger.sqlite3")
    store.append([local("l1"), cloud("c1")])
    store.close()

    assert main(["stats"]) == 0
    out = capsys.readouterr().out

    assert "(1 local, 1 cloud, 0 refused, 0 errors; local share 50%)" in out
    assert " lan" not in out.split("\n\n")[1]


def test_the_route_table_has_a_lan_row_and_a_lan_column(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["stats", "--by", "route"]) == 0
    table = capsys.readouterr().out.split("\n\n")[-1].splitlines()
    header = table[0].split()
    rows = {row.split()[0]: dict(zip(header, row.split(), strict=False)) for row in table[1:]}

    assert header[:5] == ["route", "requests", "local", "lan", "cloud"]
    assert rows["lan"]["requests"] == "2" and rows["lan"]["lan"] == "2"
    assert rows["lan"]["cloud"] == "0" and rows["cloud"]["lan"] == "0"
    assert rows["lan"]["spend"] == "$0.000000"
    assert rows["lan"]["avoided"] == "$0.001800"


def test_json_totals_carry_lan_and_off_cloud_share(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["stats", "--json", "--by", "route"]) == 0
    document = json.loads(capsys.readouterr().out)

    totals = document["totals"]
    assert (totals["local"], totals["lan"], totals["cloud"]) == (1, 2, 1)
    assert totals["local_share"] == pytest.approx(0.25)
    assert totals["off_cloud_share"] == pytest.approx(0.75)
    assert totals["cloud_spend_usd"] == pytest.approx(0.25)
    groups = {g["key"]: g["totals"] for g in document["groups"]}
    assert groups["lan"]["lan"] == 2 and groups["lan"]["cloud_spend_usd"] == 0.0
