from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from scripted import ScriptedBackend, scripted_app

from hybrid.settings import Settings, load_settings


@pytest.fixture
def settings_for(tmp_path: Path) -> Callable[..., Settings]:
    def build(**cli: object) -> Settings:
        environ = {"HYBRID_HOME": str(tmp_path / "home")}
        return load_settings(environ=environ, dotenv_file=None, cli=cli).settings

    return build


@pytest.fixture
def backend() -> ScriptedBackend:
    return ScriptedBackend()


@pytest.fixture
def client(settings_for: Callable[..., Settings], backend: ScriptedBackend) -> Iterator[TestClient]:
    settings = settings_for(**{"server.max_body_bytes": 4096, "probe.measure_bandwidth": False})
    app = scripted_app(settings, backend)
    with TestClient(app) as test_client:
        yield test_client
