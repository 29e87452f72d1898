"""Where fitted models live: the data dir first, then the package's shipped weights."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pytest

from hybrid.errors import ConfigError
from hybrid.routing.calibration.fitting import WORD_WEIGHT
from hybrid.routing.difficulty.features import FEATURE_VERSION, N_FEATURES
from hybrid.routing.difficulty.model import DifficultyModel
from hybrid.routing.difficulty.probe import ProbeStage
from hybrid.routing.difficulty.store import (
    find,
    gguf_sha256,
    load_for,
    model_path,
    remove,
    save,
    shipped_models,
)

SHA = "0123abcd" * 8


def model(threshold: float, *, words: bool = True, **meta: object) -> DifficultyModel:
    return DifficultyModel(
        weights=np.zeros(N_FEATURES),
        bias=0.0,
        threshold=threshold,
        feature_version=FEATURE_VERSION,
        mean=np.zeros(N_FEATURES),
        scale=np.ones(N_FEATURES),
        meta=meta,
        words=words,
    )


def ship(folder: Path, threshold: float) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{SHA}.json").write_text(json.dumps(model(threshold).to_json()))
    return folder


def test_save_writes_under_the_models_hash_and_load_reads_it_back(tmp_path: Path) -> None:
    path = save(tmp_path / "home", SHA, model(0.3))
    assert (
        path
        == model_path(tmp_path / "home", SHA)
        == tmp_path / "home" / "calibration" / (f"{SHA}.json")
    )
    loaded = load_for(tmp_path / "home", SHA, shipped=tmp_path / "none")
    assert loaded is not None and loaded.threshold == 0.3
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left over


def test_the_data_dir_wins_over_the_shipped_weights(tmp_path: Path) -> None:
    shipped = ship(tmp_path / "shipped", threshold=0.7)
    home = tmp_path / "home"
    from_package = load_for(home, SHA, shipped=shipped)
    assert from_package is not None and from_package.threshold == 0.7
    save(home, SHA, model(0.2))
    from_home = load_for(home, SHA, shipped=shipped)
    assert from_home is not None and from_home.threshold == 0.2


def test_an_unknown_model_has_no_difficulty_model(tmp_path: Path) -> None:
    assert load_for(tmp_path, "f" * 64, shipped=ship(tmp_path / "shipped", 0.5)) is None


def test_a_damaged_calibration_is_reported_with_its_path(tmp_path: Path) -> None:
    path = model_path(tmp_path, SHA)
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="hybrid calibrate") as caught:
        load_for(tmp_path, SHA, shipped=ship(tmp_path / "shipped", 0.5))
    assert str(path) in str(caught.value)


def test_the_package_ships_weights_that_load(tmp_path: Path) -> None:
    shipped = sorted(p.name for p in shipped_models().iterdir() if p.name.endswith(".json"))
    assert shipped, "hybrid/routing/data holds no shipped difficulty model"
    sha = shipped[0].removesuffix(".json")
    loaded = load_for(tmp_path, sha)
    assert loaded is not None and loaded.meta["model_sha256"] == sha


def test_the_shipped_calibration_says_when_it_was_made_on_how_much_and_how_well(
    tmp_path: Path,
) -> None:
    for entry in shipped_models().iterdir():
        if not entry.name.endswith(".json"):
            continue
        found = find(tmp_path, entry.name.removesuffix(".json"))
        assert found is not None and found.source == "shipped"
        summary = found.summary()
        assert isinstance(summary["created"], str) and len(summary["created"]) == 10
        assert isinstance(summary["items"], int) and summary["items"] >= 180
        assert isinstance(summary["held_out_auroc"], float)
        assert 0.5 < summary["held_out_auroc"] <= 1.0
        assert found.describe().startswith(f"the shipped calibration (made {summary['created']}")
        # It carries the model stage: the probe on the model's own prompt vector.
        assert found.model.probe is not None
        stage = summary["model_stage"]
        assert stage is not None and 0 <= stage["band_share"] <= 0.4
        assert 0.5 < stage["held_out_auroc"] <= 1.0
        assert stage["every"] is True  # it can be asked for every request
        assert describes_stage(stage) in found.describe()
        # Fitted with the hashed words at fitting.WORD_WEIGHT: only their absence is named.
        assert summary["words"] is (WORD_WEIGHT > 0)
        assert ("without the hashed words" in found.describe()) is (WORD_WEIGHT == 0)


def test_find_says_whether_the_calibration_is_yours_or_shipped(tmp_path: Path) -> None:
    shipped = ship(tmp_path / "shipped", threshold=0.7)
    home = tmp_path / "home"
    from_package = find(home, SHA, shipped=shipped)
    assert from_package is not None
    assert (from_package.source, from_package.path) == ("shipped", str(shipped / f"{SHA}.json"))
    path = save(home, SHA, model(0.2, created="2026-12-01", items=180, held_out_auroc=0.8123))
    mine = find(home, SHA, shipped=shipped)
    assert mine is not None
    assert mine.summary() == {
        "source": "user",
        "path": str(path),
        "created": "2026-12-01",
        "items": 180,
        "held_out_auroc": 0.8123,
        "model_stage": None,
        "words": True,
    }
    assert mine.describe() == (
        f"your calibration {path} (made 2026-12-01, 180 items, held-out AUROC 0.812)"
    )


def describes_stage(stage: dict[str, float]) -> str:
    """What a calibration's description says of its model stage."""
    if stage["band_share"] == 0:  # cross-validation found no band where the probe helps
        return "with a model stage that settles no request in its band"
    return f"with the model stage ({stage['held_out_auroc']:.3f} with both stages)"


@pytest.mark.parametrize(
    ("share", "every", "said"),
    [
        (0.3, None, "with the model stage (0.848 with both stages)"),
        (0.0, None, "with a model stage that settles no request in its band"),
        (
            0.0,
            0.61,
            "with a model stage that settles no request in its band, able to read every "
            'request (routing.difficulty.model_stage = "every")',
        ),
    ],
)
def test_the_description_says_whether_the_model_stage_settles_anything(
    tmp_path: Path, share: float, every: float | None, said: str
) -> None:
    band = (0.48, 0.48 + share)
    probe = ProbeStage(np.zeros(4), 0.0, np.zeros(4), np.ones(4), band, 0.5, every_threshold=every)
    stored = dataclasses.replace(
        model(0.48, probe_band_share=share, held_out_two_stage_auroc=0.848), probe=probe
    )
    path = save(tmp_path, SHA, stored)
    found = find(tmp_path, SHA, shipped=tmp_path / "none")
    assert found is not None and found.summary()["model_stage"] == {
        "band_share": share,
        "held_out_auroc": 0.848,
        "every": every is not None,  # fitted with the threshold for every request or not
    }
    assert found.describe() == f"your calibration {path} ({said})"


def test_a_calibration_that_reads_no_words_says_so(tmp_path: Path) -> None:
    path = save(tmp_path, SHA, model(0.3, words=False, created="2026-12-01", items=180))
    found = find(tmp_path, SHA, shipped=tmp_path / "none")
    assert found is not None and found.summary()["words"] is False
    assert found.describe() == (
        f"your calibration {path} (made 2026-12-01, 180 items, without the hashed words)"
    )


def test_a_file_without_those_figures_still_loads_and_says_so(tmp_path: Path) -> None:
    path = save(tmp_path, SHA, model(0.4))
    found = find(tmp_path, SHA, shipped=tmp_path / "none")
    assert found is not None and found.model.threshold == 0.4
    assert found.summary()["created"] is None and found.summary()["items"] is None
    assert found.describe() == f"your calibration {path}"


def test_remove_deletes_only_your_calibration(tmp_path: Path) -> None:
    shipped = ship(tmp_path / "shipped", threshold=0.7)
    path = save(tmp_path / "home", SHA, model(0.2))
    assert remove(tmp_path / "home", SHA) == path
    assert not path.exists() and (shipped / f"{SHA}.json").exists()
    assert remove(tmp_path / "home", SHA) is None
    found = find(tmp_path / "home", SHA, shipped=shipped)
    assert found is not None and found.source == "shipped"


def test_the_hash_comes_from_a_valid_sidecar_marker_else_from_the_file(tmp_path: Path) -> None:
    model_file = tmp_path / "m.gguf"
    model_file.write_bytes(b"GGUF" + b"\0" * 100)
    real = gguf_sha256(model_file)
    stat = model_file.stat()
    marker = tmp_path / "m.gguf.sha256"
    marker.write_text(
        json.dumps({"sha256": "c" * 64, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns})
    )
    assert gguf_sha256(model_file) == "c" * 64
    os.utime(model_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # file changed
    assert gguf_sha256(model_file) == real
