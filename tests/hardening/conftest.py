"""Fixtures for the hardening tests: hybrid on a real loopback port, in front of the fake cloud
(both providers' keys point at it), so that a request that got through shows in its log."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

# The scripted local model and the loopback server live beside the API tests, the fake cloud in
# its own folder; neither folder has an __init__.py.
_TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(_TESTS / "api"))
sys.path.insert(0, str(_TESTS / "fakecloud"))
# A real `hybrid serve` subprocess and the ledger's load helpers, beside the end-to-end tests.
sys.path.insert(0, str(_TESTS / "e2e"))

from fake_cloud import FakeCloud  # noqa: E402
from live_app import serving  # noqa: E402
from scripted import scripted_app  # noqa: E402

from hybrid.settings import Settings, load_settings  # noqa: E402


@pytest.fixture(scope="session")
def cloud() -> Iterator[FakeCloud]:
    with FakeCloud() as fake:
        yield fake


@pytest.fixture
def fake(cloud: FakeCloud) -> FakeCloud:
    cloud.reset()
    return cloud


def settings_with(cloud: FakeCloud, home: Path, **cli: object) -> Settings:
    """Settings with both cloud providers on the fake cloud, plus the given dotted values."""
    environ = {
        "HYBRID_HOME": str(home),
        "OPENAI_API_KEY": cloud.openai_key,
        "OPENAI_BASE_URL": f"{cloud.base_url}/v1",
        "ANTHROPIC_API_KEY": cloud.anthropic_key,
        "ANTHROPIC_BASE_URL": cloud.base_url,
    }
    cli = {"probe.measure_bandwidth": False, **cli}
    return load_settings(environ=environ, dotenv_file=None, cli=cli).settings


@pytest.fixture
def serve(cloud: FakeCloud, tmp_path: Path) -> Iterator[Callable[..., str]]:
    """Start hybrid (scripted local model) with these settings on a loopback port; returns its
    base URL."""
    with contextlib.ExitStack() as stack:

        def start(**cli: object) -> str:
            settings = settings_with(cloud, tmp_path / "home", **cli)
            return stack.enter_context(serving(scripted_app(settings)))

        yield start


@pytest.fixture(scope="module")
def fresh_settings(
    cloud: FakeCloud, tmp_path_factory: pytest.TempPathFactory
) -> Callable[..., Settings]:
    """Builds settings as `settings_with` does, each time in a new home (and so ledger)."""

    def build(**cli: object) -> Settings:
        return settings_with(cloud, tmp_path_factory.mktemp("home"), **cli)

    return build


@pytest.fixture(scope="module")
def default_server(cloud: FakeCloud, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """hybrid with the default settings (loopback, no API key), shared by a module's tests."""
    settings = settings_with(cloud, tmp_path_factory.mktemp("home"))
    with serving(scripted_app(settings)) as base_url:
        yield base_url


@pytest.fixture
def hybrid(default_server: str) -> Iterator[str]:
    """The shared server, put back in ``auto`` mode after the test."""
    yield default_server
    httpx.post(f"{default_server}/v1/hybrid/mode", json={"mode": "auto"}).raise_for_status()
