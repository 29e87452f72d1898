"""A damaged record of calibration answers: ``hybrid calibrate --from-ledger`` says so, names the
file and what to do, and leaves the file alone; the cache readers still take it for none."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from gguf_writer import tiny_model

from hybrid.cli import main
from hybrid.errors import ConfigError
from hybrid.routing.calibration.record import load_record, read_record, record_path
from hybrid.routing.difficulty.store import gguf_sha256, model_path

COMMANDS = {"calibrate": "hybrid.cli.calibrate"}

DAMAGE = {
    "not JSON": b'{"format": "hybrid.calibration-answers", "answers": [',
    "not UTF-8": b"\xff\xfe\x00garbage",
    "a list": b"[1, 2, 3]\n",
    "another format": json.dumps({"format": "something-else"}).encode(),
    "answers not a list": json.dumps(
        {
            "format": "hybrid.calibration-answers",
            "model_sha256": "ab",
            "seed": 0,
            "per_category": 1,
            "max_tokens": 8,
            "answers": {"id": "x"},
        }
    ).encode(),
    "an answer malformed": json.dumps(
        {
            "format": "hybrid.calibration-answers",
            "model_sha256": "ab",
            "seed": 0,
            "per_category": 1,
            "max_tokens": 8,
            "answers": [{"id": 3, "prompt": "p", "texts": "no", "correct": "yes"}],
        }
    ).encode(),
}


@pytest.fixture
def configured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
    """A configured model and a data dir; returns the data dir and the model's SHA-256."""
    model = tiny_model().write(tmp_path / "models" / "mine.gguf")
    home = tmp_path / "home"
    monkeypatch.setenv("HYBRID_HOME", str(home))
    monkeypatch.setenv("HYBRID_LOCAL__MODEL", str(model))
    return home, gguf_sha256(model)


@pytest.mark.parametrize("content", DAMAGE.values(), ids=DAMAGE.keys())
def test_from_ledger_says_the_recorded_answers_are_damaged_and_keeps_them(
    configured: tuple[Path, str], content: bytes, capsys: pytest.CaptureFixture[str]
) -> None:
    home, sha = configured
    path = record_path(home, sha)
    path.parent.mkdir(parents=True)
    path.write_bytes(content)

    code = main(["calibrate", "--from-ledger"], commands=COMMANDS)

    err = capsys.readouterr().err
    assert code == 2
    assert f"the recorded calibration answers {path} are damaged" in err
    assert "no calibration answers are recorded" not in err
    assert "`hybrid calibrate`" in err and "move the file out of the way" in err
    assert path.read_bytes() == content, "the damaged file is neither deleted nor rewritten"
    assert not model_path(home, sha).exists()


def test_from_ledger_says_an_unreadable_record_is_damaged(
    configured: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    home, sha = configured
    path = record_path(home, sha)
    path.mkdir(parents=True)  # a folder where the file should be: reading it fails

    assert main(["calibrate", "--from-ledger"], commands=COMMANDS) == 2

    assert f"the recorded calibration answers {path} are damaged" in capsys.readouterr().err
    assert path.is_dir()


def test_a_long_reason_is_cut_short(tmp_path: Path) -> None:
    path = record_path(tmp_path, "ab")
    path.parent.mkdir(parents=True)
    answer = {"id": 3, "prompt": "p", "texts": ["x"], "correct": True, "embedding": [0.5] * 5000}
    path.write_text(json.dumps({**json.loads(DAMAGE["answers not a list"]), "answers": [answer]}))

    with pytest.raises(ConfigError) as raised:
        read_record(tmp_path, "ab")

    assert str(path) in str(raised.value) and len(str(raised.value)) < 600


def test_no_record_is_none_and_the_cache_reader_takes_a_damaged_one_for_none(
    tmp_path: Path,
) -> None:
    assert read_record(tmp_path, "ab") is None
    path = record_path(tmp_path, "ab")
    path.parent.mkdir(parents=True)
    path.write_bytes(DAMAGE["not JSON"])

    assert load_record(tmp_path, "ab") is None
    assert path.read_bytes() == DAMAGE["not JSON"]
