"""``hybrid calibrate``: answers, fits, stores per model hash, and says how it went."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

import pytest
from calibration_fakes import FunctionBackend

from hybrid.cli import main
from hybrid.cli.calibrate import CalibrateOptions, ProgressBar, calibrate_backend
from hybrid.errors import HybridError
from hybrid.routing.calibration.record import load_record
from hybrid.routing.difficulty.store import load_for, model_path

SHA = "5a" * 32
COMMANDS = {"calibrate": "hybrid.cli.calibrate"}


def greeter(prompt: str) -> str | HybridError:
    """A local model that can only say hello."""
    return "Hello!"


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 0.5
        return self.now


def test_calibrating_stores_the_model_and_answers_under_the_hash(tmp_path: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    options = CalibrateOptions(per_category=4, seed=1, max_tokens=8)
    calibration = asyncio.run(
        calibrate_backend(
            FunctionBackend(greeter),
            home=tmp_path,
            sha256=SHA,
            model_name="tiny-model",
            options=options,
            out=out,
            err=err,
            clock=FakeClock(),
        )
    )
    stored = load_for(tmp_path, SHA, shipped=tmp_path / "nothing-shipped")
    assert stored is not None
    assert stored.threshold == calibration.model.threshold
    assert stored.meta["model_sha256"] == SHA and stored.meta["model"] == "tiny-model"
    assert stored.meta["items"] == 36 and stored.meta["seed"] == 1
    record = load_record(tmp_path, SHA)
    assert record is not None and len(record.answers) == 36
    assert {text for answer in record.answers for text in answer.texts} == {"Hello!"}

    summary = out.getvalue()
    assert "tiny-model" in summary and "36 items" in summary
    assert "chat" in summary and "Held-out AUROC" in summary
    assert str(model_path(tmp_path, SHA)) in summary
    # Not a terminal: one progress line per 10 %, the last at 100 %.
    *progress, last = err.getvalue().splitlines()
    assert last == "fitting the difficulty model ..."
    assert progress[-1].startswith("answering [") and "100%" in progress[-1]
    assert 2 <= len(progress) <= 11


def test_the_same_seed_gives_the_same_stored_model(tmp_path: Path) -> None:
    def calibrate_into(home: Path) -> dict[str, object]:
        asyncio.run(
            calibrate_backend(
                FunctionBackend(greeter),
                home=home,
                sha256=SHA,
                model_name="m",
                options=CalibrateOptions(per_category=3, seed=5, max_tokens=8),
                out=io.StringIO(),
                err=io.StringIO(),
            )
        )
        data: dict[str, object] = json.loads(model_path(home, SHA).read_text())
        return data

    first, second = calibrate_into(tmp_path / "a"), calibrate_into(tmp_path / "b")
    assert first["weights"] == second["weights"]
    assert first["threshold"] == second["threshold"]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--per-category", "0"], "--per-category must be at least 1"),
        (["--max-tokens", "0"], "--max-tokens must be at least 1"),
        (["--held-out", "1.5"], "--held-out must be between 0 and 1"),
    ],
)
def test_bad_flags_are_refused_before_any_model_is_touched(
    flags: list[str],
    message: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("HYBRID_HOME", str(tmp_path / "home"))
    assert main(["calibrate", *flags], commands=COMMANDS) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "home" / "models").exists()


def test_a_missing_model_file_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HYBRID_HOME", str(tmp_path / "home"))
    code = main(["calibrate", "--model", str(tmp_path / "absent.gguf")], commands=COMMANDS)
    assert code == 1
    assert "absent.gguf" in capsys.readouterr().err


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_the_progress_bar_redraws_one_line() -> None:
    stream = Terminal()
    bar = ProgressBar(stream, "answering", clock=FakeClock())
    for done in range(1, 5):
        bar(done, 4)
    bar.finish()
    text = stream.getvalue()
    assert text.count("\r") == 4 and text.endswith("\n") and text.count("\n") == 1
    assert "4/4 100%" in text


@pytest.mark.slow
def test_calibrate_runs_the_real_model_end_to_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("HYBRID_HOME", str(home))
    assert main(["calibrate", "--per-category", "2"], commands=COMMANDS) == 0
    stored = sorted((home / "calibration").glob("*.json"))
    models = [p for p in stored if not p.name.endswith(".answers.json")]
    assert len(models) == 1
    sha = models[0].stem
    model = load_for(home, sha)
    assert model is not None
    assert model.meta["items"] == 18 and model.meta["model_sha256"] == sha
    assert 0.0 <= model.threshold <= 1.0
    record = load_record(home, sha)
    assert record is not None and any(text for a in record.answers for text in a.texts)
    out = capsys.readouterr().out
    assert "Calibrated gemma-3-270m-q4_k_m" in out and "Held-out AUROC" in out
