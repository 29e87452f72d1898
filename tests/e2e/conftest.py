from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from server_process import RunningServer, ServeProcesses


@pytest.fixture(scope="session")
def hybrid_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hybrid-home")


@pytest.fixture(scope="session")
def start_server(
    hybrid_home: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., RunningServer]]:
    servers = ServeProcesses(hybrid_home, lambda: tmp_path_factory.mktemp("server"))
    yield servers.start
    servers.close()
