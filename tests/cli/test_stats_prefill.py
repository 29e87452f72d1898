"""``hybrid stats`` shows the prompt tokens local answers reused from the model's cache."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import pytest

from hybrid.cli import main
from hybrid.ledger.record import LedgerRecord
from hybrid.ledger.store import LedgerStore


def local(cache_read_tokens: int) -> LedgerRecord:
    return LedgerRecord(
        id=f"r{cache_read_tokens}",
        time=time.time() - 60,
        api="openai",
        route="local",
        reasons=("difficulty:0.21<=0.52",),
        verdicts=(),
        score=0.21,
        model_requested="hybrid",
        model="gemma-3-270m-q4_k_m",
        provider="local",
        prompt_tokens=400,
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
        cache_read_tokens=cache_read_tokens,
        decided="router",
    )


@pytest.fixture
def home(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HYBRID_HOME", str(isolated / "home"))
    home = isolated / "home"
    store = LedgerStore.open(home / "ledger.sqlite3")
    cloud = dataclasses.replace(
        local(900), id="c", route="cloud", model="gpt-4.1-mini", provider="openai"
    )
    store.append([local(300), local(200), cloud])
    store.close()
    return home


def test_the_summary_and_the_route_table_show_prefill_saved(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["stats", "--by", "route"]) == 0
    out = capsys.readouterr().out
    assert "prefill saved 500 prompt tokens reused from the local model's cache" in out
    table = out.split("\n\n")[-1].splitlines()
    reused = table[0].split().index("reused")
    rows = {row.split()[0]: row.split()[reused] for row in table[1:]}
    # The cloud provider's cache reads are its own, priced in its spend.
    assert rows == {"local": "500", "cloud": "0"}


def test_json_totals_carry_prefill_saved(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stats", "--json", "--by", "route"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["totals"]["prefill_saved_tokens"] == 500
    groups = {g["key"]: g["totals"]["prefill_saved_tokens"] for g in document["groups"]}
    assert groups == {"local": 500, "cloud": 0}
