"""``hybrid stats`` on a shared ledger (``ledger.url``): it reads the PostgreSQL database, groups
the fleet by instance, counts this machine's journaled records, and masks the password."""

from __future__ import annotations

import dataclasses
import json

import pytest
from postgres import PASSWORD, PostgresDatabase
from test_stats_cmd import cloud, record

from hybrid.cli import main
from hybrid.ledger.journal import Journal, journal_path
from hybrid.ledger.store import LedgerStore
from hybrid.settings import Settings


@pytest.fixture
def shared(postgres_db: PostgresDatabase, monkeypatch: pytest.MonkeyPatch) -> PostgresDatabase:
    """A shared ledger holding requests from two daemons."""
    store = LedgerStore.open_url(postgres_db.url)
    store.append(
        [
            record(60, id="a1", instance="edge-a"),
            record(120, id="a2", instance="edge-a"),
            cloud(180, id="b1", instance="edge-b"),
        ]
    )
    store.close()
    monkeypatch.setenv("HYBRID_LEDGER__URL", postgres_db.url)
    return postgres_db


def test_stats_by_instance_reads_the_fleet_from_postgresql(
    shared: PostgresDatabase, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["stats", "--by", "instance", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["recorded"] is True
    assert PASSWORD not in document["ledger"] and "***" in document["ledger"]
    groups = {group["key"]: group["totals"] for group in document["groups"]}
    assert groups.keys() == {"edge-a", "edge-b"}
    assert (groups["edge-a"]["requests"], groups["edge-a"]["local"]) == (2, 2)
    assert (groups["edge-b"]["requests"], groups["edge-b"]["cloud"]) == (1, 1)
    assert document["totals"]["requests"] == 3


def test_records_waiting_in_this_machines_journal_count_too(
    shared: PostgresDatabase, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings()
    journal = Journal(journal_path(settings.ledger.resolved_path(settings.home)))
    journal.append(record(30, id="a3", instance="edge-a"))  # the database was away
    journal.append(record(60, id="a1", instance="edge-a"))  # synced already: counted once
    journal.close()
    assert main(["stats", "--by", "instance"]) == 0
    out = capsys.readouterr().out
    assert PASSWORD not in out and "ledger: postgresql://hybrid:***@" in out
    row = next(line for line in out.splitlines() if line.startswith("edge-a"))
    assert row.split()[1] == "3"


def test_a_database_that_is_down_is_one_masked_line(
    shared: PostgresDatabase, capsys: pytest.CaptureFixture[str]
) -> None:
    with shared.server.down():
        assert main(["stats"]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "unavailable" in err
    assert PASSWORD not in err and "Traceback" not in err


def test_old_records_without_an_instance_group_under_an_empty_key(
    shared: PostgresDatabase, capsys: pytest.CaptureFixture[str]
) -> None:
    store = LedgerStore.open_url(shared.url)
    store.append([dataclasses.replace(record(10, id="old"), instance="")])
    store.close()
    assert main(["stats", "--by", "instance", "--json", "--since", "1h"]) == 0
    keys = [group["key"] for group in json.loads(capsys.readouterr().out)["groups"]]
    assert sorted(keys) == ["", "edge-a", "edge-b"]
