"""A file's SHA-256, read in blocks with progress: how a model file is identified.

Calibrations are stored per model by this digest, and the embedded model's assembled file is
checked against it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from hybrid.errors import ModelFileError

_HASH_BLOCK = 1 << 20


def sha256_file(path: Path, *, progress: Callable[[int, int], None] | None = None) -> str:
    """Hash a whole file with SHA-256.

    Args:
        path: The file.
        progress: Called as ``progress(bytes_done, total_bytes)`` after each block read.

    Returns:
        The lowercase hex digest.

    Raises:
        ModelFileError: The file is missing or cannot be read.
    """
    digest = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            total = path.stat().st_size
            done = 0
            while block := handle.read(_HASH_BLOCK):
                digest.update(block)
                done += len(block)
                if progress is not None:
                    progress(done, total)
    except OSError as exc:
        raise ModelFileError(f"cannot read {path} to check its hash: {exc}.") from exc
    return digest.hexdigest()
