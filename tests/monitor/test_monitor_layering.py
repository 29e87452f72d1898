"""The monitor talks to the daemon over HTTP only: it never loads the server or the model.

Checked in a fresh interpreter, so nothing another test imported can hide a violation.
"""

from __future__ import annotations

import json
import subprocess
import sys

FORBIDDEN = (
    "llama_cpp",
    "hybrid.api",
    "hybrid.local",
    "hybrid.routing",
    "fastapi",
    "uvicorn",
    "starlette",
)


def test_the_monitor_and_its_command_import_neither_server_nor_model() -> None:
    code = (
        "import sys, json\n"
        "import hybrid.cli, hybrid.cli.monitor, hybrid.monitor.app, hybrid.settings\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    loaded = json.loads(
        subprocess.run(
            [sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=60
        ).stdout
    )

    leaked = sorted(m for m in loaded for f in FORBIDDEN if m == f or m.startswith(f + "."))
    assert not leaked, f"hybrid monitor imports {leaked}"
    assert "textual" in loaded  # the check ran against the real app
