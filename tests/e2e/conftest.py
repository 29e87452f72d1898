from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from serve_process import RunningServer, ServeProcesses, free_port

# The fake cloud lives beside the other test helpers; its folder has no __init__.py.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fakecloud"))

__all__ = ["RunningServer", "free_port"]


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
