"""Find the models a user has, and decide which one ``hybrid serve`` loads.

Models come from, in this order:

1. the configured model (``--model PATH`` or ``local.model`` in the settings), when set;
2. ``*.gguf`` files in ``./models`` (relative to the working directory), in
   ``<home>/models`` (where the embedded default model is assembled), and in every folder of
   ``local.models_dirs``.

The model served is the configured one, else the embedded default
(:func:`hybrid.models.embedded.ensure_embedded_model` assembles it on first use).  Discovery
never assembles it: it lists it only once it exists.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hybrid.errors import ModelFileError
from hybrid.models.embedded import (
    DEFAULT_MODEL_ID,
    EMBEDDED_FILE_NAME,
    Progress,
    embedded_model_path,
    ensure_embedded_model,
)
from hybrid.models.gguf import GgufInfo, read_gguf

if TYPE_CHECKING:
    from hybrid.hardware.plan import ModelFootprint
    from hybrid.settings import Settings

MODEL_SUFFIX = ".gguf"


@dataclass(frozen=True)
class ModelEntry:
    """One model file found on this machine.

    Attributes:
        name: Model id: the file name without ``.gguf`` (e.g. ``gemma-3-270m-q4_k_m``).
        path: The file.
        info: Its header, or None when it could not be read.
        error: Why it could not be read (a :class:`ModelFileError` message), else None.
        embedded: It is the embedded default model assembled in the data dir.
        default: It is the model ``hybrid serve`` loads with the current settings.
    """

    name: str
    path: Path
    info: GgufInfo | None
    error: str | None
    embedded: bool
    default: bool = False

    @property
    def footprint(self) -> ModelFootprint | None:
        """The model's size and shape for the hardware planner, or None when unreadable."""
        return self.info.footprint() if self.info is not None else None


def model_dirs(settings: Settings, *, cwd: Path | None = None) -> list[Path]:
    """The folders searched for ``*.gguf`` files, in search order, without duplicates.

    Args:
        settings: Supplies ``home`` and ``local.models_dirs``.
        cwd: Folder ``./models`` is relative to (default: the current working directory).

    Returns:
        ``cwd/models``, ``settings.home/models``, then ``settings.local.models_dirs``; folders
        that do not exist are included (callers say where they looked).
    """
    base = Path.cwd() if cwd is None else cwd
    candidates = [base / "models", settings.home / "models", *settings.local.models_dirs]
    return _unique(path.expanduser() for path in candidates)


def discover_models(settings: Settings, *, cwd: Path | None = None) -> list[ModelEntry]:
    """List the configured model and every ``*.gguf`` in :func:`model_dirs`.

    Each file's header is read (a few milliseconds each); a file that cannot be read is still
    listed, with ``info=None`` and the reason in ``error``.  A configured model that does not
    exist is listed the same way, so the user sees why ``hybrid serve`` would fail.

    Args:
        settings: Supplies ``home``, ``local.model`` and ``local.models_dirs``.
        cwd: Folder ``./models`` is relative to (default: the current working directory).

    Returns:
        The configured model first (when set), then each folder's files sorted by name;
        each file once, even when several folders or links lead to it.
    """
    embedded = _resolved(embedded_model_path(settings.home))
    configured = settings.local.model
    default = _resolved(configured) if configured is not None else embedded
    paths: list[Path] = [configured] if configured is not None else []
    for folder in model_dirs(settings, cwd=cwd):
        paths.extend(_gguf_files(folder))
    return [
        _entry(path, embedded=_resolved(path) == embedded, default=_resolved(path) == default)
        for path in _unique(paths)
    ]


def resolve_model(
    settings: Settings, *, progress: Progress | None = None, cwd: Path | None = None
) -> Path:
    """The GGUF file ``hybrid serve`` should load.

    The configured model (``local.model``) when set: a path to a ``.gguf`` file, or the name of
    a discovered model as ``hybrid models`` lists it.  Otherwise the embedded default model,
    assembled into the data dir on first use.

    Args:
        settings: Supplies ``home``, ``local.model`` and ``local.models_dirs``.
        progress: Receives progress lines while the embedded model is assembled.
        cwd: Folder ``./models`` is relative to (default: the current working directory).

    Returns:
        A path whose header has been read and checked.

    Raises:
        ModelFileError: The configured model does not exist or is not a valid GGUF model, or
            the embedded model cannot be assembled.  The message names the path and what to do.
    """
    configured = settings.local.model
    if configured is None:
        return ensure_embedded_model(settings.home, progress=progress)
    if configured.exists():
        read_gguf(configured)  # raises a ModelFileError that names the file and the fix
        return configured
    if len(configured.parts) == 1:  # a bare name: look it up like `hybrid models` lists it
        if configured.name in (DEFAULT_MODEL_ID, EMBEDDED_FILE_NAME):
            return ensure_embedded_model(settings.home, progress=progress)
        for entry in discover_models(settings, cwd=cwd):
            if configured.name in (entry.name, entry.path.name) and entry.info is not None:
                return entry.path
    searched = ", ".join(str(folder) for folder in model_dirs(settings, cwd=cwd))
    raise ModelFileError(
        f"the configured model {configured} does not exist (no such file, and no model of that "
        f"name in {searched}). Fix --model or local.model (HYBRID_LOCAL__MODEL), run "
        f"`hybrid models` to list the models found, or unset it to use the embedded default "
        f"{DEFAULT_MODEL_ID}."
    )


def _entry(path: Path, *, embedded: bool, default: bool) -> ModelEntry:
    name = path.name[: -len(MODEL_SUFFIX)] if _is_gguf_name(path) else path.name
    try:
        info = read_gguf(path)
    except ModelFileError as exc:
        return ModelEntry(name, path, None, str(exc), embedded, default)
    return ModelEntry(name, path, info, None, embedded, default)


def _gguf_files(folder: Path) -> list[Path]:
    """``*.gguf`` files directly in ``folder``, by name; none if it is missing or unreadable."""
    try:
        children = sorted(folder.iterdir())
    except OSError:
        return []
    # Dot-files are skipped: they include the temporary files of an assembly in progress.
    return [
        child
        for child in children
        if _is_gguf_name(child) and not child.name.startswith(".") and child.is_file()
    ]


def _is_gguf_name(path: Path) -> bool:
    return path.name.lower().endswith(MODEL_SUFFIX)


def _resolved(path: Path) -> Path:
    try:
        return path.resolve()
    except OSError:  # e.g. a symlink loop: compare it as written
        return path.absolute()


def _unique(paths: Iterable[Path]) -> list[Path]:
    seen: set[Path] = set()
    unique = []
    for path in paths:
        key = _resolved(path)
        if key not in seen:
            seen.add(key)
            unique.append(path)
    return unique
