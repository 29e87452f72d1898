from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# The fake machine (hardware_fakes.idle_probe) serves every folder that builds an app.
sys.path.insert(0, str(Path(__file__).resolve().parent / "hardware"))


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Keep the real user's HYBRID_* variables, config, data dir and .env out of every test."""
    for name in list(os.environ):
        if name.upper().startswith("HYBRID_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    monkeypatch.chdir(tmp_path)
    return tmp_path
