"""LM Studio's models folder: ``<root>/<publisher>/<repo>/<file>.gguf``.

LM Studio downloads each Hugging Face repository into ``<publisher>/<repo>``, so its models get
the same names as in the Hugging Face cache: ``publisher/repo:QUANT`` (or
``publisher/repo/<file>`` when the quantization does not tell the files apart).  Roots:
``~/.lmstudio/models`` (LM Studio 0.3 and later) and ``~/.cache/lm-studio/models`` (earlier).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hybrid.models.stores import Found, Skipped, StoreScan
from hybrid.models.stores.files import gguf_files, group_models, repo_models


def scan_lmstudio(roots: Sequence[Path]) -> StoreScan:
    """List the models in LM Studio's folders.

    Args:
        roots: The models folders (they may not exist).

    Returns:
        The models, by root, publisher and repository.
    """
    found: list[Found] = []
    skipped: list[Skipped] = []
    for root in roots:
        for repo_dir in _repo_dirs(root):
            models, passed = group_models(gguf_files(repo_dir))
            skipped.extend(passed)
            repo = f"{repo_dir.parent.name}/{repo_dir.name}"
            found.extend(repo_models("lmstudio", repo, [(m, m.path.name) for m in models]))
    return StoreScan(tuple(found), tuple(skipped))


def _repo_dirs(root: Path) -> list[Path]:
    try:
        publishers = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        return [
            repo
            for publisher in publishers
            for repo in sorted(publisher.iterdir())
            if repo.is_dir() and not repo.name.startswith(".")
        ]
    except OSError:
        return []
