"""The Hugging Face hub cache, as ``huggingface_hub`` (and ``hybrid pull``) write it::

    <cache>/models--<org>--<name>/
        blobs/<sha256 or git sha1>                 the content
        refs/main                                  the commit ``main`` points to
        snapshots/<commit>/<path in the repo>      links into ../../blobs (copies on Windows)

Each ``.gguf`` in a snapshot is a model (a split model's parts, ``-00001-of-0000N``, are one);
files in sub-folders of the repository count too.  When the cache holds several commits of a
repository, the one ``refs/main`` names comes first and a file is listed once, from the first
commit holding it.  A snapshot link whose blob is gone is listed with an error.  Models are
named ``org/name:QUANT`` (see :func:`~hybrid.models.stores.files.repo_models`).  A folder that
cannot be read (the cache, a repository's, a snapshot or a folder inside one) is reported as a
problem; the others are still listed.
"""

from __future__ import annotations

from pathlib import Path

from hybrid.models.stores import Found, Skipped, StoreScan
from hybrid.models.stores.files import (
    GGUF_SUFFIX,
    ModelFiles,
    group_models,
    is_folder,
    list_folder,
    repo_models,
)

REPO_PREFIX = "models--"


def scan_hf_cache(cache: Path) -> StoreScan:
    """List the GGUF models in a Hugging Face hub cache.

    Args:
        cache: The hub cache folder (it may not exist).

    Returns:
        The models, by repository, and a problem for each folder that cannot be read.
    """
    problems: list[str] = []
    repos = [
        path
        for path in list_folder(cache, problems)
        if path.name.startswith(REPO_PREFIX) and is_folder(path, problems)
    ]
    found: list[Found] = []
    skipped: list[Skipped] = []
    for repo_dir in repos:
        repo = repo_dir.name[len(REPO_PREFIX) :].replace("--", "/", 1)
        models: dict[str, tuple[ModelFiles, str]] = {}
        for snapshot in _snapshots(repo_dir, problems):
            grouped, passed = _snapshot_models(snapshot, problems)
            skipped.extend(passed)
            for model in grouped:
                relative = model.path.relative_to(snapshot).as_posix()
                models.setdefault(relative, (model, relative))
        found.extend(repo_models("hf", repo, list(models.values())))
    return StoreScan(tuple(found), tuple(skipped), tuple(problems))


def _snapshots(repo_dir: Path, problems: list[str]) -> list[Path]:
    """The repository's snapshot folders, the one ``refs/main`` names first, then newest first."""
    snapshots = [
        path for path in list_folder(repo_dir / "snapshots", problems) if is_folder(path, problems)
    ]
    try:
        main = (repo_dir / "refs" / "main").read_text(encoding="utf-8").strip()
    except OSError:  # no refs/main (a cache filled by revision): order by age alone
        main = ""

    def order(path: Path) -> tuple[bool, float]:
        try:
            mtime = path.stat().st_mtime
        except OSError:
            mtime = 0.0
        return (path.name != main, -mtime)

    return sorted(snapshots, key=order)


def _snapshot_models(snapshot: Path, problems: list[str]) -> tuple[list[ModelFiles], list[Skipped]]:
    models: list[ModelFiles] = []
    skipped: list[Skipped] = []
    for files in _gguf_files_by_folder(snapshot, problems):
        grouped, passed = group_models(files)
        models.extend(grouped)
        skipped.extend(passed)
    return models, skipped


def _gguf_files_by_folder(folder: Path, problems: list[str]) -> list[list[Path]]:
    """The ``.gguf`` files (and links) of ``folder`` and of each folder inside it, one list per
    folder holding any, folders in name order; links to folders are not followed (as
    ``huggingface_hub`` never makes them)."""
    files: list[Path] = []
    inside: list[list[Path]] = []
    for path in list_folder(folder, problems):
        if path.name.lower().endswith(GGUF_SUFFIX) and (path.is_symlink() or path.is_file()):
            files.append(path)
        elif not path.is_symlink() and is_folder(path, problems):
            inside.extend(_gguf_files_by_folder(path, problems))
    return [files, *inside] if files else inside
