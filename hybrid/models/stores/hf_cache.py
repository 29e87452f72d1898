"""The Hugging Face hub cache, as ``huggingface_hub`` (and ``hybrid pull``) write it::

    <cache>/models--<org>--<name>/
        blobs/<sha256 or git sha1>                 the content
        refs/main                                  the commit ``main`` points to
        snapshots/<commit>/<path in the repo>      links into ../../blobs (copies on Windows)

Each ``.gguf`` in a snapshot is a model (a split model's parts, ``-00001-of-0000N``, are one);
files in sub-folders of the repository count too.  When the cache holds several commits of a
repository, the one ``refs/main`` names comes first and a file is listed once, from the first
commit holding it.  A snapshot link whose blob is gone is listed with an error.  Models are
named ``org/name:QUANT`` (see :func:`~hybrid.models.stores.files.repo_models`).
"""

from __future__ import annotations

from pathlib import Path

from hybrid.models.stores import Found, Skipped, StoreScan
from hybrid.models.stores.files import GGUF_SUFFIX, ModelFiles, group_models, repo_models

REPO_PREFIX = "models--"


def scan_hf_cache(cache: Path) -> StoreScan:
    """List the GGUF models in a Hugging Face hub cache.

    Args:
        cache: The hub cache folder (it may not exist).

    Returns:
        The models, by repository.
    """
    try:
        repos = sorted(
            path for path in cache.iterdir() if path.name.startswith(REPO_PREFIX) and path.is_dir()
        )
    except OSError:
        return StoreScan()
    found: list[Found] = []
    skipped: list[Skipped] = []
    for repo_dir in repos:
        repo = repo_dir.name[len(REPO_PREFIX) :].replace("--", "/", 1)
        models: dict[str, tuple[ModelFiles, str]] = {}
        for snapshot in _snapshots(repo_dir):
            grouped, passed = _snapshot_models(snapshot)
            skipped.extend(passed)
            for model in grouped:
                relative = model.path.relative_to(snapshot).as_posix()
                models.setdefault(relative, (model, relative))
        found.extend(repo_models("hf", repo, list(models.values())))
    return StoreScan(tuple(found), tuple(skipped))


def _snapshots(repo_dir: Path) -> list[Path]:
    """The repository's snapshot folders, the one ``refs/main`` names first, then newest first."""
    try:
        snapshots = [path for path in (repo_dir / "snapshots").iterdir() if path.is_dir()]
    except OSError:
        return []
    try:
        main = (repo_dir / "refs" / "main").read_text(encoding="utf-8").strip()
    except OSError:
        main = ""

    def order(path: Path) -> tuple[bool, float]:
        try:
            mtime = path.stat().st_mtime
        except OSError:
            mtime = 0.0
        return (path.name != main, -mtime)

    return sorted(snapshots, key=order)


def _snapshot_models(snapshot: Path) -> tuple[list[ModelFiles], list[Skipped]]:
    files: dict[Path, list[Path]] = {}
    try:
        for path in snapshot.rglob("*"):
            if path.name.lower().endswith(GGUF_SUFFIX) and (path.is_file() or path.is_symlink()):
                files.setdefault(path.parent, []).append(path)
    except OSError:
        return [], []
    models: list[ModelFiles] = []
    skipped: list[Skipped] = []
    for folder in sorted(files):
        grouped, passed = group_models(files[folder])
        models.extend(grouped)
        skipped.extend(passed)
    return models, skipped
