"""Scoring must stay light: the difficulty model never pulls in the model runtime or the CLI."""

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
        (
            "hybrid.routing.difficulty.store",
            {"llama_cpp", "hybrid.local", "hybrid.api", "hybrid.cli", "hybrid.routing.calibration"},
        ),
        ("hybrid.routing.calibration.fitting", {"llama_cpp", "hybrid.local", "hybrid.api"}),
        # `hybrid --help` imports every command module: this one must not cost numpy.
        ("hybrid.cli.calibrate", {"numpy", "llama_cpp", "hybrid.routing", "hybrid.local"}),
    ],
)
def test_modules_import_only_what_they_need(module: str, forbidden: set[str]) -> None:
    loaded = modules_loaded_by(module)
    leaked = {m for m in loaded for f in forbidden if m == f or m.startswith(f + ".")}
    assert not leaked, f"{module} imports {sorted(leaked)}"
