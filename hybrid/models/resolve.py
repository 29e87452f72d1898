"""Turn a model name or path into the file to load, and a file into the name it goes by.

``--model`` (and ``local.model``) takes a path to a ``.gguf`` file, the embedded model's name,
or a name as ``hybrid models`` lists it (:mod:`hybrid.models.names`), read in that order
against the models :mod:`hybrid.models.catalog` finds.  :func:`resolve_model` picks the file
``hybrid serve`` loads: the configured model, else the embedded default
(:func:`hybrid.models.embedded.ensure_embedded_model` assembles it on first use).  The other
way round, :func:`served_as` and :func:`name_for_path` give the name a file is served under,
and :func:`serve_name` finds a name that ``--model`` turns back into that very file.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from hybrid.errors import ModelFileError
from hybrid.models.catalog import model_not_found, resolved, scan_models
from hybrid.models.embedded import (
    DEFAULT_MODEL_ID,
    EMBEDDED_FILE_NAME,
    Progress,
    embedded_model_path,
    ensure_embedded_model,
)
from hybrid.models.entries import read_entry, read_model_info
from hybrid.models.names import names_of, pick
from hybrid.models.stores import Found, ModelDefaults, Skipped, StoreScan
from hybrid.models.stores.files import file_stem

if TYPE_CHECKING:
    from hybrid.settings import Settings

__all__ = ["name_for_path", "resolve_model", "resolve_name", "serve_name", "served_as"]


def resolve_model(
    settings: Settings,
    *,
    progress: Progress | None = None,
    cwd: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Path:
    """The GGUF file ``hybrid serve`` should load.

    The configured model (``local.model``) when set (see :func:`resolve_name`), otherwise the
    embedded default model, assembled into the data dir on first use.

    Args:
        settings: Supplies ``home`` and ``local.*``.
        progress: Receives progress lines while the embedded model is assembled.
        cwd: Folder ``./models`` is relative to (default: the current working directory).
        environ: The environment the stores' variables are read from (default: the process's).

    Returns:
        A path whose header has been read and checked.

    Raises:
        ModelFileError: As :func:`resolve_name`, or the embedded model cannot be assembled.
    """
    configured = settings.local.model
    if configured is None:
        return ensure_embedded_model(settings.home, progress=progress)
    return resolve_name(settings, str(configured), progress=progress, cwd=cwd, environ=environ)


def resolve_name(
    settings: Settings,
    name: str,
    *,
    progress: Progress | None = None,
    cwd: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Path:
    """Turn a path or a model name, as ``hybrid models`` lists it, into the file to load.

    Args:
        settings: Where to look (``home``, ``local.models_dirs``, ``local.stores``).
        name: A path to a ``.gguf`` file, or a name (see :mod:`hybrid.models.names`).
        progress: Receives progress lines when the name is the embedded model's and it is
            assembled.
        cwd: Folder ``./models`` is relative to (default: the current working directory).
        environ: The environment the stores' variables are read from (default: the process's).

    Returns:
        The file llama.cpp loads (a split model's first part), its header read and checked.

    Raises:
        ModelFileError: The name picks no model and is no file, picks several (the message
            lists them with the prefixed names that pick each), or picks a model that cannot
            be served; or the file is not a valid GGUF model (a vocabulary-only file, say).
            The message says what to do.
    """
    scan = cache(lambda: scan_models(settings, cwd=cwd, environ=environ))
    named = _named(settings, name, scan)
    if named is None:
        raise model_not_found(settings, name, scan().problems, cwd=cwd, environ=environ)
    if named.embedded:
        return ensure_embedded_model(settings.home, progress=progress)
    if named.found is None:
        read_model_info(named.path)  # raises a ModelFileError that names the file and the fix
        return named.path
    entry = read_entry(named.found)
    if isinstance(entry, Skipped):
        raise ModelFileError(f"{entry.path} is {entry.reason}. Pick a model `hybrid models` lists.")
    if entry.error is not None:
        raise ModelFileError(entry.error)
    return named.path


@dataclass(frozen=True)
class _Named:
    """What a ``--model`` value names, before any header is read or anything is assembled.

    Attributes:
        path: The file: the one a path names, the embedded model's (which may not exist yet),
            or the one a model picked by name is loaded from.
        found: The model a name picks; None for a path or the embedded model.
        embedded: The value is the embedded model's name.
    """

    path: Path
    found: Found | None = None
    embedded: bool = False


def _named(settings: Settings, name: str, scan: Callable[[], StoreScan]) -> _Named | None:
    """The one order :func:`resolve_name` and :func:`serve_name` read a name in: a path to a
    file, the embedded model's name, then a name of a model ``scan`` finds (None when it picks
    none).

    Raises:
        ModelFileError: The name picks several files, or a model that cannot be served.
    """
    as_path = Path(name).expanduser()
    if as_path.is_file():
        return _Named(as_path)
    if name in (DEFAULT_MODEL_ID, EMBEDDED_FILE_NAME):
        return _Named(embedded_model_path(settings.home), embedded=True)
    hit = pick(scan().found, name, resolved=resolved)
    return None if hit is None else _Named(hit.path, hit)


def serve_name(
    settings: Settings,
    path: Path,
    *,
    cwd: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> str:
    """A name ``hybrid serve --model`` turns into this very file, for a line that tells the
    user how to serve it.

    The first of the file's names (:func:`~hybrid.models.names.names_of`: its name, the
    name with its store prefix, its aliases) that :func:`resolve_name` would resolve to this
    file and no other (read as it reads a name, :func:`_named`, without reading headers or
    assembling the embedded model); the path when none does.

    Args:
        settings: Where to look.
        path: A model file.
        cwd: Folder ``./models`` is relative to (default: the current working directory).
        environ: The environment the stores' variables are read from (default: the process's).
    """
    target = resolved(path)
    scan = scan_models(settings, cwd=cwd, environ=environ)
    for model in scan.found:
        if resolved(model.path) == target:
            for name in names_of(model):
                try:
                    named = _named(settings, name, lambda: scan)
                except ModelFileError:  # it picks several files, or a model that cannot be served
                    continue
                if named is not None and resolved(named.path) == target:
                    return name
    return str(path)


def name_for_path(
    settings: Settings,
    path: Path,
    *,
    cwd: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> str:
    """The name ``hybrid models`` shows for a file (``llama3.2:3b`` for an Ollama blob).

    When the configured model (``local.model``) is a name that picks this file, that name;
    else the first listed name of the file; else the file name without ``.gguf``.

    Args:
        settings: Where to look.
        path: A model file.
        cwd: Folder ``./models`` is relative to (default: the current working directory).
        environ: The environment the stores' variables are read from (default: the process's).
    """
    return served_as(settings, path, cwd=cwd, environ=environ)[0]


def served_as(
    settings: Settings,
    path: Path,
    *,
    cwd: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> tuple[str, ModelDefaults]:
    """The name a file is served under (as :func:`name_for_path`) and the generation defaults
    its store records for it under that name (Ollama's ``params``; empty for a plain file).

    Args:
        settings: Where to look.
        path: A model file.
        cwd: Folder ``./models`` is relative to (default: the current working directory).
        environ: The environment the stores' variables are read from (default: the process's).

    Returns:
        The name and the defaults.
    """
    target = resolved(path)
    models = scan_models(settings, cwd=cwd, environ=environ).found
    configured = settings.local.model
    if configured is not None and not Path(configured).expanduser().is_file():
        try:
            hit = pick(models, str(configured), resolved=resolved)
        except ModelFileError:
            hit = None
        if hit is not None and resolved(hit.path) == target:
            if hit.source == "configured":
                return file_stem(path.name), ModelDefaults()
            return hit.name, _defaults(hit)
    for model in models:
        if resolved(model.path) == target and model.source != "configured":
            return model.name, _defaults(model)
    return file_stem(path.name), ModelDefaults()


def _defaults(found: Found) -> ModelDefaults:
    return found.metadata.defaults if found.metadata is not None else ModelDefaults()
