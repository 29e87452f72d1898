"""LM Studio's models folder: ``<root>/<publisher>/<repo>/<file>.gguf``.

LM Studio downloads each Hugging Face repository into ``<publisher>/<repo>``, so its models get
the same names as in the Hugging Face cache: ``publisher/repo:QUANT`` (or
``publisher/repo/<file>`` when the quantization does not tell the files apart).  Roots:
``~/.lmstudio/models`` (LM Studio 0.3 and later) and ``~/.cache/lm-studio/models`` (earlier).
A publisher or repository folder that cannot be read is reported as a problem; the others are
still listed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hybrid.models.stores import Found, Skipped, StoreScan
from hybrid.models.stores.files import (
    gguf_files,
    group_models,
    is_folder,
    list_folder,
    repo_models,
)


def scan_lmstudio(roots: Sequence[Path]) -> StoreScan:
    """List the models in LM Studio's folders.

    Args:
        roots: The models folders (they may not exist).

    Returns:
        The models, by root, publisher and repository, and a problem for each folder that
        cannot be read.
    """
    found: list[Found] = []
    skipped: list[Skipped] = []
    problems: list[str] = []
    for root in roots:
        for repo_dir in _repo_dirs(root, problems):
            models, passed = group_models(gguf_files(repo_dir, problems))
            skipped.extend(passed)
            repo = f"{repo_dir.parent.name}/{repo_dir.name}"
            found.extend(repo_models("lmstudio", repo, [(m, m.path.name) for m in models]))
    return StoreScan(tuple(found), tuple(skipped), tuple(problems))


def _repo_dirs(root: Path, problems: list[str]) -> list[Path]:
    return [
        repo for publisher in _folders(root, problems) for repo in _folders(publisher, problems)
    ]


def _folders(parent: Path, problems: list[str]) -> list[Path]:
    return [
        path
        for path in list_folder(parent, problems)
        if not path.name.startswith(".") and is_folder(path, problems)
    ]
