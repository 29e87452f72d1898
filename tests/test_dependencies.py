"""Every dependency is bounded above, so a new major release cannot break a fresh install.

``scripts/check --latest`` installs the newest versions these bounds allow and runs the suite.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def requirements() -> list[Requirement]:
    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    listed = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        listed.extend(extra)
    return [Requirement(text) for text in listed]


@pytest.mark.parametrize("requirement", requirements(), ids=str)
def test_each_dependency_has_an_upper_bound_at_most_its_next_major(
    requirement: Requirement,
) -> None:
    specs = list(requirement.specifier)
    pinned = [s for s in specs if s.operator == "=="]
    uppers = [s for s in specs if s.operator in ("<", "<=", "~=")]
    assert pinned or uppers, f"{requirement} has no upper bound"
    lowers = [Version(s.version) for s in specs if s.operator in (">=", ">", "==", "~=")]
    assert lowers, f"{requirement} has no lower bound"
    for upper in (s for s in uppers if s.operator == "<"):
        low, high = min(lowers), Version(upper.version)
        # The next major (or, before 1.0, the next minor at most 1.0).
        limit = Version(f"{low.major + 1}") if low.major else Version("1")
        assert high <= limit, f"{requirement}: {high} is past the next major after {low}"
