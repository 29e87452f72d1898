"""Parts of a store hybrid cannot use: a folder it may not read (in any store: LM Studio, Ollama,
the Hugging Face cache, llama.cpp's cache) hides only its own models and is reported with what to
do; an Ollama model built with a LoRA adapter is listed but refused by its
name, pointing at its base model."""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from gguf_writer import settings_with, tiny_model
from model_stores import hf_model, ollama_blob, ollama_model
from test_models_cli import FakeProbe, listing, table

from hybrid.errors import ModelFileError
from hybrid.models.catalog import discover
from hybrid.models.resolve import resolve_name
from hybrid.models.stores.hf_cache import scan_hf_cache
from hybrid.models.stores.llama_cache import scan_llama_cache
from hybrid.models.stores.lmstudio import scan_lmstudio
from hybrid.settings import Settings

ADAPTER = "application/vnd.ollama.image.adapter"


def env(tmp_path: Path) -> dict[str, str]:
    return {"HOME": str(tmp_path / "user")}


def settings(tmp_path: Path) -> Settings:
    return settings_with(tmp_path / "hybrid-home")


def deny(monkeypatch: pytest.MonkeyPatch, *folders: Path) -> None:
    """Listing any of ``folders`` fails as a folder without read permission does (tests may run
    as root, who reads everything, so the refusal is simulated)."""
    real = Path.iterdir

    def iterdir(self: Path) -> Iterator[Path]:
        if self in folders:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(Path, "iterdir", iterdir)


def lm_studio(tmp_path: Path) -> Path:
    """An LM Studio folder with the same model under three publishers; returns the root."""
    root = tmp_path / "user" / ".lmstudio" / "models"
    for publisher in ("alpha", "beta", "zeta"):
        tiny_model().write(root / publisher / "tiny-GGUF" / "tiny-Q4_K_M.gguf")
    return root


def ollama_store(tmp_path: Path) -> Path:
    """An Ollama store with three models; returns its root."""
    root = tmp_path / "user" / ".ollama" / "models"
    weights = tiny_model().write(tmp_path / "weights.gguf")
    for name in ("aaa:1b", "locked:1b", "zzz:1b"):
        ollama_model(root, name, weights)
    return root


def test_an_unreadable_lm_studio_publisher_hides_only_its_own_models(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = lm_studio(tmp_path)
    deny(monkeypatch, root / "beta")

    found = discover(settings(tmp_path), cwd=tmp_path, environ=env(tmp_path))

    assert [e.name for e in found.entries] == ["alpha/tiny-GGUF:Q4_K_M", "zeta/tiny-GGUF:Q4_K_M"]
    [problem] = found.problems
    assert f"cannot read folder {root / 'beta'} (Permission denied)" in problem
    assert "not listed" in problem and f"chmod u+rx {root / 'beta'}" in problem


def test_an_unreadable_lm_studio_repository_folder_is_reported_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = lm_studio(tmp_path)
    deny(monkeypatch, root / "zeta" / "tiny-GGUF")

    scan = scan_lmstudio([root])

    assert [f.name for f in scan.found] == ["alpha/tiny-GGUF:Q4_K_M", "beta/tiny-GGUF:Q4_K_M"]
    assert [p.split(" (")[0] for p in scan.problems] == [
        f"cannot read folder {root / 'zeta' / 'tiny-GGUF'}"
    ]


def test_an_unreadable_ollama_manifest_folder_hides_only_its_own_models(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = ollama_store(tmp_path)
    locked = root / "manifests" / "registry.ollama.ai" / "library" / "locked"
    deny(monkeypatch, locked)

    found = discover(settings(tmp_path), cwd=tmp_path, environ=env(tmp_path))

    assert [e.name for e in found.entries] == ["aaa:1b", "zzz:1b"]
    [problem] = found.problems
    assert f"cannot read folder {locked} (Permission denied)" in problem
    with pytest.raises(ModelFileError) as caught:
        resolve_name(settings(tmp_path), "locked:1b", cwd=tmp_path, environ=env(tmp_path))
    assert "does not exist" in str(caught.value) and f"Not searched: {problem}" in str(caught.value)


def test_an_unreadable_ollama_store_is_reported_not_silently_empty(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = ollama_store(tmp_path)
    deny(monkeypatch, root / "manifests")

    found = discover(settings(tmp_path), cwd=tmp_path, environ=env(tmp_path))

    assert found.entries == ()
    assert [p.split(" (")[0] for p in found.problems] == [
        f"cannot read folder {root / 'manifests'}"
    ]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any folder")
def test_a_folder_without_read_permission_is_reported(tmp_path: Path) -> None:
    root = lm_studio(tmp_path)
    (root / "beta").chmod(0)
    try:
        scan = scan_lmstudio([root])
    finally:
        (root / "beta").chmod(0o755)

    assert [f.name for f in scan.found] == ["alpha/tiny-GGUF:Q4_K_M", "zeta/tiny-GGUF:Q4_K_M"]
    assert [p.split(" (")[0] for p in scan.problems] == [f"cannot read folder {root / 'beta'}"]


def test_hybrid_models_lists_unreadable_folders_under_problems(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = lm_studio(tmp_path)
    deny(monkeypatch, root / "beta")

    text, _ = listing(tmp_path, FakeProbe())
    payload = json.loads(listing(tmp_path, FakeProbe(), as_json=True)[0])

    assert [row["NAME"] for row in table(text)] == [
        "alpha/tiny-GGUF:Q4_K_M",
        "zeta/tiny-GGUF:Q4_K_M",
    ]
    problems = text[text.index("Problems:") :]
    assert f"  cannot read folder {root / 'beta'} (Permission denied)" in problems
    [problem] = payload["problems"]
    assert problem.startswith(f"cannot read folder {root / 'beta'}")


def test_hybrid_models_with_nothing_readable_still_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = lm_studio(tmp_path)
    deny(monkeypatch, root)

    text, _ = listing(tmp_path, FakeProbe())

    assert text.startswith("No models found")
    assert f"Problems:\n  cannot read folder {root} (Permission denied)" in text


def hf_cache(tmp_path: Path) -> Path:
    """A Hugging Face cache with a model (each its own file) in three repositories; returns the
    cache."""
    cache = tmp_path / "user" / ".cache" / "huggingface" / "hub"
    for org in ("alpha", "beta", "zeta"):
        weights = tiny_model().write(tmp_path / f"{org}.gguf")
        hf_model(cache, f"{org}/tiny-GGUF", {"tiny-Q4_K_M.gguf": weights})
    return cache


def test_an_unreadable_hf_cache_repository_hides_only_its_own_models(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = hf_cache(tmp_path)
    snapshots = cache / "models--beta--tiny-GGUF" / "snapshots"
    deny(monkeypatch, snapshots)

    found = discover(settings(tmp_path), cwd=tmp_path, environ=env(tmp_path))

    assert [e.name for e in found.entries] == ["alpha/tiny-GGUF:Q4_K_M", "zeta/tiny-GGUF:Q4_K_M"]
    [problem] = found.problems
    assert f"cannot read folder {snapshots} (Permission denied)" in problem
    assert f"chmod u+rx {snapshots}" in problem


def test_an_unreadable_folder_inside_an_hf_snapshot_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "hub"
    weights = tiny_model().write(tmp_path / "weights.gguf")
    files = {"Q4_K_M/tiny-Q4_K_M.gguf": weights, "Q8_0/tiny-Q8_0.gguf": weights}
    snapshot = hf_model(cache, "org/tiny-GGUF", files)
    deny(monkeypatch, snapshot / "Q8_0")

    scan = scan_hf_cache(cache)

    assert [(f.name, f.path) for f in scan.found] == [
        ("org/tiny-GGUF:Q4_K_M", snapshot / "Q4_K_M" / "tiny-Q4_K_M.gguf")
    ]
    assert [p.split(" (")[0] for p in scan.problems] == [f"cannot read folder {snapshot / 'Q8_0'}"]


def test_an_unreadable_hf_cache_is_reported_not_silently_empty(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = hf_cache(tmp_path)
    deny(monkeypatch, cache)

    scan = scan_hf_cache(cache)

    assert scan.found == ()
    assert [p.split(" (")[0] for p in scan.problems] == [f"cannot read folder {cache}"]


def test_hybrid_models_lists_an_unreadable_llama_cpp_cache_under_problems(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "llama"
    tiny_model().write(cache / "loose-model.gguf")
    tiny_model().write(tmp_path / "models" / "local.gguf")
    deny(monkeypatch, cache)

    text, _ = listing(tmp_path, FakeProbe(), environ={**env(tmp_path), "LLAMA_CACHE": str(cache)})

    assert [row["NAME"] for row in table(text)] == ["local"]
    problems = text[text.index("Problems:") :]
    assert f"  cannot read folder {cache} (Permission denied)" in problems
    [problem] = scan_llama_cache(cache).problems  # reported once, though read for two kinds
    assert problem.startswith(f"cannot read folder {cache}")


# Ollama models built with a LoRA adapter


def with_adapter(manifest: Path, root: Path) -> None:
    """Add an ADAPTER layer to a manifest, as `ollama create` does for a Modelfile's ADAPTER."""
    data = json.loads(manifest.read_text())
    _, layer = ollama_blob(root, b"GGUF lora weights")
    data["layers"].append({"mediaType": ADAPTER, **layer})
    manifest.write_text(json.dumps(data))


def test_an_ollama_model_with_an_adapter_is_refused_naming_its_base(tmp_path: Path) -> None:
    root = tmp_path / "user" / ".ollama" / "models"
    weights = tiny_model().write(tmp_path / "weights.gguf")
    ollama_model(root, "base:1b", weights)
    tuned = ollama_model(root, "tuned:1b", weights)
    with_adapter(tuned, root)

    found = discover(settings(tmp_path), cwd=tmp_path, environ=env(tmp_path))
    entries = {entry.name: entry for entry in found.entries}
    with pytest.raises(ModelFileError) as caught:
        resolve_name(settings(tmp_path), "tuned:1b", cwd=tmp_path, environ=env(tmp_path))

    assert entries["base:1b"].error is None and entries["base:1b"].info is not None
    error = entries["tuned:1b"].error
    assert error is not None and entries["tuned:1b"].info is None
    assert f"applies a LoRA adapter (an ADAPTER layer in manifest {tuned})" in error
    assert "does not support" in error and "serve it by its own name (base:1b)" in error
    assert str(caught.value) == f"model 'tuned:1b' cannot be served: {error}"
    base = resolve_name(settings(tmp_path), "base:1b", cwd=tmp_path, environ=env(tmp_path))
    assert base.resolve() == weights.resolve()


def test_an_adapter_model_without_its_base_points_at_the_weights(tmp_path: Path) -> None:
    root = tmp_path / "user" / ".ollama" / "models"
    weights = tiny_model().write(tmp_path / "weights.gguf")
    with_adapter(ollama_model(root, "tuned:1b", weights), root)
    blob, _ = ollama_blob(root, weights)

    [entry] = discover(settings(tmp_path), cwd=tmp_path, environ=env(tmp_path)).entries

    assert entry.error is not None and "`ollama pull` the FROM" in entry.error
    assert f"by the path of its weights, {blob}" in entry.error
