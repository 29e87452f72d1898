"""``hybrid serve`` with a shared ledger (``ledger.url``): a wrong password or a schema from a
newer hybrid stops the start in one line, the password masked; a database that is down only
warns, and the daemon serves."""

from __future__ import annotations

import pytest
from postgres import PASSWORD, PostgresDatabase

from hybrid.cli import main
from hybrid.cli.serve import _check_ledger
from hybrid.ledger.store import LedgerStore
from hybrid.settings import Settings


def one_line_refusal(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err and PASSWORD not in err
    return lines[0]


def test_a_wrong_password_stops_serve_in_one_masked_line(
    postgres_db: PostgresDatabase,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    wrong = "Wrong-" + PASSWORD
    monkeypatch.setenv("HYBRID_LEDGER__URL", postgres_db.url_with(password=wrong))
    assert main(["serve", "--port", "1"]) == 1
    line = one_line_refusal(capsys.readouterr().err)
    assert wrong not in line and "***" in line and "password" in line
    assert "ledger.url" in line


def test_a_schema_from_a_newer_hybrid_stops_serve_in_one_line(
    postgres_db: PostgresDatabase,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    LedgerStore.open_url(postgres_db.url).close()
    with postgres_db.connect() as conn:
        conn.execute("UPDATE hybrid_schema SET version = version + 1 WHERE part = 'ledger'")
    monkeypatch.setenv("HYBRID_LEDGER__URL", postgres_db.url)
    assert main(["serve", "--port", "1"]) == 1
    line = one_line_refusal(capsys.readouterr().err)
    assert "newer" in line and "upgrade hybrid" in line and "***" in line


def test_a_database_that_is_down_only_warns(
    postgres_db: PostgresDatabase,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("HYBRID_LEDGER__URL", postgres_db.url)
    with postgres_db.server.down():
        _check_ledger(Settings())  # returns: serve goes on to listen
    err = capsys.readouterr().err
    assert "warning" in err and "journal" in err and PASSWORD not in err
