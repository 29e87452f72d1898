from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# What tests in more than one folder share (the fake cloud, the scripted app, servers on
# loopback ports and in subprocesses, fake hardware, GGUF files) lives in tests/helpers, imported
# by module name. Test folders have no __init__.py, so every module name there is unique.
sys.path.insert(0, str(Path(__file__).resolve().parent / "helpers"))

from fake_cloud import FakeCloud
from soak_tally import SoakTally

# The PostgreSQL server (session) and a fresh database per test: postgres_server, postgres_db.
pytest_plugins = ["postgres"]

_TALLY = pytest.StashKey[SoakTally]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--soak",
        action="store_true",
        help="also run the long hardening tests (marked soak); scripts/soak runs only those",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_TALLY] = SoakTally()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--soak"):
        return
    skip = pytest.mark.skip(reason="a soak test: run with --soak, or scripts/soak")
    for item in items:
        if "soak" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def soak_tally(pytestconfig: pytest.Config) -> SoakTally:
    """Where soak tests count what they sent and what went wrong, for the summary table."""
    return pytestconfig.stash[_TALLY]


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    tally = config.stash[_TALLY]
    if tally.parts:
        terminalreporter.write_sep("=", "soak summary (every column but requests must be 0)")
        terminalreporter.write_line(tally.table())
        for failure in tally.failures():
            terminalreporter.write_line(f"FAILED {failure}", red=True)


def pytest_sessionfinish(session: pytest.Session) -> None:
    if session.config.stash[_TALLY].failures() and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Keep the real user's HYBRID_* variables, config, data dir and .env out of every test."""
    for name in list(os.environ):
        if name.upper().startswith("HYBRID_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    # Model discovery reads other tools' stores under HOME and these variables: none of the user's.
    monkeypatch.setenv("HOME", str(tmp_path / "user-home"))
    for name in ("OLLAMA_MODELS", "HF_HOME", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("LLAMA_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def cloud() -> Iterator[FakeCloud]:
    """The fake cloud on a loopback port; folders and modules override it with their own."""
    with FakeCloud() as fake:
        yield fake


@pytest.fixture
def serve(cloud: FakeCloud, tmp_path: Path) -> Iterator[Callable[..., str]]:
    """Start hybrid (scripted local model, both providers on `cloud`) with these dotted settings
    on a loopback port; returns its base URL. Servers stop when the test ends."""
    # Imported here: the app and uvicorn are not every test folder's business.
    from live_app import cloud_settings, serving
    from scripted import scripted_app

    with contextlib.ExitStack() as stack:

        def start(**cli: object) -> str:
            settings = cloud_settings(cloud, tmp_path / "home", **cli)
            return stack.enter_context(serving(scripted_app(settings)))

        yield start
