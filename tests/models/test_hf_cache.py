"""The Hugging Face hub cache as ``hybrid models`` reads it: dot-files in a snapshot are not
models, and a ``refs/main`` that cannot be used is reported while the snapshots are still read
(newest first)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from gguf_writer import tiny_model
from model_stores import hf_model
from test_models_cli import FakeProbe, listing, table

from hybrid.models.stores.hf_cache import scan_hf_cache

OLD, NEW, GONE = "a" * 40, "b" * 40, "c" * 40


def test_dot_files_in_a_snapshot_are_not_models(tmp_path: Path) -> None:
    cache = tmp_path / "hub"
    weights = tiny_model().write(tmp_path / "weights.gguf")
    files = {
        "m-Q4_K_M.gguf": weights,
        ".m-Q8_0.gguf": weights,  # a hidden partial file
        "Q8_0/.m-Q8_0.gguf": weights,
    }
    snapshot = hf_model(cache, "org/m-GGUF", files)

    scan = scan_hf_cache(cache)

    assert [(f.name, f.path) for f in scan.found] == [
        ("org/m-GGUF:Q4_K_M", snapshot / "m-Q4_K_M.gguf")
    ]
    assert scan.skipped == () and scan.problems == ()


def two_snapshots(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A repository cached at two commits, each holding ``m-Q4_K_M.gguf``, OLD's snapshot dated
    before NEW's; refs/main names OLD.  Returns the cache, OLD's file and NEW's."""
    cache = tmp_path / "user" / ".cache" / "huggingface" / "hub"
    old = hf_model(
        cache, "org/m-GGUF", {"m-Q4_K_M.gguf": tiny_model().write(tmp_path / "o")}, revision=OLD
    )
    new = hf_model(
        cache,
        "org/m-GGUF",
        {"m-Q4_K_M.gguf": tiny_model(n_layers=3).write(tmp_path / "n")},
        revision=NEW,
    )
    os.utime(old, (1_000_000, 1_000_000))
    os.utime(new, (2_000_000, 2_000_000))
    ref(cache).write_text(OLD)
    return cache, old / "m-Q4_K_M.gguf", new / "m-Q4_K_M.gguf"


def ref(cache: Path) -> Path:
    return cache / "models--org--m-GGUF" / "refs" / "main"


def test_the_snapshot_main_names_comes_first_and_no_ref_is_no_problem(tmp_path: Path) -> None:
    cache, old, new = two_snapshots(tmp_path)

    main = scan_hf_cache(cache)
    ref(cache).unlink()  # a cache filled by revision has no refs/main: newest first, silently
    by_age = scan_hf_cache(cache)

    assert [f.path for f in main.found] == [old] and main.problems == ()
    assert [f.path for f in by_age.found] == [new] and by_age.problems == ()


@pytest.mark.parametrize(
    ("content", "what"),
    [
        (b"", "is empty"),
        (b"\n", "is empty"),
        (b"\xff\xfe\x00", "is not text"),
        (GONE.encode(), f"names commit {GONE}, which has no snapshot"),
    ],
)
def test_a_refs_main_that_names_no_snapshot_is_a_problem_and_newest_comes_first(
    tmp_path: Path, content: bytes, what: str
) -> None:
    cache, _, new = two_snapshots(tmp_path)
    ref(cache).write_bytes(content)

    scan = scan_hf_cache(cache)

    assert [f.path for f in scan.found] == [new]
    [problem] = scan.problems
    assert problem.startswith(f"{ref(cache)} {what}, so the snapshots of org/m-GGUF are ordered")
    assert "newest first" in problem and "`hybrid pull org/m-GGUF`" in problem


def test_an_unreadable_refs_main_is_a_problem_saying_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache, _, new = two_snapshots(tmp_path)
    locked = ref(cache)
    real = Path.read_text

    def read_text(self: Path, *args: object, **kwargs: object) -> str:
        # Tests may run as root, who reads everything: the refusal is simulated.
        if self == locked:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "read_text", read_text)

    text, _ = listing(tmp_path, FakeProbe())

    assert [row["NAME"] for row in table(text)] == ["org/m-GGUF:Q4_K_M"]
    assert [f.path for f in scan_hf_cache(cache).found] == [new]
    problems = text[text.index("Problems:") :]
    assert f"  cannot read {locked} (Permission denied), so the snapshots of org/m-GGUF" in problems
    assert f"`chmod u+r {locked}` as its owner" in problems


def test_a_broken_refs_main_without_snapshots_is_not_reported(tmp_path: Path) -> None:
    cache, _, _ = two_snapshots(tmp_path)
    for snapshot in (cache / "models--org--m-GGUF" / "snapshots").iterdir():
        for file in snapshot.iterdir():
            file.unlink()
        snapshot.rmdir()
    ref(cache).write_text(GONE)

    assert scan_hf_cache(cache).problems == ()
