"""Two daemons sharing one PostgreSQL ledger, through real servers: each record names its
instance, ``/v1/hybrid/stats?by=instance`` and ``hybrid stats --by instance`` show the fleet,
and the ``request_finished`` event carries the instance."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from live_app import serving
from postgres import PostgresDatabase
from scripted import scripted_app

from hybrid.cli import main
from hybrid.settings import Settings, load_settings

CHAT = {"model": "hybrid", "messages": [{"role": "user", "content": "Say hello"}]}


def daemon(home: Path, db: PostgresDatabase, instance: str) -> Settings:
    environ = {
        "HYBRID_HOME": str(home),
        "HYBRID_LEDGER__URL": db.url,
        "HYBRID_LEDGER__INSTANCE": instance,
    }
    cli = {"probe.measure_bandwidth": False}
    return load_settings(environ=environ, dotenv_file=None, cli=cli).settings


def test_two_daemons_on_one_ledger_are_told_apart_by_instance(
    tmp_path: Path,
    postgres_db: PostgresDatabase,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    first = daemon(tmp_path / "a", postgres_db, "edge-a")
    second = daemon(tmp_path / "b", postgres_db, "edge-b")
    with serving(scripted_app(first)) as base_a, serving(scripted_app(second)) as base_b:
        with (
            httpx.Client(base_url=base_a, timeout=10) as a,
            httpx.Client(base_url=base_b, timeout=10) as b,
        ):
            for _ in range(2):
                assert a.post("/v1/chat/completions", json=CHAT).status_code == 200
            assert b.post("/v1/chat/completions", json=CHAT).status_code == 200
            # Each daemon reads the whole fleet's ledger (after its own records are in).
            b.get("/v1/hybrid/stats")
            stats = a.get("/v1/hybrid/stats", params={"by": "instance"}).json()
            with a.stream("GET", "/v1/hybrid/events") as events:
                lines = events.iter_lines()
                for line in lines:
                    if line.startswith("data:"):
                        snapshot = json.loads(line[5:])
                        break
    groups = {g["key"]: g["totals"]["requests"] for g in stats["groups"]["all_time"]}
    assert groups == {"edge-a": 2, "edge-b": 1}
    assert stats["all_time"]["requests"] == 3
    assert {event["instance"] for event in snapshot["recent"]} == {"edge-a"}

    monkeypatch.setenv("HYBRID_LEDGER__URL", postgres_db.url)
    assert main(["stats", "--by", "instance", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert {g["key"]: g["totals"]["requests"] for g in document["groups"]} == groups
