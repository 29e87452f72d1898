"""Where fitted difficulty models live: per local model, keyed by the GGUF's SHA-256.

``hybrid calibrate`` writes ``<home>/calibration/<sha256>.json``; the package ships the same
file for the embedded model under ``hybrid/routing/data/``.  A model calibrated on this machine
wins over the shipped one; ``hybrid calibrate --reset`` removes it (:func:`remove`), and the
shipped one is used again.  :func:`find` says which one is in use.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, Literal

from hybrid.errors import ConfigError
from hybrid.models.file_hash import sha256_file
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


def name_key(model: str) -> str:
    """The key a model known only by name (a LAN server's ``qwen2.5-32b-instruct``) is stored
    under: the SHA-256 of ``model-name:<name>``, so that it lives beside the files' keys and
    never equals one.

    Args:
        model: The model's name, as its server's API spells it.

    Returns:
        The hex digest.
    """
    return hashlib.sha256(f"model-name:{model}".encode()).hexdigest()


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


@dataclass(frozen=True, eq=False)
class StoredModel:
    """A difficulty model and the file it came from.

    Attributes:
        model: The model.
        source: ``"user"`` for a ``hybrid calibrate`` result in the data dir, ``"shipped"``
            for the package's.
        path: The file it was read from.
    """

    model: DifficultyModel
    source: Literal["user", "shipped"]
    path: str

    def summary(self) -> dict[str, Any]:
        """What ``hybrid models`` and ``/health`` show of it.

        Returns:
            :data:`SUMMARY_KEYS`: ``source``, ``path``, ``created`` (the date it was fitted),
            ``items`` (how many calibration items it was fitted and measured on),
            ``held_out_auroc`` (each of these three None when the file does not say), and
            ``model_stage``: None without a probe, else its ``band_share`` (the share of the
            calibration items it settles) and ``held_out_auroc`` (both stages together on the
            held-out items), each None when the file does not say, and ``every``: whether it
            can be asked for every request (``routing.difficulty.model_stage = "every"``: it
            was fitted with the threshold for it); ``words``: whether its
            feature stage reads the hashed words of the prompt (false when it was fitted on the
            hand-made features alone, as ``hybrid calibrate`` fits by default).
        """
        meta = self.model.meta
        created, items = meta.get("created"), meta.get("items")
        stage = None
        if self.model.probe is not None:
            stage = {
                "band_share": _number(meta.get("probe_band_share")),
                "held_out_auroc": _number(meta.get("held_out_two_stage_auroc")),
                "every": self.model.probe.every_threshold is not None,
            }
        return {
            "source": self.source,
            "path": self.path,
            "created": created if isinstance(created, str) else None,
            "items": items if isinstance(items, int) and not isinstance(items, bool) else None,
            "held_out_auroc": _number(meta.get("held_out_auroc")),
            "model_stage": stage,
            "words": self.model.words,
        }

    def describe(self) -> str:
        """One phrase for people: ``the shipped calibration (made 2026-11-27, 540 items,
        held-out AUROC 0.759)`` or ``your calibration /home/me/.hybrid/calibration/<sha>.json
        (...)``."""
        summary = self.summary()
        facts = []
        if summary["created"] is not None:
            facts.append(f"made {summary['created']}")
        if summary["items"] is not None:
            facts.append(f"{summary['items']} items")
        if summary["held_out_auroc"] is not None:
            facts.append(f"held-out AUROC {summary['held_out_auroc']:.3f}")
        stage = summary["model_stage"]
        if stage is not None and stage["band_share"] == 0:
            # Cross-validation found no band where the probe helps: it is never asked.
            facts.append("with a model stage that settles no request in its band")
        elif stage is not None:
            both = stage["held_out_auroc"]
            facts.append(
                "with the model stage" + ("" if both is None else f" ({both:.3f} with both stages)")
            )
        if stage is not None and stage["every"]:
            facts.append(f"able to read every request ({EVERY_SETTING})")
        if not summary["words"]:
            facts.append("without the hashed words")
        labelled = labelled_requests(self.model)
        if labelled:
            facts.append(f"refitted on {labelled} labelled requests")
        which = (
            "the shipped calibration"
            if self.source == "shipped"
            else f"your calibration {self.path}"
        )
        return f"{which} ({', '.join(facts)})" if facts else which


EVERY_SETTING = 'routing.difficulty.model_stage = "every"'
"""The setting that asks a probe fitted with ``every_threshold`` for every request."""

SUMMARY_KEYS = ("source", "path", "created", "items", "held_out_auroc", "model_stage", "words")
"""The keys of :meth:`StoredModel.summary`, which ``/health`` and ``hybrid models`` show."""


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def labelled_requests(model: DifficultyModel) -> int:
    """How many labelled requests of traffic the model was refitted on (0 when it was not):
    its ``meta.refit.examples`` other than calibration answers."""
    refit = model.meta.get("refit")
    examples = refit.get("examples") if isinstance(refit, dict) else None
    if not isinstance(examples, dict):
        return 0
    return sum(
        count
        for source, count in examples.items()
        if source != "calibration" and isinstance(count, int) and not isinstance(count, bool)
    )


def find(
    home: Path, sha256: str, *, shipped: Traversable | Path | None = None
) -> StoredModel | None:
    """The difficulty model for a GGUF file and where it is: the data dir's, else the package's.

    Args:
        home: The data dir (``settings.home``).
        sha256: The GGUF file's SHA-256, hex.
        shipped: Folder of shipped models (default: :func:`shipped_models`).

    Returns:
        The model and its file, or None when neither place has one for this file.

    Raises:
        ConfigError: The file found is unreadable, damaged or made for other features; the
            message names it and says to run ``hybrid calibrate``.  A damaged calibration in
            the data dir is reported, not silently replaced by the shipped one.
    """
    local = model_path(home, sha256)
    if local.is_file():
        return StoredModel(_read(local, str(local)), "user", str(local))
    folder = shipped_models() if shipped is None else shipped
    packaged = folder.joinpath(f"{sha256}.json")
    if packaged.is_file():
        model = _read(packaged, f"the shipped difficulty model {sha256}.json")
        return StoredModel(model, "shipped", str(packaged))
    return None


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
        ConfigError: As :func:`find`.
    """
    found = find(home, sha256, shipped=shipped)
    return found.model if found is not None else None


def remove(home: Path, sha256: str) -> Path | None:
    """Delete the data dir's model for a GGUF file, so that the shipped one (if any) is used.

    The answers ``hybrid calibrate`` recorded beside it stay: they are not a calibration.

    Args:
        home: The data dir.
        sha256: The GGUF file's SHA-256, hex.

    Returns:
        The path removed, or None when there was none.

    Raises:
        ConfigError: The file exists but cannot be removed.
    """
    path = model_path(home, sha256)
    try:
        path.unlink()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(
            f"cannot remove {path}: {exc}. Check that the data dir (HYBRID_HOME) is writable."
        ) from exc
    return path


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
