"""The Hugging Face cache layout that ``hybrid pull`` writes, so every tool shares the file.

The layout is ``huggingface_hub``'s (and llama.cpp's ``-hf`` and other tools read it too)::

    <cache>/models--<org>--<name>/
        blobs/<sha256>                  the file's content, named by its checksum
        blobs/<sha256>.incomplete       a download in progress (resumed from its length)
        snapshots/<commit>/<path>       a relative symlink to ../../blobs/<sha256>
        refs/<revision>                 the commit a branch or tag pointed at

``<cache>`` is ``HF_HUB_CACHE``, else ``HF_HOME/hub``, else ``$XDG_CACHE_HOME/huggingface/hub``
(``~/.cache/huggingface/hub``), as ``huggingface_hub`` resolves it.  A blob appears only once its
checksum has passed, and the snapshot link only after that; the ``.incomplete`` file is never
named ``*.gguf``, so nothing that looks for models takes it for one.  Concurrent pulls of the
same blob are serialised by an exclusive lock on ``<cache>/.locks/models--<org>--<name>/
<sha256>.lock`` (the lock file ``huggingface_hub`` uses).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from hybrid.models.stores.roots import store_roots

try:  # POSIX; elsewhere two concurrent pulls of one file are not serialised
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

INCOMPLETE_SUFFIX = ".incomplete"


def hub_cache_dir(environ: Mapping[str, str]) -> Path:
    """The Hugging Face hub cache folder, resolved the way ``huggingface_hub`` resolves it
    (and the way discovery reads it: :func:`hybrid.models.stores.roots.store_roots`).

    Args:
        environ: The environment (``HF_HUB_CACHE``, ``HUGGINGFACE_HUB_CACHE``, ``HF_HOME``,
            ``XDG_CACHE_HOME``, ``HOME``).

    Returns:
        The folder (it may not exist yet).
    """
    return store_roots(environ).hf


def hf_home(environ: Mapping[str, str]) -> Path:
    """``HF_HOME``, else ``$XDG_CACHE_HOME/huggingface``, else ``~/.cache/huggingface``."""
    home = environ.get("HF_HOME")
    if home:
        return Path(home).expanduser()
    xdg = environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg).expanduser() / "huggingface"
    home = environ.get("HOME") or environ.get("USERPROFILE")
    return (Path(home) if home else Path.home()) / ".cache" / "huggingface"


@dataclass(frozen=True)
class RepoCache:
    """One model repository's folder in the hub cache.

    Attributes:
        cache: The hub cache folder.
        repo: The repository id, ``org/name``.
    """

    cache: Path
    repo: str

    @property
    def folder(self) -> Path:
        """``<cache>/models--org--name``."""
        return self.cache / ("models--" + self.repo.replace("/", "--"))

    def blob(self, etag: str) -> Path:
        """Where a file whose checksum is ``etag`` is stored."""
        return self.folder / "blobs" / etag

    def incomplete(self, etag: str) -> Path:
        """Where that file's download in progress is kept."""
        return self.folder / "blobs" / (etag + INCOMPLETE_SUFFIX)

    def snapshot(self, commit: str, path: str) -> Path:
        """The file ``path`` as of ``commit``: the name other tools open."""
        return self.folder / "snapshots" / commit / path

    def lock_file(self, etag: str) -> Path:
        """The lock serialising downloads of one blob."""
        return self.cache / ".locks" / self.folder.name / f"{etag}.lock"

    def link(self, commit: str, path: str, etag: str) -> Path:
        """Point ``snapshots/<commit>/<path>`` at the blob, atomically (relative symlink).

        Args:
            commit: The commit the file belongs to.
            path: The file's path inside the repository.
            etag: The blob's name.

        Returns:
            The snapshot path.

        Raises:
            OSError: The link cannot be made.
        """
        target = self.snapshot(commit, path)
        target.parent.mkdir(parents=True, exist_ok=True)
        relative = os.path.relpath(self.blob(etag), target.parent)
        temporary = target.with_name(f".{target.name}.{secrets.token_hex(4)}.link")
        os.symlink(relative, temporary)
        try:
            os.replace(temporary, target)
        except OSError:
            temporary.unlink(missing_ok=True)
            raise
        return target

    def write_ref(self, revision: str, commit: str) -> None:
        """Record that ``revision`` (a branch or tag) points at ``commit``.

        Nothing is written when ``revision`` is the commit itself.

        Raises:
            OSError: The file cannot be written.
        """
        if revision == commit:
            return
        ref = self.folder / "refs" / revision
        ref.parent.mkdir(parents=True, exist_ok=True)
        temporary = ref.with_name(f".{ref.name}.{secrets.token_hex(4)}.tmp")
        temporary.write_text(commit, encoding="utf-8")
        os.replace(temporary, ref)

    def present(self, commit: str, path: str, etag: str, size: int | None) -> bool:
        """Whether the snapshot link exists and leads to this blob, at the expected size."""
        snapshot = self.snapshot(commit, path)
        try:
            same = snapshot.resolve(strict=True) == self.blob(etag).resolve(strict=True)
            actual = snapshot.stat().st_size
        except OSError:
            return False
        return same and (size is None or actual == size)

    def blob_ready(self, etag: str, size: int | None) -> bool:
        """Whether the blob is already stored (by an earlier pull, or another tool)."""
        try:
            actual = self.blob(etag).stat().st_size
        except OSError:
            return False
        return size is None or actual == size


@contextlib.contextmanager
def blob_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if needed) for the ``with`` block.

    Raises:
        OSError: The lock file cannot be created.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        if fcntl is not None:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def free_bytes(folder: Path) -> int:
    """Free bytes on the file system holding ``folder`` (or its nearest existing parent).

    Raises:
        OSError: No parent of ``folder`` can be inspected.
    """
    probe = folder
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    return shutil.disk_usage(probe).free
