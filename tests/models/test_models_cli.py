"""``hybrid models``: the listing a user reads, with a fake hardware probe."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from gguf_writer import settings_with, tiny_model

from hybrid.cli.models import list_models, plan_rows, render_table
from hybrid.errors import ConfigError
from hybrid.hardware.plan import ModelFootprint, RuntimePlan
from hybrid.hardware.snapshot import CpuInfo, HardwareSnapshot, MemoryInfo, PowerInfo
from hybrid.models.catalog import discover_models
from hybrid.models.embedded import embedded_model_path
from hybrid.routing.difficulty.features import FEATURE_VERSION, N_FEATURES
from hybrid.routing.difficulty.model import DifficultyModel
from hybrid.routing.difficulty.store import gguf_sha256, save, shipped_models

GIB = 1024**3


def machine(*, ram_bytes: int = 16 * GIB, bandwidth: float | None = 20e9) -> HardwareSnapshot:
    return HardwareSnapshot(
        cpu=CpuInfo("Test CPU", "x86_64", 4, 8, ("AVX2",), 3.0),
        memory=MemoryInfo(ram_bytes, ram_bytes, 0, 0, None, None),
        gpus=(),
        power=PowerInfo(None, None),
        gpu_offload_supported=False,
        memory_bandwidth_bytes_per_s=bandwidth,
        taken_at=0.0,
    )


class FakeProbe:
    """Returns a fixed snapshot (or fails) and records how it was asked."""

    def __init__(self, snapshot: HardwareSnapshot | None = None, *, fail: bool = False) -> None:
        self.result = snapshot if snapshot is not None else machine()
        self.fail = fail
        self.calls: list[bool] = []

    def snapshot(self, *, measure_bandwidth: bool = True) -> HardwareSnapshot:
        self.calls.append(measure_bandwidth)
        if self.fail:
            raise OSError("no /proc here")
        return self.result


def listing(
    tmp_path: Path,
    probe: FakeProbe,
    *,
    as_json: bool = False,
    verbose: bool = False,
    environ: dict[str, str] | None = None,
    **options: Any,
) -> tuple[str, str]:
    """Run ``hybrid models`` in tmp_path; ``options`` go to :func:`settings_with`."""
    out, err = io.StringIO(), io.StringIO()
    settings = settings_with(tmp_path / "home", **options)
    code = list_models(
        settings,
        probe,
        as_json=as_json,
        out=out,
        err=err,
        cwd=tmp_path,
        verbose=verbose,
        environ=environ if environ is not None else {"HOME": str(tmp_path / "user")},
    )
    assert code == 0
    return out.getvalue(), err.getvalue()


def table(text: str) -> list[dict[str, str]]:
    """The listing's rows as {column: cell}, cut at the header's column positions."""
    lines = text.splitlines()
    header = lines[0]
    columns = header.split()
    starts = [header.index(f" {name}") + 1 for name in columns]
    rows = []
    for line in lines[1:]:
        if not line.strip():
            break
        cells = {"mark": line[: starts[0]].strip()}
        for name, start, end in zip(columns, starts, [*starts[1:], None], strict=True):
            cells[name] = line[start:end].strip()
        rows.append(cells)
    return rows


def test_table_shows_size_quant_context_template_and_verdict(tmp_path: Path) -> None:
    path = tiny_model().write(tmp_path / "models" / "chatty.gguf")
    tiny_model(chat_template=None).write(tmp_path / "models" / "base.gguf")

    text, err = listing(tmp_path, FakeProbe())

    assert text.splitlines()[0].split() == [
        "NAME", "SOURCE", "SIZE", "QUANT", "CONTEXT", "CHAT", "TOOLS", "FITS", "TOK/S", "N_CTX"
    ]  # fmt: skip
    base, chatty = table(text)
    assert (chatty["NAME"], chatty["SOURCE"], chatty["TOOLS"]) == ("chatty", "folder", "no")
    assert chatty["SIZE"].endswith("MiB")
    assert (chatty["QUANT"], chatty["CONTEXT"], chatty["CHAT"]) == ("Q4_K_M", "4,096", "yes")
    assert chatty["FITS"] == "yes"
    assert chatty["TOK/S"].startswith("~") and int(chatty["TOK/S"][1:]) > 0
    assert chatty["N_CTX"] == "4,096"  # the model's own context is below max_ctx
    assert str(path) not in text, "paths are details: --verbose shows them"
    verbose, _ = listing(tmp_path, FakeProbe(), verbose=True)
    assert f"    path: {path}" in verbose
    assert base["NAME"] == "base" and base["CHAT"] == "no"
    assert "embedded default gemma-3-270m-q4_k_m" in text
    assert err == ""


def test_a_machine_too_small_gets_a_does_not_fit_verdict(tmp_path: Path) -> None:
    tiny_model().write(tmp_path / "models" / "m.gguf")

    text, _ = listing(tmp_path, FakeProbe(machine(ram_bytes=64 * 1024**2, bandwidth=None)))

    [row] = table(text)
    assert (row["FITS"], row["TOK/S"]) == ("no", "?")  # speed unknown without a bandwidth


def test_the_default_model_is_marked(tmp_path: Path) -> None:
    tiny_model().write(embedded_model_path(tmp_path / "home"))
    tiny_model().write(tmp_path / "models" / "other.gguf")

    text, _ = listing(tmp_path, FakeProbe())

    other, embedded = table(text)
    assert (other["mark"], other["NAME"]) == ("", "other")
    assert (embedded["mark"], embedded["NAME"]) == ("*", "gemma-3-270m-q4_k_m (embedded)")
    assert "* the model `hybrid serve` loads" in text


def test_json_lists_every_field(tmp_path: Path) -> None:
    path = tiny_model().write(tmp_path / "models" / "m.gguf")

    text, _ = listing(tmp_path, FakeProbe(), as_json=True)

    payload = json.loads(text)
    [model] = payload["models"]
    assert model["name"] == "m"
    assert model["path"] == str(path)
    assert model["size_bytes"] == path.stat().st_size
    assert model["quantization"] == "Q4_K_M"
    assert model["context_length"] == 4096
    assert model["chat_template"] is True
    assert model["embedded"] is False and model["error"] is None
    assert model["plan"]["fits"] is True and model["plan"]["n_ctx"] == 4096
    assert model["plan"]["predicted_tokens_per_s"] > 0
    assert isinstance(model["plan"]["notes"], list)
    assert payload["searched"] == [str(tmp_path / "models"), str(tmp_path / "home" / "models")]
    assert payload["probe_error"] is None


def test_no_models_says_how_to_add_one(tmp_path: Path) -> None:
    probe = FakeProbe()

    text, _ = listing(tmp_path, probe)

    assert text.startswith("No models found")
    assert str(tmp_path / "models") in text
    assert "hybrid serve --model PATH" in text and "run `hybrid serve` once" in text
    assert probe.calls == [], "no model to plan: the probe (and its benchmark) is not run"


def test_unreadable_models_are_listed_with_the_reason(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "partial.gguf").write_bytes(tiny_model().to_bytes()[:100])

    text, _ = listing(tmp_path, FakeProbe())

    [row] = table(text)
    assert (row["NAME"], row["SIZE"], row["FITS"]) == ("partial", "-", "-")
    assert "Problems:" in text and "partial.gguf is truncated" in text


def test_a_models_dir_that_is_missing_or_a_file_is_a_problem_not_searched(
    tmp_path: Path,
) -> None:
    extra = tiny_model().write(tmp_path / "extra" / "m.gguf").parent
    gone = tmp_path / "gone"
    a_file = tiny_model().write(tmp_path / "lone.gguf")
    dirs = [extra, gone, a_file]

    text, _ = listing(tmp_path, FakeProbe(), models_dirs=dirs)
    payload = json.loads(listing(tmp_path, FakeProbe(), as_json=True, models_dirs=dirs)[0])

    assert [row["NAME"] for row in table(text)] == ["m"]
    searched = next(line for line in text.splitlines() if line.startswith("Searched "))
    assert str(extra) in searched
    assert str(gone) not in searched and str(a_file) not in searched
    problems = text[text.index("Problems:") :]
    assert f"  {gone} in local.models_dirs does not exist" in problems
    assert f"  {a_file} in local.models_dirs is not a folder" in problems
    assert "HYBRID_LOCAL__MODELS_DIRS" in problems and "create it" in problems
    assert str(gone) not in payload["searched"] and str(a_file) not in payload["searched"]
    assert [p.split(" in ")[0] for p in payload["problems"]] == [str(gone), str(a_file)]


def test_no_models_and_a_missing_models_dir_says_both(tmp_path: Path) -> None:
    gone = tmp_path / "gone"

    text, _ = listing(tmp_path, FakeProbe(), models_dirs=[gone])

    assert text.startswith("No models found")
    assert str(gone) not in text.splitlines()[0]
    assert f"Problems:\n  {gone} in local.models_dirs does not exist" in text


def test_a_failing_probe_still_lists_the_models(tmp_path: Path) -> None:
    tiny_model().write(tmp_path / "models" / "m.gguf")

    text, err = listing(tmp_path, FakeProbe(fail=True))

    [row] = table(text)
    assert (row["QUANT"], row["FITS"], row["TOK/S"], row["N_CTX"]) == ("Q4_K_M", "?", "?", "?")
    assert "hardware probe failed (no /proc here)" in err


def test_the_plan_honours_the_context_and_benchmark_settings(tmp_path: Path) -> None:
    tiny_model().write(tmp_path / "models" / "m.gguf")
    probe = FakeProbe()

    text, _ = listing(tmp_path, probe, n_ctx=1024, measure_bandwidth=False)

    [row] = table(text)
    assert row["N_CTX"] == "1,024"
    assert probe.calls == [False], "probe.measure_bandwidth = false skips the benchmark"


def test_a_model_the_planner_rejects_is_listed_with_the_reason(tmp_path: Path) -> None:
    tiny_model().write(tmp_path / "models" / "m.gguf")
    settings = settings_with(tmp_path / "home")

    def refuse(footprint: ModelFootprint) -> RuntimePlan:
        raise ConfigError("n_ctx must be positive")

    rows = plan_rows(discover_models(settings, cwd=tmp_path), refuse)
    text = render_table(rows, [tmp_path / "models"], settings)

    assert table(text)[0]["FITS"] == "?"
    assert "m: no plan: n_ctx must be positive" in text


def calibration(**meta: object) -> DifficultyModel:
    return DifficultyModel(
        weights=np.zeros(N_FEATURES),
        bias=0.0,
        threshold=0.5,
        feature_version=FEATURE_VERSION,
        mean=np.zeros(N_FEATURES),
        scale=np.ones(N_FEATURES),
        meta=meta,
    )


def test_your_calibration_of_the_model_serve_loads_is_shown(tmp_path: Path) -> None:
    path = tiny_model().write(tmp_path / "models" / "m.gguf")
    tiny_model().write(tmp_path / "models" / "other.gguf")
    mine = save(
        tmp_path / "home",
        gguf_sha256(path),
        calibration(created="2026-12-01", items=180, held_out_auroc=0.8123),
    )

    text, _ = listing(tmp_path, FakeProbe(), model=path)
    payload = json.loads(listing(tmp_path, FakeProbe(), model=path, as_json=True)[0])

    assert (
        f"Calibration in use for m: your calibration {mine} (made 2026-12-01, 180 items, "
        "held-out AUROC 0.812)." in text
    )
    assert payload["calibration"] == {
        "model": "m",
        "source": "user",
        "path": str(mine),
        "created": "2026-12-01",
        "items": 180,
        "held_out_auroc": 0.8123,
        "model_stage": None,
        "words": True,
        "problem": None,
        "prior": None,
        "background": None,
    }


def test_the_shipped_calibration_of_the_embedded_model_is_shown(tmp_path: Path) -> None:
    [shipped] = [p.name for p in shipped_models().iterdir() if p.name.endswith(".json")]
    embedded = tiny_model().write(embedded_model_path(tmp_path / "home"))
    # The sidecar marker the embedded model's assembly leaves: its hash is the shipped key.
    stat = embedded.stat()
    marker = {
        "sha256": shipped.removesuffix(".json"),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
    }
    embedded.with_name(embedded.name + ".sha256").write_text(json.dumps(marker))

    text, _ = listing(tmp_path, FakeProbe())

    line = next(x for x in text.splitlines() if x.startswith("Calibration in use"))
    meta = json.loads((shipped_models() / shipped).read_text())["meta"]
    stage = (
        "with a model stage that settles no request in its band"  # no band where the probe helps
        if meta["probe_band_share"] == 0
        else f"with the model stage ({meta['held_out_two_stage_auroc']:.3f} with both stages)"
    )
    data = json.loads((shipped_models() / shipped).read_text())
    if data["probe"].get("every_threshold") is not None:
        stage += ', able to read every request (routing.difficulty.model_stage = "every")'
    assert line == (
        "Calibration in use for gemma-3-270m-q4_k_m: the shipped calibration (made "
        f"{meta['created']}, {meta['items']} items, held-out AUROC {meta['held_out_auroc']:.3f}, "
        f"{stage}{'' if data['words'] else ', without the hashed words'})."
    )


def test_a_model_without_calibration_runs_on_a_prior_and_says_how_to_calibrate(
    tmp_path: Path,
) -> None:
    path = tiny_model().write(tmp_path / "models" / "m.gguf")

    text, _ = listing(tmp_path, FakeProbe(), model=path)
    payload = json.loads(listing(tmp_path, FakeProbe(), model=path, as_json=True)[0])

    assert "Calibration in use for m: none yet; it runs on a prior from its size and family" in text
    assert "or you run `hybrid calibrate`." in text
    assert payload["calibration"]["source"] == "prior" and payload["calibration"]["model"] == "m"
    assert 0 < payload["calibration"]["prior"]["expected_accuracy"] < 1
    assert payload["calibration"]["background"] is None


def test_background_calibration_progress_recorded_by_a_server_is_shown(tmp_path: Path) -> None:
    from hybrid.routing.calibration.background import PROGRESS_FORMAT, progress_path

    path = tiny_model().write(tmp_path / "models" / "m.gguf")
    progress = {
        "state": "running",
        "done": 120,
        "total": 540,
        "correct": 30,
        "accuracy": 0.25,
        "message": None,
        "updated": "2026-12-05T10:00:00+00:00",
    }
    saved = progress_path(tmp_path / "home", gguf_sha256(path))
    saved.parent.mkdir(parents=True)
    saved.write_text(json.dumps({"format": PROGRESS_FORMAT, "progress": progress, "answers": []}))

    text, _ = listing(tmp_path, FakeProbe(), model=path)
    payload = json.loads(listing(tmp_path, FakeProbe(), model=path, as_json=True)[0])

    assert (
        "Background calibration: running: 120/540 items, 25% right so far "
        "(as of 2026-12-05T10:00:00+00:00)." in text
    )
    assert payload["calibration"]["background"] == progress


def test_a_damaged_calibration_is_listed_as_unusable(tmp_path: Path) -> None:
    path = tiny_model().write(tmp_path / "models" / "m.gguf")
    broken = save(tmp_path / "home", gguf_sha256(path), calibration())
    broken.write_text("{not json")

    text, _ = listing(tmp_path, FakeProbe(), model=path)

    assert f"Calibration in use for m: unusable: cannot read the difficulty model {broken}" in text


@pytest.mark.slow
def test_hybrid_models_command_end_to_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from hybrid.cli import main

    tiny_model().write(tmp_path / "models" / "m.gguf")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HYBRID_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HYBRID_CONFIG", str(tmp_path / "config.toml"))
    (tmp_path / "config.toml").write_text("")

    assert main(["models", "--json"]) == 0

    payload = json.loads(capsys.readouterr().out)
    assert [model["name"] for model in payload["models"]] == ["m"]
    assert payload["models"][0]["plan"]["fits"] is True
