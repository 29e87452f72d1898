"""Where fitted difficulty models live: per local model, keyed by the GGUF's SHA-256.

``hybrid calibrate`` writes ``<home>/calibration/<sha256>.json``; the package ships the same
file for the embedded model under ``hybrid/routing/data/``.  A model calibrated on this machine
wins over the shipped one.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Callable
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from hybrid.errors import ConfigError
from hybrid.models.gguf import sha256_file
from hybrid.routing.difficulty.model import DifficultyModel

SHIPPED_PACKAGE = "hybrid.routing"
SHIPPED_FOLDER = "data"


def model_path(home: Path, sha256: str) -> Path:
    """Where ``hybrid calibrate`` stores the model for a GGUF file.

    Args:
        home: The data dir (``settings.home``).
        sha256: The GGUF file's SHA-256, hex.

    Returns:
        ``home / "calibration" / f"{sha256}.json"``.
    """
    return home / "calibration" / f"{sha256}.json"


def gguf_sha256(path: Path, *, progress: Callable[[str], None] | None = None) -> str:
    """The SHA-256 of a GGUF file, the key its difficulty model is stored under.

    The embedded model's assembly (:mod:`hybrid.models.embedded`) leaves a sidecar marker,
    ``<file>.sha256`` holding ``{"sha256", "size", "mtime_ns"}``; when it matches the file's
    size and mtime its hash is used, instead of reading 253 MB again.  Other files are hashed
    (about a second per 250 MB).

    Args:
        path: The GGUF file.
        progress: Receives a line before a file is hashed.

    Returns:
        The hex digest.

    Raises:
        ModelFileError: The file cannot be read.
    """
    marker = path.with_name(path.name + ".sha256")
    try:
        stat = path.stat()
        data = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = None
    if (
        isinstance(data, dict)
        and isinstance(data.get("sha256"), str)
        and data.get("size") == stat.st_size
        and data.get("mtime_ns") == stat.st_mtime_ns
    ):
        return str(data["sha256"])
    if progress is not None:
        progress(f"hashing {path} ...")
    return sha256_file(path)


def shipped_models() -> Traversable:
    """The package folder holding the shipped models (``hybrid/routing/data``)."""
    return resources.files(SHIPPED_PACKAGE).joinpath(SHIPPED_FOLDER)


def load_for(
    home: Path, sha256: str, *, shipped: Traversable | Path | None = None
) -> DifficultyModel | None:
    """The difficulty model for a GGUF file: the data dir's, else the package's.

    Args:
        home: The data dir (``settings.home``).
        sha256: The GGUF file's SHA-256, hex.
        shipped: Folder of shipped models (default: :func:`shipped_models`).

    Returns:
        The model, or None when neither place has one for this file.

    Raises:
        ConfigError: The file found is unreadable, damaged or made for other features; the
            message names it and says to run ``hybrid calibrate``.  A damaged calibration in
            the data dir is reported, not silently replaced by the shipped one.
    """
    local = model_path(home, sha256)
    if local.is_file():
        return _read(local, str(local))
    folder = shipped_models() if shipped is None else shipped
    packaged = folder.joinpath(f"{sha256}.json")
    if packaged.is_file():
        return _read(packaged, f"the shipped difficulty model {sha256}.json")
    return None


def _read(source: Traversable | Path, name: str) -> DifficultyModel:
    try:
        data = json.loads(source.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"cannot read the difficulty model {name}: {exc}. Run `hybrid calibrate` to "
            "write it again."
        ) from exc
    try:
        return DifficultyModel.from_json(data)
    except ConfigError as exc:
        raise ConfigError(f"{name}: {exc}") from exc


def save(home: Path, sha256: str, model: DifficultyModel) -> Path:
    """Store a fitted model for a GGUF file, atomically.

    Args:
        home: The data dir.
        sha256: The GGUF file's SHA-256, hex.
        model: The model.

    Returns:
        The path written (:func:`model_path`).

    Raises:
        ConfigError: The data dir cannot be written.
    """
    path = model_path(home, sha256)
    write_atomic(path, json.dumps(model.to_json(), indent=1) + "\n")
    return path


def write_atomic(path: Path, text: str) -> None:
    """Write a text file so that readers see the old file or the new one, never half of one.

    Raises:
        ConfigError: The folder cannot be created or written.
    """
    temp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.part")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with temp.open("x", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except OSError as exc:
        raise ConfigError(
            f"cannot write {path}: {exc}. Check that the data dir (HYBRID_HOME) is writable."
        ) from exc
    finally:
        with contextlib.suppress(OSError):
            temp.unlink(missing_ok=True)
