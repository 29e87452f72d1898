"""``hybrid pull``: download a GGUF model from the Hugging Face hub into the shared HF cache.

:func:`pull` lists the repository (:mod:`hybrid.models.pull_hub`), picks the file or split set
the request names (:mod:`hybrid.models.pull_spec`), checks the free disk space against what is
left to download, and fetches each file into the cache layout of
:mod:`hybrid.models.pull_cache`:

- bytes go to ``blobs/<sha256>.incomplete``, hashed as they arrive; a run that finds one
  resumes it with an HTTP ``Range`` request (after hashing what is already there);
- a cut connection is retried a few times within the run, each time from where it stopped;
- at the end the digest must equal the sha256 the hub publishes (the LFS oid, also sent as
  ``X-Linked-Etag``): a mismatch deletes the download and says so; a match renames it to
  ``blobs/<sha256>``;
- only when every file of the model is in place are the ``snapshots/<commit>/<file>`` links
  made, and ``refs/<revision>`` written, so a model appears whole or not at all.

Why not ``huggingface_hub``: its ``hf_hub_download`` (2.x) downloads into a process-unique
temporary file that it deletes on failure, so an interrupted download starts over; it does not
verify the sha256; a lack of disk space is only a warning; and it brings ``hf-xet``, ``click``,
``fsspec``, ``filelock`` and ``tqdm`` along.  The layout written here is the one it reads.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol, TypeVar

from hybrid.errors import ModelDownloadError
from hybrid.models.pull_cache import RepoCache, blob_lock, free_bytes
from hybrid.models.pull_hub import (
    ConnectionCut,
    FileLocation,
    Hub,
    HubUnavailable,
    RepoListing,
)
from hybrid.models.pull_spec import GgufChoice, PullRequest, RepoFile, choose

DEFAULT_RETRIES = 3
_T = TypeVar("_T")
_SHA256 = 64
_GIT_SHA1 = 40
_HASH_BLOCK = 4 << 20


@dataclass(frozen=True)
class DownloadProgress:
    """How far one file's download has come.

    Attributes:
        path: The file's path in the repository.
        done: Bytes of it on disk.
        total: Its size, when known.
        part: Which file of the model this is (1-based).
        parts: How many files the model has.
    """

    path: str
    done: int
    total: int | None
    part: int
    parts: int


@dataclass(frozen=True)
class PulledFile:
    """One file of a pulled model.

    Attributes:
        repo_path: Its path in the repository.
        path: The snapshot path other tools open (a symlink into ``blobs/``).
        size: Its size in bytes.
        checksum: The sha256 (or git blob id) it was checked against; None when the hub
            published none.
        downloaded: False when it was already in the cache.
    """

    repo_path: str
    path: Path
    size: int
    checksum: str | None
    downloaded: bool


@dataclass(frozen=True)
class PullResult:
    """What :func:`pull` fetched.

    Attributes:
        repo: The repository id.
        commit: The commit the files came from.
        choice: The model chosen in the repository.
        files: Each file, in order (the first is what llama.cpp opens).
    """

    repo: str
    commit: str
    choice: GgufChoice
    files: tuple[PulledFile, ...]

    @property
    def model_path(self) -> Path:
        """The file to load (the first part of a split set)."""
        return self.files[0].path

    @property
    def size(self) -> int:
        """Bytes of every file together."""
        return sum(f.size for f in self.files)


class Digest(Protocol):
    """A running hash (``hashlib``'s objects)."""

    def update(self, data: bytes, /) -> None:
        """Add bytes."""
        ...

    def hexdigest(self) -> str:
        """The digest so far, in lowercase hex."""
        ...


class FreeSpace(Protocol):
    """Says how many bytes are free on the file system of a folder."""

    def __call__(self, folder: Path) -> int:
        """Free bytes where ``folder`` is (or would be)."""
        ...


@dataclass(frozen=True)
class _Planned:
    file: RepoFile
    location: FileLocation
    checksum: str | None


def pull(
    request: PullRequest,
    hub: Hub,
    *,
    revision: str = "main",
    progress: Callable[[DownloadProgress], None] | None = None,
    notice: Callable[[str], None] | None = None,
    free_space: FreeSpace = free_bytes,
    retries: int = DEFAULT_RETRIES,
    sleep: Callable[[float], None] = time.sleep,
) -> PullResult:
    """Download the model ``request`` names into the hub cache; see the module docstring.

    Args:
        request: The repository and the quantization or file asked for.
        hub: The hub client (its config names the cache folder).
        revision: The branch, tag or commit to pull from.
        progress: Called as bytes arrive.
        notice: Receives one-line messages (resuming, retrying, already present).
        free_space: Free bytes of a folder's file system (replaced in tests).
        retries: Further tries of a request that failed for want of a connection or a 5xx.
        sleep: Waits between tries (seconds: 1, 2, 4, ...).

    Returns:
        The files, in the cache.

    Raises:
        ModelDownloadError: The repository, revision, file or quantization does not exist
            (the message lists what does), the token is refused, the disk is too full, the
            connection kept failing (run again to resume), or the checksum did not match
            (the download was deleted).
    """
    say = notice or (lambda line: None)
    cache = RepoCache(hub.config.cache, request.repo)
    listing: RepoListing = _retrying(
        lambda: hub.listing(request.repo, revision), retries, sleep, say
    )
    choice = choose(request, listing.files)
    planned = []
    for file in choice.files:
        locate = functools.partial(hub.locate, request.repo, listing.commit, file.path)
        planned.append(_plan(file, _retrying(locate, retries, sleep, say)))
    _check_space(cache, planned, free_space)
    done: list[PulledFile] = []
    for index, item in enumerate(planned, start=1):
        etag, size = item.location.etag, item.location.size or item.file.size
        if cache.present(listing.commit, item.file.path, etag, size):
            say(f"{item.file.path} is already in {cache.folder}")
            downloaded = False
        elif cache.blob_ready(etag, size):
            downloaded = False
        else:
            report = _reporter(progress, item.file.path, index, len(planned))
            _fetch(hub, cache, item, report, say, retries, sleep)
            downloaded = True
        stored = cache.blob(etag).stat().st_size
        done.append(
            PulledFile(
                item.file.path,
                cache.snapshot(listing.commit, item.file.path),
                stored,
                item.checksum,
                downloaded,
            )
        )
    try:
        for item in planned:
            cache.link(listing.commit, item.file.path, item.location.etag)
        cache.write_ref(revision, listing.commit)
    except OSError as exc:
        raise ModelDownloadError(
            f"cannot write the cache entry for {request.repo} in {cache.folder} ({exc}); "
            "check that the folder is writable (or set HF_HUB_CACHE to one that is)"
        ) from exc
    return PullResult(request.repo, listing.commit, choice, tuple(done))


def _reporter(
    progress: Callable[[DownloadProgress], None] | None, path: str, part: int, parts: int
) -> Callable[[int, int | None], None]:
    def report(done: int, total: int | None) -> None:
        if progress is not None:
            progress(DownloadProgress(path, done, total, part, parts))

    return report


def _plan(file: RepoFile, location: FileLocation) -> _Planned:
    checksum = file.sha256 or location.etag
    if len(checksum) not in (_SHA256, _GIT_SHA1) or not _is_hex(checksum):
        checksum = ""
    return _Planned(file, location, checksum.lower() or None)


def _retrying(
    call: Callable[[], _T], retries: int, sleep: Callable[[float], None], say: Callable[[str], None]
) -> _T:
    for attempt in range(retries + 1):
        try:
            return call()
        except HubUnavailable as exc:
            if attempt == retries:
                raise ModelDownloadError(f"{exc}; run the command again later") from exc
            say(f"{exc}; trying again ({attempt + 1}/{retries})")
            sleep(2.0**attempt)
    raise AssertionError("unreachable")


def _check_space(cache: RepoCache, planned: list[_Planned], free_space: FreeSpace) -> None:
    needed = 0
    for item in planned:
        etag, size = item.location.etag, item.location.size or item.file.size
        if size is None or cache.blob_ready(etag, size):
            continue
        try:
            partial = cache.incomplete(etag).stat().st_size
        except OSError:
            partial = 0
        needed += max(0, size - partial)
    if needed == 0:
        return
    folder = cache.folder / "blobs"
    try:
        free = free_space(folder)
    except OSError:
        return  # cannot tell: the write itself will say if the disk fills up
    if free < needed:
        raise ModelDownloadError(
            f"not enough disk space for {cache.repo}: {_size(needed)} to download, "
            f"{_size(free)} free in {folder}; free some space, or set HF_HUB_CACHE to a "
            "folder on a larger disk, and run the command again"
        )


class _Partial:
    """A download in progress: the ``.incomplete`` file, its length and its running digest."""

    def __init__(self, path: Path, checksum: str | None, size: int | None) -> None:
        self.path = path
        self.checksum = checksum
        self.size = size
        self.digest = _new_digest(checksum, size)
        self.done = 0

    def restart(self) -> None:
        """Forget what was received and empty the file."""
        self.digest = _new_digest(self.checksum, self.size)
        self.done = 0
        self.path.write_bytes(b"")

    def resume(self, say: Callable[[str], None]) -> None:
        """Hash what an earlier run left in the file; start afresh if it cannot be resumed."""
        try:
            have = self.path.stat().st_size
        except FileNotFoundError:
            return
        if self.size is not None and have > self.size:
            self.restart()
            return
        if have:
            say(f"resuming {self.path.name} from {_size(have)} (checking the bytes already there)")
            with self.path.open("rb") as handle:
                while block := handle.read(_HASH_BLOCK):
                    self.digest.update(block)
            self.done = have


def _fetch(
    hub: Hub,
    cache: RepoCache,
    item: _Planned,
    report: Callable[[int, int | None], None],
    say: Callable[[str], None],
    retries: int,
    sleep: Callable[[float], None],
) -> None:
    etag = item.location.etag
    size = item.location.size or item.file.size
    partial = _Partial(cache.incomplete(etag), item.checksum, size)
    try:
        partial.path.parent.mkdir(parents=True, exist_ok=True)
        with blob_lock(cache.lock_file(etag)):
            if cache.blob_ready(etag, size):
                return  # another process finished it while this one waited for the lock
            partial.resume(say)
            failures = 0
            while True:
                before = partial.done
                try:
                    _transfer(hub, item.location.url, partial, report)
                    if size is not None and partial.done < size:
                        raise ConnectionCut("the server ended the body early")
                    break
                except ConnectionCut as exc:
                    failures = 0 if partial.done > before else failures + 1
                    if failures > retries:
                        raise ModelDownloadError(
                            f"the connection kept failing while downloading {item.file.path} "
                            f"from {cache.repo} ({exc}); {_size(partial.done)} of "
                            f"{_size(size)} are kept in {partial.path}: run the same command "
                            "again to resume"
                        ) from exc
                    say(
                        f"connection cut at {_size(partial.done)} ({exc}); resuming "
                        f"({max(failures, 1)}/{retries})"
                    )
                    sleep(min(2.0 ** max(failures - 1, 0), 30.0))
            _verify(cache, item, partial)
            os.replace(partial.path, cache.blob(etag))
            os.chmod(cache.blob(etag), 0o644)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise ModelDownloadError(
                f"the disk filled up while downloading {item.file.path} from {cache.repo}; "
                f"free some space and run the command again: it resumes from {partial.path} "
                "(or delete that file to give the space back)"
            ) from exc
        raise ModelDownloadError(
            f"cannot write {partial.path} ({exc}); check that the folder is writable (or set "
            "HF_HUB_CACHE to one that is) and run the command again"
        ) from exc


def _transfer(
    hub: Hub, url: str, partial: _Partial, report: Callable[[int, int | None], None]
) -> None:
    with hub.body(url, partial.done) as body:
        if body.offset != partial.done:
            # The server ignored the Range request and sends the whole file: start over.
            partial.restart()
        with partial.path.open("ab") as out:
            report(partial.done, partial.size)
            for chunk in body.chunks:
                write_chunk(out, chunk)
                partial.digest.update(chunk)
                partial.done += len(chunk)
                report(partial.done, partial.size)


def write_chunk(out: BinaryIO, chunk: bytes) -> None:
    """Append one received chunk to the ``.incomplete`` file and flush it to the OS, so that
    what was received survives an interruption.

    Raises:
        OSError: The write failed (``ENOSPC`` when the disk is full).
    """
    out.write(chunk)
    out.flush()


def _verify(cache: RepoCache, item: _Planned, partial: _Partial) -> None:
    got = partial.digest.hexdigest()
    if partial.size is not None and partial.done != partial.size:
        problem = f"{_size(partial.done)} arrived instead of {_size(partial.size)}"
    elif item.checksum is not None and got != item.checksum:
        kind = "sha256" if len(item.checksum) == _SHA256 else "git blob id"
        problem = f"its {kind} is {got}, but the hub publishes {item.checksum}"
    else:
        return
    partial.path.unlink(missing_ok=True)
    raise ModelDownloadError(
        f"the download of {item.file.path} from {cache.repo} is corrupt ({problem}); it was "
        "deleted: run the command again to download it afresh"
    )


def _new_digest(checksum: str | None, size: int | None) -> Digest:
    if checksum is not None and len(checksum) == _GIT_SHA1 and size is not None:
        digest = hashlib.sha1(usedforsecurity=False)
        digest.update(f"blob {size}\0".encode())  # git's blob id: sha1 of header + content
        return digest
    return hashlib.sha256()


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdefABCDEF" for c in text)


def _size(count: int | None) -> str:
    if count is None:
        return "an unknown size"
    if count >= 1 << 30:
        return f"{count / (1 << 30):.1f} GiB"
    if count >= 1 << 20:
        return f"{count / (1 << 20):.1f} MiB"
    return f"{count:,} bytes"
