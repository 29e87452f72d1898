"""`hybrid probe`: the report with fake models, and the real command end to end."""

from __future__ import annotations

import io
import json
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hardware_fakes import GIB, build_model, build_snapshot

from hybrid.cli import main
from hybrid.cli.probe import print_report
from hybrid.hardware.plan import ModelFootprint
from hybrid.settings import Settings


@dataclass(frozen=True)
class FakeEntry:
    name: str
    footprint: ModelFootprint | None
    error: str | None = None


@pytest.fixture(autouse=True)
def isolated(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The suite's isolation, plus a data dir of the test's own and a CPU-only llama.cpp."""
    monkeypatch.setenv("HYBRID_HOME", str(isolated / "home"))
    # The real llama_cpp opens /dev/null at import and never closes it (a ResourceWarning at
    # exit); the offload check has its own tests, these are about the report.
    no_gpu_build = types.SimpleNamespace(llama_supports_gpu_offload=lambda: False)
    monkeypatch.setitem(sys.modules, "llama_cpp", no_gpu_build)
    return isolated


def settings(**local: Any) -> Settings:
    return Settings.model_validate({"local": local})


def report(snapshot: Any, discover: Any, *, as_json: bool, **local: Any) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = print_report(
        snapshot, settings(**local), as_json=as_json, discover=discover, out=out, err=err
    )
    assert code == 0
    return out.getvalue(), err.getvalue()


def test_text_report_plans_each_model_with_the_settings() -> None:
    entries = [
        FakeEntry("llama-8b", build_model()),
        FakeEntry("broken", None, error="broken.gguf is not a GGUF file"),
    ]

    text, _ = report(build_snapshot(), lambda s: entries, as_json=False, max_ctx=4096)

    row = next(line for line in text.splitlines() if line.startswith("  llama-8b"))
    assert "n_ctx 4,096" in row
    assert "broken  (no plan: broken.gguf is not a GGUF file)" in text


def test_explicit_settings_reach_the_plan() -> None:
    out, _ = report(
        build_snapshot(),
        lambda s: [FakeEntry("m", build_model())],
        as_json=True,
        n_ctx=2048,
        n_threads=3,
    )

    plan = json.loads(out)["models"][0]["plan"]
    assert (plan["n_ctx"], plan["n_threads"]) == (2048, 3)


def test_container_limit_shows_in_the_json_plan() -> None:
    limited = build_snapshot(
        total=64 * GIB, available=60 * GIB, cgroup_limit=3 * GIB, cgroup_usage=0
    )

    out, _ = report(limited, lambda s: [FakeEntry("m", build_model())], as_json=True)

    model = json.loads(out)["models"][0]
    assert model["plan"]["fits"] is False
    assert json.loads(out)["hardware"]["memory"]["cgroup_limit_bytes"] == 3 * GIB


def test_a_failing_model_catalog_still_prints_the_hardware() -> None:
    def discover(_: Settings) -> list[FakeEntry]:
        raise ModuleNotFoundError("No module named 'hybrid.models.catalog'")

    text, err = report(build_snapshot(), discover, as_json=False)

    assert "Test CPU 9000" in text
    assert "Models" not in text
    assert "could not list the local models" in err


def test_hybrid_probe_no_bench_json_on_this_machine(capsys: pytest.CaptureFixture[str]) -> None:
    import psutil  # type: ignore[import-untyped,unused-ignore]

    assert main(["probe", "--no-bench", "--json"]) == 0

    data = json.loads(capsys.readouterr().out)
    assert data["hardware"]["memory"]["total_bytes"] == psutil.virtual_memory().total
    # --no-bench with an empty data dir: nothing measured, nothing cached.
    assert data["hardware"]["memory_bandwidth_bytes_per_s"] is None
    assert isinstance(data["models"], list)


def test_hybrid_probe_text_lists_a_model_found_in_models_dir(
    isolated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (isolated / "models").mkdir()
    (isolated / "models" / "junk.gguf").write_bytes(b"not a gguf file at all")

    assert main(["probe", "--no-bench"]) == 0

    text = capsys.readouterr().out
    assert text.startswith("CPU")
    assert "junk  (no plan:" in text
