"""The cloud providers sit left of routing and the HTTP API, and never need llama.cpp."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    "module", ["hybrid.cloud.openai_provider", "hybrid.cloud.anthropic_provider"]
)
def test_providers_import_nothing_from_their_right(module: str) -> None:
    code = f"import sys, json, {module}; print(json.dumps(sorted(sys.modules)))"
    loaded = json.loads(
        subprocess.run(
            [sys.executable, "-c", code], check=True, capture_output=True, text=True
        ).stdout
    )
    forbidden = ("hybrid.api", "hybrid.routing", "hybrid.cli", "hybrid.local", "llama_cpp")
    leaked = [m for m in loaded for f in forbidden if m == f or m.startswith(f + ".")]
    assert not leaked, f"{module} imports {leaked}"
