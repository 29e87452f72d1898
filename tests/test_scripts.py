"""Every script the README shows runs after the README's install, with nothing else installed.

The test environment is that install (``pip install -e '.[test]'``), so a script that needs a
package neither ``hybrid`` nor its ``test`` extra brings fails here, not on a user's machine.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"

README_SCRIPTS = sorted(set(re.findall(r"\bscripts/([\w.-]+)", (ROOT / "README.md").read_text())))
PYTHON_SCRIPTS = sorted(path.name for path in SCRIPTS.glob("*.py"))


def imported_modules(path: Path) -> set[str]:
    """The top-level names of every module a file imports, at any depth of its code."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.partition(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.partition(".")[0])
    return names


def test_the_readme_names_scripts_that_exist() -> None:
    assert README_SCRIPTS, "the README names no script; this test lost its subject"
    missing = [name for name in README_SCRIPTS if not (SCRIPTS / name).is_file()]
    assert missing == []


@pytest.mark.parametrize("name", PYTHON_SCRIPTS)
def test_every_module_a_script_imports_is_installed(name: str) -> None:
    # Function-level imports count: a plot drawn at the end of a long run is still part of it.
    siblings = {path.stem for path in SCRIPTS.glob("*.py")}
    missing = sorted(
        module
        for module in imported_modules(SCRIPTS / name)
        if module not in siblings and importlib.util.find_spec(module) is None
    )
    assert missing == [], (
        f"scripts/{name} imports {missing}, which `pip install -e '.[test]'` does not install"
    )


@pytest.mark.parametrize("name", [name for name in README_SCRIPTS if name.endswith(".py")])
def test_every_python_script_the_readme_shows_starts(name: str) -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPTS / name), "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage:")


def test_the_lan_benchmark_starts_and_refuses_a_run_too_short_to_kill_a_server_in() -> None:
    script = [sys.executable, str(SCRIPTS / "bench_lan.py")]
    helped = subprocess.run(
        [*script, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    refused = subprocess.run(
        [*script, "--requests", "2"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )

    assert helped.returncode == 0, helped.stderr
    assert helped.stdout.startswith("usage:") and "round_robin" in helped.stdout
    assert refused.returncode == 2
    assert "--requests must be at least 3" in refused.stderr


def test_the_router_evaluation_figure_is_an_svg_with_every_curve(tmp_path: Path) -> None:
    sys.path.insert(0, str(SCRIPTS))
    try:
        import svg_chart
    finally:
        sys.path.remove(str(SCRIPTS))
    panel = svg_chart.Panel(
        "Quality vs. escalation",
        "requests escalated (%)",
        "quality",
        [
            svg_chart.Series("calibrated <0.76>", [0, 50, 100], [0.2, 0.8, 1.0], "#1f77b4"),
            svg_chart.Series("random", [0, 100], [0.2, 1.0], "#7f7f7f", "--"),
            svg_chart.Series("threshold", [40], [0.7], "#1f77b4", dots=True),
        ],
        x_range=(0, 100),
        hlines=[0.95],
    )

    root = ET.fromstring(svg_chart.render([panel, panel]))

    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    texts = [element.text for element in root.iter("{http://www.w3.org/2000/svg}text")]
    assert texts.count("calibrated <0.76>") == 2
    assert "Quality vs. escalation" in texts
    assert len(list(root.iter("{http://www.w3.org/2000/svg}polyline"))) == 4


def test_the_ledger_benchmark_measures_every_query_beside_the_raw_record_baseline(
    tmp_path: Path,
) -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(SCRIPTS / "bench_ledger.py"),
            "--sizes",
            "10k",
            "--baseline-sizes",
            "10k",
            "--repeats",
            "1",
            "--dir",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["query", "10k", "s"]
    for query in ("stats --since all --by day", "/v1/hybrid/stats, monitor", "start-up"):
        [row] = [line for line in lines if line.startswith(query)]
        assert "x at 10k" in row  # the raw-record baseline was measured beside it
    assert "target (< 0.3 s, < 100 MB at every size)" in result.stdout


def test_the_fleet_benchmark_shows_one_shared_budget_held_and_one_per_daemon_overspent() -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(SCRIPTS / "bench_fleet.py"),
            "--no-litellm",
            "--requests",
            "12",
            "--room",
            "3",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert result.returncode == 0, result.stderr
    rows = {
        line.split("  ")[0]: line.split()
        for line in result.stdout.splitlines()
        if line.startswith("hybrid, ")
    }
    shared = rows["hybrid, one shared budget"]
    apart = rows["hybrid, a budget per daemon"]
    # The summary table comes last: cloud, local, budget, other, cloud sent, spent, ledger, cap,
    # overspend, x cap, later refused.
    assert shared[-11] == "3" and shared[-3] == "$0.00" and shared[-1] == "6"
    assert int(apart[-11]) > 3 and apart[-3] != "$0.00"
    assert "overspend <= one request's estimate: met" in result.stdout
