"""``hybrid route``: the server's routing code, on the command line, with the real model."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from hybrid.cli import main

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def home(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HYBRID_HOME", str(isolated / "home"))
    monkeypatch.setenv("HYBRID_PROBE__MEASURE_BANDWIDTH", "false")
    monkeypatch.setenv("HYBRID_LOCAL__N_CTX", "1024")
    return isolated


def test_a_prompt_prints_the_decision_and_each_verdict(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["route", "What is the capital of France?"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("route:   local (gemma-3-270m-q4_k_m)")
    for policy in ("capability", "length", "capacity"):
        assert f"  {policy}" in out
    assert "then:" not in out, "no cloud is configured: the answer is not read"


def test_a_local_route_says_the_cascade_reads_its_answer_when_a_cloud_can_take_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")  # a cloud is configured; nothing is sent
    assert main(["route", "What is the capital of France?"]) == 0
    then = [line for line in capsys.readouterr().out.splitlines() if line.startswith("then:")]
    assert len(then) == 1 and "routing.cascade" in then[0] and "openai/" in then[0]

    assert main(["route", "--json", "What is the capital of France?"]) == 0
    assert json.loads(capsys.readouterr().out)["cascade"] is True
    # A route the client fixed is not read, nor is any with the cascade switched off.
    assert main(["route", "--json", "--route", "local", "What is the capital of France?"]) == 0
    assert json.loads(capsys.readouterr().out)["cascade"] is False
    monkeypatch.setenv("HYBRID_ROUTING__CASCADE__ENABLED", "false")
    assert main(["route", "What is the capital of France?"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("route:   local") and "then:" not in out


def test_no_prompt_is_bad_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["route"]) == 2
    assert capsys.readouterr().err == (
        'hybrid: error: give a prompt (hybrid route "...") or use --jsonl\n'
    )


def test_jsonl_writes_one_line_per_input_and_reports_bad_lines(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = [
        {"prompt": "Say hello."},
        {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2000},
        "not json",
        {"prompt": 3},
    ]
    text = "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n"
    monkeypatch.setattr("sys.stdin", io.StringIO(text))
    assert main(["route", "--jsonl"]) == 1
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(out) == 4
    assert out[0]["target"] == "local" and set(out[0]) == {"target", "score", "reasons"}
    # Too long for the local context; with no cloud configured it stays local and says both.
    assert out[1]["target"] == "local"
    assert out[1]["reasons"][0] == "local:no_cloud_configured"
    assert out[1]["reasons"][1].startswith("length:")
    assert out[2]["error"].startswith("line 3: not JSON")
    assert "line 4" in out[3]["error"] and "prompt" in out[3]["error"]


def test_the_route_flag_acts_as_the_header(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["route", "--json", "--route", "cloud", "hi"]) == 0
    decision = json.loads(capsys.readouterr().out)
    assert decision["target"] == "cloud" and decision["reasons"] == ["explicit:cloud"]


def test_a_request_off_the_machine_names_the_lan_servers_it_is_offered_first(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from fake_cloud import closed_port

    box = {
        "name": "gpu-box",
        "base_url": f"http://127.0.0.1:{closed_port()}/v1",
        "models": ["qwen2.5-7b-instruct"],
    }
    monkeypatch.setenv("HYBRID_LAN__SERVERS", json.dumps([box]))
    assert main(["route", "--json", "--max-tokens", "2000", "Say hello."]) == 0
    decision = json.loads(capsys.readouterr().out)
    # Too long for the local context: off the machine, to the LAN first (nothing is sent).
    assert decision["target"] == "cloud" and decision["lan_servers"] == ["gpu-box"]
    assert decision["reasons"][0].startswith("length:")


def test_scores_are_read_beside_the_ledger_s_labelled_requests(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from labelled_traffic import replay

    from hybrid.routing.difficulty.store import shipped_models
    from hybrid.settings.ledger import LEDGER_FILE_NAME

    prompt = "What is the capital of Peru?"
    assert main(["route", "--json", prompt]) == 0
    alone = json.loads(capsys.readouterr().out)["score"]

    (sha,) = [f.name[:-5] for f in shipped_models().iterdir() if f.name.endswith(".json")]
    countries = ("France", "Chile", "Japan", "Kenya", "Norway", "Spain", "Egypt", "Canada", "Iran")
    # Questions like it, every one answered wrong, some escalated and labelled by shadow answers.
    wrong = [(f"What is the capital of {country}?", True) for country in countries * 6]
    ledger = home / "home" / LEDGER_FILE_NAME
    replay(ledger, wrong, sha, escalations_shadowed=True)

    assert main(["route", "--json", prompt]) == 0
    beside = json.loads(capsys.readouterr().out)["score"]
    assert beside > alone + 0.2

    monkeypatch.setenv("HYBRID_ROUTING__DIFFICULTY__LABELLED_NEIGHBOURS", "0")
    assert main(["route", "--json", prompt]) == 0
    assert json.loads(capsys.readouterr().out)["score"] == alone
