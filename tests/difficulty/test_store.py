"""Where fitted models live: the data dir first, then the package's shipped weights."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from hybrid.errors import ConfigError
from hybrid.routing.difficulty.features import FEATURE_VERSION, N_FEATURES
from hybrid.routing.difficulty.model import DifficultyModel
from hybrid.routing.difficulty.store import (
    gguf_sha256,
    load_for,
    model_path,
    save,
    shipped_models,
)

SHA = "0123abcd" * 8


def model(threshold: float) -> DifficultyModel:
    return DifficultyModel(
        weights=np.zeros(N_FEATURES),
        bias=0.0,
        threshold=threshold,
        feature_version=FEATURE_VERSION,
        mean=np.zeros(N_FEATURES),
        scale=np.ones(N_FEATURES),
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
