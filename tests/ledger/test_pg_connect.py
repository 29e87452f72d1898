"""Connecting to a PostgreSQL ledger, against a real server: each failure becomes one line
that says what to do, with the password masked; schema versions are kept per part."""

from __future__ import annotations

import threading

import psycopg
import pytest
from fake_cloud_loop import closed_port
from postgres import PASSWORD, PostgresDatabase, PostgresServer

from hybrid.errors import (
    ConfigError,
    LedgerAccessError,
    LedgerError,
    LedgerSchemaError,
    LedgerUnavailableError,
)
from hybrid.ledger.pg import (
    check_schema,
    connect,
    mask_url,
    migrate,
    schema_version,
    scrub,
    translate,
)

MIGRATIONS = (
    ("CREATE TABLE things (id INTEGER PRIMARY KEY)",),
    ("ALTER TABLE things ADD COLUMN name TEXT",),
)


def one_clear_line(error: Exception) -> str:
    text = str(error)
    assert "\n" not in text
    assert PASSWORD not in text
    return text


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://hybrid:pw@db:5432/ledger", "postgresql://hybrid:***@db:5432/ledger"),
        ("postgres://u:p@ss/w:rd@h/db?sslmode=require", "postgres://u:***@h/db?sslmode=require"),
        (
            "postgresql://u@h/db?password=pw&sslmode=require",
            "postgresql://u@h/db?password=***&sslmode=require",
        ),
        ("postgresql://h:5432/db", "postgresql://h:5432/db"),
        ("host=db user=u password='a b' dbname=x", "host=db user=u password=*** dbname=x"),
    ],
)
def test_mask_url_hides_only_the_password(url: str, shown: str) -> None:
    assert mask_url(url) == shown


def test_scrub_removes_a_percent_encoded_password_in_both_forms() -> None:
    url = "postgresql://u:p%40ss@h/db"
    assert scrub("failed for p%40ss and p@ss", url) == "failed for *** and ***"


def test_connect_opens_a_transactional_connection(postgres_db: PostgresDatabase) -> None:
    with connect(postgres_db.url) as conn:
        assert not conn.autocommit
        assert conn.execute("SHOW statement_timeout").fetchone() == ("30s",)
        conn.execute("CREATE TABLE kept (n INTEGER)")
        conn.execute("INSERT INTO kept VALUES (1)")
        conn.commit()
        conn.execute("INSERT INTO kept VALUES (2)")
        conn.rollback()
    with postgres_db.connect() as other:
        assert other.execute("SELECT n FROM kept").fetchall() == [(1,)]


def test_a_wrong_password_is_one_line_naming_the_user(postgres_db: PostgresDatabase) -> None:
    with pytest.raises(LedgerAccessError) as caught:
        connect(postgres_db.url_with(password="not-the-password"))
    text = one_clear_line(caught.value)
    assert text.startswith("ledger.url (postgresql://hybrid:***@127.0.0.1:")
    assert 'password authentication failed for user "hybrid"' in text
    assert "fix the user, password or database in ledger.url" in text
    assert "not-the-password" not in text


def test_a_missing_database_is_an_access_error(postgres_server: PostgresServer) -> None:
    with pytest.raises(LedgerAccessError) as caught:
        connect(postgres_server.url("no_such_ledger"))
    assert 'database "no_such_ledger" does not exist' in one_clear_line(caught.value)


def test_nothing_listening_is_unavailable(postgres_db: PostgresDatabase) -> None:
    url = f"postgresql://hybrid:{PASSWORD}@127.0.0.1:{closed_port()}/ledger"
    with pytest.raises(LedgerUnavailableError) as caught:
        connect(url, timeout_s=2)
    text = one_clear_line(caught.value)
    assert "Connection refused" in text
    assert "postgresql://hybrid:***@127.0.0.1:" in text


def test_a_database_that_goes_away_and_returns(
    postgres_server: PostgresServer, postgres_db: PostgresDatabase
) -> None:
    conn = connect(postgres_db.url)
    with postgres_server.down():
        # The open connection is cut, and a new one is refused: both say "unavailable".
        with pytest.raises(psycopg.Error) as lost:
            conn.execute("SELECT 1")
        assert isinstance(
            translate(lost.value, postgres_db.url, doing="write"), LedgerUnavailableError
        )
        with pytest.raises(LedgerUnavailableError):
            connect(postgres_db.url, timeout_s=2)
    conn.close()
    with connect(postgres_db.url) as again:
        assert again.execute("SELECT 1").fetchone() == (1,)


def test_a_crashed_server_is_unavailable_too(
    postgres_server: PostgresServer, postgres_db: PostgresDatabase
) -> None:
    conn = connect(postgres_db.url)
    with postgres_server.down(mode="immediate"):
        with pytest.raises(psycopg.Error) as lost:
            conn.execute("SELECT 1")
        error = translate(lost.value, postgres_db.url, doing="write records")
        assert isinstance(error, LedgerUnavailableError)
        assert "(write records)" in one_clear_line(error)
    conn.close()


def test_a_malformed_url_is_a_config_error_without_the_password() -> None:
    with pytest.raises(ConfigError) as caught:
        connect(f"postgresql://hybrid:{PASSWORD}@127.0.0.1/db?no_such_option=1")
    text = one_clear_line(caught.value)
    assert "ledger.url is not a valid PostgreSQL URL" in text
    assert "no_such_option" in text


def test_a_bad_port_says_to_fix_the_url() -> None:
    with pytest.raises(LedgerAccessError) as caught:
        connect(f"postgresql://hybrid:{PASSWORD}@127.0.0.1:port/db")
    assert "ledger.url" in one_clear_line(caught.value)


def test_a_failed_statement_is_a_plain_ledger_error(postgres_db: PostgresDatabase) -> None:
    with connect(postgres_db.url) as conn, pytest.raises(psycopg.Error) as caught:
        conn.execute("SELECT * FROM no_such_table")
    error = translate(caught.value, postgres_db.url, doing="read records")
    assert type(error) is LedgerError
    assert 'relation "no_such_table" does not exist' in one_clear_line(error)


def test_migrate_creates_each_version_once(postgres_db: PostgresDatabase) -> None:
    with connect(postgres_db.url) as conn:
        assert schema_version(conn, "things") == 0
        assert migrate(conn, "things", MIGRATIONS[:1], url=postgres_db.url) == 1
        assert migrate(conn, "things", MIGRATIONS, url=postgres_db.url) == 2
        assert migrate(conn, "things", MIGRATIONS, url=postgres_db.url) == 2
        assert schema_version(conn, "things") == 2
        assert schema_version(conn, "other") == 0
        conn.execute("INSERT INTO things (id, name) VALUES (1, 'a')")


def test_daemons_starting_together_migrate_once(postgres_db: PostgresDatabase) -> None:
    start = threading.Barrier(4)
    failures: list[BaseException] = []

    def daemon() -> None:
        with connect(postgres_db.url) as conn:
            start.wait()
            try:
                migrate(conn, "things", MIGRATIONS, url=postgres_db.url)
            except BaseException as exc:
                failures.append(exc)

    threads = [threading.Thread(target=daemon) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    with connect(postgres_db.url) as conn:
        assert schema_version(conn, "things") == 2


def test_a_failed_migration_leaves_the_old_version(postgres_db: PostgresDatabase) -> None:
    broken = (*MIGRATIONS[:1], ("CREATE TABLE more (n INTEGER)", "NOT SQL AT ALL"))
    with connect(postgres_db.url) as conn:
        migrate(conn, "things", MIGRATIONS[:1], url=postgres_db.url)
        with pytest.raises(LedgerError) as caught:
            migrate(conn, "things", broken, url=postgres_db.url)
        assert "migrate the things tables" in one_clear_line(caught.value)
        assert schema_version(conn, "things") == 1
        assert conn.execute("SELECT to_regclass('more')").fetchone() == (None,)


def test_a_newer_schema_is_refused_in_one_line(postgres_db: PostgresDatabase) -> None:
    with connect(postgres_db.url) as conn:
        migrate(conn, "things", MIGRATIONS, url=postgres_db.url)
        conn.execute("UPDATE hybrid_schema SET version = 7 WHERE part = 'things'")
        conn.commit()
        with pytest.raises(LedgerSchemaError) as caught:
            check_schema(conn, "things", 2, url=postgres_db.url)
        text = one_clear_line(caught.value)
        assert "things schema version 7, newer than this hybrid's 2" in text
        assert "postgresql://hybrid:***@" in text
        with pytest.raises(LedgerSchemaError):
            migrate(conn, "things", MIGRATIONS, url=postgres_db.url)
        assert check_schema(conn, "other", 2, url=postgres_db.url) == 0


def test_a_role_without_rights_is_an_access_error(postgres_server: PostgresServer) -> None:
    # hybrid does not own the postgres database, and since PostgreSQL 15 only the owner may
    # create tables in its public schema.
    url = postgres_server.url("postgres")
    with connect(url) as conn, pytest.raises(LedgerAccessError) as caught:
        migrate(conn, "things", MIGRATIONS, url=url)
    assert "permission denied" in one_clear_line(caught.value)
