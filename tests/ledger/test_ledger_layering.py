"""The ledger sits left of the server: it imports no server, router, backend or llama.cpp."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

FORBIDDEN = {
    "hybrid.api",
    "hybrid.routing",
    "hybrid.local",
    "hybrid.cloud",
    "hybrid.cli",
    "hybrid.monitor",
    "llama_cpp",
    "fastapi",
    "starlette",
    "httpx",
}


@pytest.mark.parametrize("module", ["hybrid.ledger", "hybrid.ledger.writer"])
def test_the_ledger_imports_only_from_its_left(module: str) -> None:
    code = f"import sys, json, {module}; print(json.dumps(sorted(sys.modules)))"
    loaded = set(
        json.loads(
            subprocess.run(
                [sys.executable, "-c", code], check=True, capture_output=True, text=True
            ).stdout
        )
    )
    leaked = {m for m in loaded for f in FORBIDDEN if m == f or m.startswith(f + ".")}
    assert not leaked, f"{module} imports {sorted(leaked)}"
