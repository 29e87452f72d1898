"""Data flows one way, and a module loads only what it needs.

- The layering is the README's architecture, written as import-linter contracts in
  pyproject.toml (``[tool.importlinter]``) and checked over every import, function-level ones
  too: a package imports only from the layers below it, and the monitor only talks HTTP to the
  daemon.  ``scripts/check`` runs the same contracts (``lint-imports``).
- What importing a module *loads* is checked in a fresh interpreter, so that nothing another test
  imported can hide it: commands that do not need llama.cpp, numpy or the server must not pay
  for them, which the contracts cannot tell from a deferred import.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SERVER = {"hybrid.api", "fastapi", "starlette", "uvicorn"}


def test_the_import_contracts_are_kept() -> None:
    # In an interpreter of its own: import-linter configures logging as it runs, which disables
    # every logger that exists (hybrid's too) for the tests after it in this process.
    code = "import importlinter.cli as c; raise SystemExit(c.lint_imports(no_cache=True))"
    run = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,  # where pyproject.toml holds the contracts
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def modules_loaded_by(*modules: str) -> set[str]:
    """Every module in ``sys.modules`` after importing ``modules`` in a fresh interpreter."""
    code = f"import sys, json, {', '.join(modules)}; print(json.dumps(sorted(sys.modules)))"
    output = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=60
    ).stdout
    return set(json.loads(output))


@pytest.mark.parametrize(
    ("modules", "forbidden"),
    [
        (("hybrid.settings",), {"hybrid.hardware", "hybrid.models", "hybrid.local", *SERVER}),
        (("hybrid.hardware.plan", "hybrid.hardware.probe"), {"llama_cpp", *SERVER}),
        (
            ("hybrid.models.gguf", "hybrid.models.catalog", "hybrid.models.resolve"),
            {"llama_cpp", *SERVER},
        ),
        (("hybrid.local.backend", "hybrid.local.runtime"), {"hybrid.cli", *SERVER}),
        (
            ("hybrid.cloud.openai_provider", "hybrid.cloud.anthropic_provider"),
            {"hybrid.local", "hybrid.routing", "llama_cpp", *SERVER},
        ),
        (
            ("hybrid.wire.openai.read", "hybrid.wire.anthropic.read", "hybrid.wire.sse"),
            {"hybrid.cloud", "hybrid.routing", "hybrid.local", "llama_cpp", *SERVER},
        ),
        (("hybrid.ledger", "hybrid.ledger.writer"), {"llama_cpp", "httpx", "httpx2", *SERVER}),
        (("hybrid.routing.dispatcher",), {"hybrid.cli", "hybrid.local", "llama_cpp", *SERVER}),
        (("hybrid.routing.privacy",), {"hybrid.local", "hybrid.cloud", "llama_cpp", *SERVER}),
        (
            ("hybrid.routing.difficulty.store",),
            {"llama_cpp", "hybrid.local", "hybrid.routing.calibration", *SERVER},
        ),
        (("hybrid.routing.calibration.fitting",), {"llama_cpp", "hybrid.local", *SERVER}),
        (
            ("hybrid.service.build", "hybrid.service.answering"),
            {"hybrid.api", "hybrid.cli", "hybrid.local", "llama_cpp", *SERVER},
        ),
        (("hybrid.api.app",), {"hybrid.cli", "llama_cpp"}),
        # `hybrid --help` imports every command module: calibrate must not cost numpy.
        (("hybrid.cli.calibrate",), {"numpy", "llama_cpp", "hybrid.routing", "hybrid.local"}),
        # `hybrid monitor` starts at once: neither the server nor the model.
        (
            ("hybrid.cli", "hybrid.cli.monitor", "hybrid.monitor.app", "hybrid.settings"),
            {"llama_cpp", "hybrid.local", "hybrid.routing", "hybrid.cloud", *SERVER},
        ),
    ],
    ids=lambda value: value[0] if isinstance(value, tuple) else None,
)
def test_importing_a_module_loads_only_what_it_needs(
    modules: tuple[str, ...], forbidden: set[str]
) -> None:
    loaded = modules_loaded_by(*modules)
    assert set(modules) <= loaded  # the check ran against the real modules
    leaked = {m for m in loaded for f in forbidden if m == f or m.startswith(f + ".")}
    assert not leaked, f"{', '.join(modules)} load {sorted(leaked)}"
