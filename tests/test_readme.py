"""The README documents every setting and opens with the two set-up commands CI runs."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from hybrid.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def leaf_settings(model: type[BaseModel], prefix: str = "") -> list[str]:
    leaves = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            leaves += leaf_settings(annotation, f"{prefix}{name}.")
        else:
            leaves.append(prefix + name)
    return leaves


def test_every_setting_is_in_the_configuration_table() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [leaf for leaf in leaf_settings(Settings) if f"| `{leaf}` |" not in readme]
    assert not missing, f"README lacks a row for {missing}"


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    command = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert command in readme
    commands = [line for line in readme.splitlines() if line.startswith("python3 -m venv")]
    assert commands[:2] == [
        "python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/hybrid serve",
        command,
    ]
