"""Test helpers: build other tools' model stores (Ollama, LM Studio, the Hugging Face cache,
llama.cpp's cache) in their real on-disk layouts, with a given GGUF file as the weights."""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path

MODEL = "application/vnd.ollama.image.model"
TEMPLATE = "application/vnd.ollama.image.template"
PARAMS = "application/vnd.ollama.image.params"
SYSTEM = "application/vnd.ollama.image.system"


@functools.cache
def file_digest(path: Path) -> str:
    """SHA-256 of a file (remembered: tests link the same large file many times)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def ollama_blob(root: Path, content: bytes | Path) -> tuple[Path, dict[str, object]]:
    """Put a blob in the store (a link when ``content`` is a file); returns it and its layer."""
    blobs = root / "blobs"
    blobs.mkdir(parents=True, exist_ok=True)
    if isinstance(content, Path):
        hex_digest, size = file_digest(content), content.stat().st_size
        blob = blobs / f"sha256-{hex_digest}"
        if not blob.is_symlink() and not blob.exists():
            os.symlink(content.resolve(), blob)
    else:
        hex_digest, size = hashlib.sha256(content).hexdigest(), len(content)
        blob = blobs / f"sha256-{hex_digest}"
        blob.write_bytes(content)
    return blob, {"digest": f"sha256:{hex_digest}", "size": size}


def ollama_model(
    root: Path,
    name: str,
    weights: Path,
    *,
    template: str | None = None,
    params: Mapping[str, object] | None = None,
    system: str | None = None,
    host: str = "registry.ollama.ai",
    namespace: str = "library",
) -> Path:
    """Write an Ollama manifest for ``name`` (``model:tag``) whose model layer is ``weights``.

    Returns:
        The manifest file.
    """
    model, tag = name.split(":") if ":" in name else (name, "latest")
    if "/" in model:
        namespace, model = model.split("/")
    _, config = ollama_blob(root, b'{"model_format":"gguf","model_family":"llama"}')
    layers = []
    _, layer = ollama_blob(root, weights)
    layers.append({"mediaType": MODEL, **layer})
    for media, text in ((TEMPLATE, template), (SYSTEM, system)):
        if text is not None:
            _, layer = ollama_blob(root, text.encode())
            layers.append({"mediaType": media, **layer})
    if params is not None:
        _, layer = ollama_blob(root, json.dumps(params).encode())
        layers.append({"mediaType": PARAMS, **layer})
    manifest = root / "manifests" / host / namespace / model / tag
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text(
        json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "config": {"mediaType": "application/vnd.docker.container.image.v1+json", **config},
                "layers": layers,
            }
        )
    )
    return manifest


def hf_model(
    cache: Path, repo: str, files: Mapping[str, Path], *, revision: str = "a" * 40
) -> Path:
    """Put files in the hub cache as ``huggingface_hub`` does: blobs, snapshot links, refs/main.

    Args:
        cache: The hub cache folder.
        repo: ``org/name``.
        files: Path in the repository -> the file whose content it has (linked, not copied).
        revision: The commit the snapshot is of.

    Returns:
        The snapshot folder.
    """
    repo_dir = cache / ("models--" + repo.replace("/", "--"))
    snapshot = repo_dir / "snapshots" / revision
    (repo_dir / "blobs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs").mkdir(exist_ok=True)
    (repo_dir / "refs" / "main").write_text(revision)
    for relative, content in files.items():
        blob = repo_dir / "blobs" / file_digest(content)
        if not blob.is_symlink() and not blob.exists():
            os.symlink(content.resolve(), blob)
        link = snapshot / relative
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(blob, link.parent), link)
    return snapshot


def link(target: Path, path: Path) -> Path:
    """A symbolic link at ``path`` to ``target`` (folders created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, path)
    return path
