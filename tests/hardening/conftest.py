"""Fixtures for the hardening tests: hybrid on a real loopback port, in front of the fake cloud
(both providers' keys point at it), so that a request that got through shows in its log."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest
from fake_cloud import FakeCloud
from live_app import cloud_settings, serving
from scripted import scripted_app

from hybrid.settings import Settings


@pytest.fixture(scope="session")
def cloud() -> Iterator[FakeCloud]:
    with FakeCloud() as fake:
        yield fake


@pytest.fixture
def fake(cloud: FakeCloud) -> FakeCloud:
    cloud.reset()
    return cloud


@pytest.fixture(scope="module")
def fresh_settings(
    cloud: FakeCloud, tmp_path_factory: pytest.TempPathFactory
) -> Callable[..., Settings]:
    """Builds settings as `cloud_settings` does, each time in a new home (and so ledger)."""

    def build(**cli: object) -> Settings:
        return cloud_settings(cloud, tmp_path_factory.mktemp("home"), **cli)

    return build


@pytest.fixture(scope="module")
def default_server(cloud: FakeCloud, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """hybrid with the default settings (loopback, no API key), shared by a module's tests."""
    settings = cloud_settings(cloud, tmp_path_factory.mktemp("home"))
    with serving(scripted_app(settings)) as base_url:
        yield base_url


@pytest.fixture
def hybrid(default_server: str) -> Iterator[str]:
    """The shared server, put back in ``auto`` mode after the test."""
    yield default_server
    httpx.post(f"{default_server}/v1/hybrid/mode", json={"mode": "auto"}).raise_for_status()
