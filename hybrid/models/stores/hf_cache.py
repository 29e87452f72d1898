"""The Hugging Face hub cache, as ``huggingface_hub`` (and ``hybrid pull``) write it::

    <cache>/models--<org>--<name>/
        blobs/<sha256 or git sha1>                 the content
        refs/main                                  the commit ``main`` points to
        snapshots/<commit>/<path in the repo>      links into ../../blobs (copies on Windows)

Each ``.gguf`` in a snapshot is a model (a split model's parts, ``-00001-of-0000N``, are one);
files in sub-folders of the repository count too.  When the cache holds several commits of a
repository, the one ``refs/main`` names comes first and a file is listed once, from the first
commit holding it.  A snapshot link whose blob is gone is listed with an error; dot-files (a
partial download, say) are not listed (:func:`~hybrid.models.stores.files.is_gguf_file`).
Models are named ``org/name:QUANT`` (see :func:`~hybrid.models.stores.files.repo_models`).  A
folder that cannot be read (the cache, a repository's, a snapshot or a folder inside one) is
reported as a problem; the others are still listed.  So is a ``refs/main`` that is there but
cannot be read, is empty or names a commit with no snapshot: the snapshots are then ordered
newest first.
"""

from __future__ import annotations

from pathlib import Path

from hybrid.models.stores import Found, Skipped, StoreScan
from hybrid.models.stores.files import (
    ModelFiles,
    group_models,
    is_folder,
    is_gguf_file,
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
        repo = _repo_name(repo_dir)
        models: dict[str, tuple[ModelFiles, str]] = {}
        for snapshot in _snapshots(repo_dir, problems):
            grouped, passed = _snapshot_models(snapshot, problems)
            skipped.extend(passed)
            for model in grouped:
                relative = model.path.relative_to(snapshot).as_posix()
                models.setdefault(relative, (model, relative))
        found.extend(repo_models("hf", repo, list(models.values())))
    return StoreScan(tuple(found), tuple(skipped), tuple(problems))


def _repo_name(repo_dir: Path) -> str:
    """``org/name`` from a ``models--org--name`` folder."""
    return repo_dir.name[len(REPO_PREFIX) :].replace("--", "/", 1)


def _snapshots(repo_dir: Path, problems: list[str]) -> list[Path]:
    """The repository's snapshot folders, the one ``refs/main`` names first, then newest first;
    newest first alone when ``refs/main`` is missing, or reported to ``problems`` when it is
    there but names no snapshot of the cache."""
    snapshots = [
        path for path in list_folder(repo_dir / "snapshots", problems) if is_folder(path, problems)
    ]
    main = _main_commit(repo_dir, [path.name for path in snapshots], problems)

    def order(path: Path) -> tuple[bool, float]:
        try:
            mtime = path.stat().st_mtime
        except OSError:
            mtime = 0.0
        return (path.name != main, -mtime)

    return sorted(snapshots, key=order)


def _main_commit(repo_dir: Path, snapshots: list[str], problems: list[str]) -> str | None:
    """The commit ``refs/main`` names, when it names one of ``snapshots``.

    A missing ``refs/main`` is normal (a cache filled by revision) and says nothing; one that
    cannot be read, is empty or names a snapshot the cache does not hold is reported to
    ``problems``, naming the file and what to do.  Nothing is reported when there is no
    snapshot to order.
    """
    ref = repo_dir / "refs" / "main"
    fix = None
    try:
        main = ref.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        what = f"cannot read {ref} ({exc.strerror or exc})"
        fix = f"give the user running hybrid read access to it (`chmod u+r {ref}` as its owner)"
    except UnicodeDecodeError:
        what = f"{ref} is not text"
    else:
        if main in snapshots:
            return main
        what = f"{ref} names commit {main}, which has no snapshot" if main else f"{ref} is empty"
    if snapshots:
        repo = _repo_name(repo_dir)
        fix = fix or (
            f"download the repository again (e.g. `hybrid pull {repo}`), which rewrites it, "
            "or delete it"
        )
        problems.append(
            f"{what}, so the snapshots of {repo} are ordered newest first instead of main's "
            f"first (a file in several snapshots is listed from the newest): {fix}"
        )
    return None


def _snapshot_models(snapshot: Path, problems: list[str]) -> tuple[list[ModelFiles], list[Skipped]]:
    models: list[ModelFiles] = []
    skipped: list[Skipped] = []
    for files in _gguf_files_by_folder(snapshot, problems):
        grouped, passed = group_models(files)
        models.extend(grouped)
        skipped.extend(passed)
    return models, skipped


def _gguf_files_by_folder(folder: Path, problems: list[str]) -> list[list[Path]]:
    """The ``.gguf`` files and links of ``folder`` and of each folder inside it (dot-files left
    out: :func:`~hybrid.models.stores.files.is_gguf_file`), one list per folder holding any,
    folders in name order; links to folders are not followed (as ``huggingface_hub`` never
    makes them)."""
    files: list[Path] = []
    inside: list[list[Path]] = []
    for path in list_folder(folder, problems):
        if is_gguf_file(path):
            files.append(path)
        elif not path.is_symlink() and is_folder(path, problems):
            inside.extend(_gguf_files_by_folder(path, problems))
    return [files, *inside] if files else inside
