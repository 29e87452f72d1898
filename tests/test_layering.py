"""Data flows one way: settings/hardware/models -> local backend -> HTTP API -> CLI.

A module may import from the left of that line, never from the right; commands that do not need
llama.cpp must not load it.  Each check runs in a fresh interpreter so that nothing imported by
another test hides a violation.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def modules_loaded_by(module: str) -> set[str]:
    code = f"import sys, json, {module}; print(json.dumps(sorted(sys.modules)))"
    output = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    return set(json.loads(output))


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [
        ("hybrid.settings", {"hybrid.hardware", "hybrid.models", "hybrid.local", "hybrid.api"}),
        ("hybrid.settings.sources", {"hybrid.hardware", "hybrid.models", "hybrid.local"}),
        ("hybrid.hardware.plan", {"hybrid.local", "hybrid.api", "llama_cpp"}),
        ("hybrid.hardware.probe", {"hybrid.local", "hybrid.api", "llama_cpp"}),
        ("hybrid.hardware.layout", {"hybrid.local", "hybrid.api", "llama_cpp"}),
        ("hybrid.models.gguf", {"hybrid.local", "hybrid.api", "llama_cpp"}),
        ("hybrid.models.catalog", {"hybrid.local", "hybrid.api", "llama_cpp"}),
        ("hybrid.local.backend", {"hybrid.api", "hybrid.cli", "fastapi", "starlette"}),
        ("hybrid.local.runtime", {"hybrid.api", "hybrid.cli", "fastapi"}),
        ("hybrid.cloud.openai_provider", {"hybrid.local", "hybrid.routing", "hybrid.api"}),
        ("hybrid.cloud.anthropic_provider", {"hybrid.local", "hybrid.routing", "hybrid.api"}),
        ("hybrid.routing.dispatcher", {"hybrid.api", "hybrid.cli", "fastapi", "llama_cpp"}),
        ("hybrid.routing.privacy", {"hybrid.local", "hybrid.cloud", "hybrid.api", "llama_cpp"}),
        ("hybrid.api.app", {"hybrid.cli", "llama_cpp"}),
    ],
)
def test_modules_import_only_from_their_left(module: str, forbidden: set[str]) -> None:
    loaded = modules_loaded_by(module)
    leaked = {m for m in loaded for f in forbidden if m == f or m.startswith(f + ".")}
    assert not leaked, f"{module} imports {sorted(leaked)}"
