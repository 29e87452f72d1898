"""A script of ``scripts/`` imported in a test, the way it runs: with ``scripts/`` on
``sys.path``, since each script imports its neighbours by bare name."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


@contextmanager
def script(name: str) -> Iterator[ModuleType]:
    """``scripts/<name>.py`` as a module, with ``scripts/`` on ``sys.path`` until the block
    ends (a script may import a neighbour when a function of it runs)."""
    sys.path.insert(0, str(SCRIPTS))
    try:
        yield importlib.import_module(name)
    finally:
        sys.path.remove(str(SCRIPTS))
