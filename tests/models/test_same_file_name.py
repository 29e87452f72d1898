"""Files of one name in two folders of one kind (two ``local.models_dirs`` entries, LM Studio's
two folders): both are listed, and the name alone picks neither; the error lists both paths
and says to pass the path, since the store prefix does not tell them apart either."""

from __future__ import annotations

from pathlib import Path

import pytest
from gguf_writer import settings_with, tiny_model
from model_stores import hf_model

from hybrid.errors import ModelFileError
from hybrid.models.catalog import discover
from hybrid.models.resolve import resolve_name


def env(tmp_path: Path) -> dict[str, str]:
    return {"HOME": str(tmp_path / "user")}


def test_one_file_name_in_two_models_folders_is_picked_only_by_path(tmp_path: Path) -> None:
    first = tiny_model().write(tmp_path / "a" / "model.gguf")
    second = tiny_model(n_layers=3).write(tmp_path / "b" / "model.gguf")
    settings = settings_with(tmp_path / "home", models_dirs=[first.parent, second.parent])

    listed = discover(settings, cwd=tmp_path, environ=env(tmp_path)).entries
    errors = []
    for name in ("model", "folder:model", "model.gguf"):
        with pytest.raises(ModelFileError) as caught:
            resolve_name(settings, name, cwd=tmp_path, environ=env(tmp_path))
        errors.append(str(caught.value))

    assert [(e.name, e.path) for e in listed] == [("model", first), ("model", second)]
    for name, error in zip(("model", "folder:model", "model.gguf"), errors, strict=True):
        assert error == (
            f"model name {name!r} matches 2 models: folder:model ({first}); folder:model "
            f"({second}). folder:model names several files, so pass the path of the one to use "
            f"(e.g. --model {first})."
        )
    assert resolve_name(settings, str(second), cwd=tmp_path, environ=env(tmp_path)) == second


def test_the_configured_name_shows_the_clash_in_the_listing(tmp_path: Path) -> None:
    first = tiny_model().write(tmp_path / "a" / "model.gguf")
    second = tiny_model(n_layers=3).write(tmp_path / "b" / "model.gguf")
    settings = settings_with(
        tmp_path / "home", model=Path("model"), models_dirs=[first.parent, second.parent]
    )

    [configured, *listed] = discover(settings, cwd=tmp_path, environ=env(tmp_path)).entries

    assert configured.default and configured.error is not None
    assert f"pass the path of the one to use (e.g. --model {first})" in configured.error
    assert [(e.path, e.default) for e in listed] == [(first, False), (second, False)]


def test_a_clash_beside_another_store_says_which_prefix_still_picks(tmp_path: Path) -> None:
    weights = tiny_model().write(tmp_path / "w.gguf")
    cache = tmp_path / "user" / ".cache" / "huggingface" / "hub"
    snapshot = hf_model(cache, "org/m-GGUF", {"m-Q4_K_M.gguf": weights})
    first = tiny_model().write(tmp_path / "a" / "m-Q4_K_M.gguf")
    second = tiny_model(n_layers=3).write(tmp_path / "b" / "m-Q4_K_M.gguf")
    settings = settings_with(tmp_path / "home", models_dirs=[first.parent, second.parent])

    with pytest.raises(ModelFileError) as caught:
        resolve_name(settings, "m-Q4_K_M.gguf", cwd=tmp_path, environ=env(tmp_path))

    assert str(caught.value).endswith(
        f"folder:m-Q4_K_M names several files, so pass the path of the one to use (e.g. "
        f"--model {first}); the other is picked by its store prefix (hf:org/m-GGUF:Q4_K_M)."
    )
    assert resolve_name(settings, "hf:org/m-GGUF:Q4_K_M", cwd=tmp_path, environ=env(tmp_path)) == (
        snapshot / "m-Q4_K_M.gguf"
    )
