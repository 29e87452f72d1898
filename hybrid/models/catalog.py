"""Find the models a user has, and mark the one ``hybrid serve`` loads.

Models come from, in this order:

1. the configured model (``--model`` or ``local.model``), when it is a path to a file;
2. ``*.gguf`` files in ``./models`` (relative to the working directory), in ``<home>/models``
   (where the embedded default model is assembled), and in every folder of
   ``local.models_dirs``;
3. the stores of other tools, read in place (:mod:`hybrid.models.stores`): Ollama, LM Studio,
   the Hugging Face cache and llama.cpp's cache, each unless ``local.stores`` leaves it out.

A file is listed once, under the first name that leads to it (Ollama tags sharing a blob are
each listed).  A folder that cannot be read (permission denied) hides only the models inside it:
it is reported in :attr:`Discovery.problems` with what to do, and the rest is listed.  So is a
``local.models_dirs`` entry that does not exist or is not a folder (a typo, a file, a drive not
mounted): it is not searched, and the problem says so instead of the listing naming it as
searched.  ``./models`` and ``<home>/models`` are searched when they exist, silently.
The model served is the configured one (``--model`` or ``local.model``: a path, or a name as
listed, which :mod:`hybrid.models.resolve` turns into the file to load), else the embedded
default (:func:`hybrid.models.embedded.ensure_embedded_model` assembles it on first use).
Discovery never assembles it: it lists it only once it exists.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from hybrid.errors import ModelFileError
from hybrid.models.embedded import DEFAULT_MODEL_ID, embedded_model_path
from hybrid.models.entries import ModelEntry, model_at, read_entry, read_model_info
from hybrid.models.names import pick
from hybrid.models.stores import Found, Skipped, Source, StoreName, StoreScan
from hybrid.models.stores.files import (
    file_stem,
    gguf_files,
    group_models,
    is_folder,
    is_gguf_file,
)
from hybrid.models.stores.hf_cache import scan_hf_cache
from hybrid.models.stores.llama_cache import scan_llama_cache
from hybrid.models.stores.lmstudio import scan_lmstudio
from hybrid.models.stores.ollama import scan_ollama
from hybrid.models.stores.roots import StoreRoots, store_roots

if TYPE_CHECKING:
    from hybrid.settings import Settings

__all__ = [
    "Discovery",
    "ModelEntry",
    "discover",
    "discover_models",
    "model_dirs",
    "model_not_found",
    "read_model_info",
    "resolved",
    "scan_models",
    "store_folders",
]


@dataclass(frozen=True)
class Discovery:
    """Everything discovery saw.

    Attributes:
        entries: The models, in listing order.
        skipped: ``.gguf`` files that are not models, each with the reason.
        folders: The models folders searched (:func:`model_dirs`, less the
            ``local.models_dirs`` entries that are no folder).
        stores: Each store searched, with its folder.
        problems: Folders that could not be read (permission denied), and
            ``local.models_dirs`` entries that are missing or not a folder, each a message
            naming the folder and what to do; the models inside them are not listed.
    """

    entries: tuple[ModelEntry, ...]
    skipped: tuple[Skipped, ...]
    folders: tuple[Path, ...]
    stores: tuple[tuple[StoreName, Path], ...]
    problems: tuple[str, ...] = ()


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


def _searched_dirs(
    settings: Settings, *, cwd: Path | None, problems: list[str] | None = None
) -> list[Path]:
    """:func:`model_dirs` less the ``local.models_dirs`` entries that are no folder.

    Args:
        settings: Supplies ``home`` and ``local.models_dirs``.
        cwd: Folder ``./models`` is relative to (default: the current working directory).
        problems: Receives, for each entry left out, a message naming it and what to do.
    """
    base = Path.cwd() if cwd is None else cwd
    # The two built-in folders are searched when they exist, and need not: only a folder the
    # user named is worth a warning when it is missing.
    built_in = {resolved(base / "models"), resolved(settings.home / "models")}
    searched = []
    for folder in model_dirs(settings, cwd=cwd):
        if resolved(folder) in built_in or is_folder(folder, problems):
            searched.append(folder)
        elif problems is not None and (problem := _not_a_models_dir(folder)) is not None:
            problems.append(problem)
    return searched


def _not_a_models_dir(folder: Path) -> str | None:
    """Why a ``local.models_dirs`` entry that is no folder is not searched, and what to do;
    None when it cannot be looked at (:func:`is_folder` reported that already)."""
    try:
        exists = folder.exists()
    except OSError:
        return None
    fix = (
        "or fix or remove the entry in local.models_dirs (the config file, or "
        "HYBRID_LOCAL__MODELS_DIRS)"
    )
    if not exists:
        return (
            f"{folder} in local.models_dirs does not exist, so no models are searched for there: "
            f"create it (or mount the drive it is on), {fix}"
        )
    return (
        f"{folder} in local.models_dirs is not a folder, so no models are searched for there: "
        f"name the folder that holds your .gguf files (serve a single file with --model PATH "
        f"or local.model), {fix}"
    )


def store_folders(
    settings: Settings, *, environ: Mapping[str, str] | None = None
) -> list[tuple[StoreName, Path]]:
    """The stores ``local.stores`` turns on, each with its folder(s) (which may not exist).

    Args:
        settings: Supplies ``local.stores``.
        environ: The environment the stores' variables are read from (default: the process's).
    """
    roots = store_roots(environ)
    return [(store, folder) for store in settings.local.stores for folder in roots.of(store)]


def discover(
    settings: Settings, *, cwd: Path | None = None, environ: Mapping[str, str] | None = None
) -> Discovery:
    """Find every model, read each header, and mark the one ``hybrid serve`` loads.

    A model that cannot be served (an unreadable header, a broken Ollama manifest, a missing or
    partial blob, a split with a part missing) is listed with ``info=None`` and the reason in
    ``error``.  A configured model that does not exist is listed the same way, so the user
    sees why ``hybrid serve`` would fail.

    Args:
        settings: Supplies ``home`` and ``local.*``.
        cwd: Folder ``./models`` is relative to (default: the current working directory).
        environ: The environment the stores' variables are read from (default: the process's).

    Returns:
        The entries, the skipped files and the places searched.
    """
    scan = scan_models(settings, cwd=cwd, environ=environ)
    entries: list[ModelEntry] = []
    skipped = list(scan.skipped)
    for model in scan.found:
        entry = read_entry(model, embedded=model.source == "embedded")
        if isinstance(entry, Skipped):
            skipped.append(entry)
        else:
            entries.append(entry)
    entries = _mark_default(settings, entries, scan, cwd=cwd, environ=environ)
    return Discovery(
        tuple(entries),
        tuple(skipped),
        tuple(_searched_dirs(settings, cwd=cwd)),
        tuple(store_folders(settings, environ=environ)),
        scan.problems,
    )


def discover_models(
    settings: Settings, *, cwd: Path | None = None, environ: Mapping[str, str] | None = None
) -> list[ModelEntry]:
    """The models :func:`discover` finds, in listing order.

    Args:
        settings: Supplies ``home`` and ``local.*``.
        cwd: Folder ``./models`` is relative to (default: the current working directory).
        environ: The environment the stores' variables are read from (default: the process's).

    Returns:
        The configured model first (when it is a file, or a name no model has), then each
        folder's files sorted by name, then each store's models.
    """
    return list(discover(settings, cwd=cwd, environ=environ).entries)


def scan_models(
    settings: Settings, *, cwd: Path | None, environ: Mapping[str, str] | None
) -> StoreScan:
    """Every model, headers unread, each file once (Ollama tags of one blob each once); the
    files that are not models; the folders that could not be read.

    Args:
        settings: Supplies ``home`` and ``local.*``.
        cwd: Folder ``./models`` is relative to (default: the current working directory).
        environ: The environment the stores' variables are read from (default: the process's).
    """
    embedded = resolved(embedded_model_path(settings.home))
    found: list[Found] = []
    skipped: list[Skipped] = []
    problems: list[str] = []
    configured = settings.local.model
    if configured is not None and configured.is_file():
        model = model_at(configured)
        found.append(Found("configured", model.stem, configured, model.parts, (), model.error))
    for folder in _searched_dirs(settings, cwd=cwd, problems=problems):
        models, passed = group_models(gguf_files(folder, problems))
        skipped.extend(passed)
        for model in models:
            source: Source = "embedded" if resolved(model.path) == embedded else "folder"
            found.append(Found(source, model.stem, model.path, model.parts, error=model.error))
    roots = store_roots(environ)
    for store in settings.local.stores:
        scan = _scan_store(store, roots)
        found.extend(scan.found)
        skipped.extend(scan.skipped)
        problems.extend(scan.problems)
    return StoreScan(tuple(_unique_found(found)), tuple(skipped), tuple(problems))


def _scan_store(store: StoreName, roots: StoreRoots) -> StoreScan:
    if store == "ollama":
        return scan_ollama(roots.ollama)
    if store == "lmstudio":
        return scan_lmstudio(roots.lmstudio)
    if store == "hf":
        return scan_hf_cache(roots.hf)
    return scan_llama_cache(roots.llama_cpp)


def _mark_default(
    settings: Settings,
    entries: list[ModelEntry],
    scan: StoreScan,
    *,
    cwd: Path | None,
    environ: Mapping[str, str] | None,
) -> list[ModelEntry]:
    configured = settings.local.model
    if configured is None:
        target = resolved(embedded_model_path(settings.home))
        return [replace(e, default=e.embedded and resolved(e.path) == target) for e in entries]
    if configured.is_file():
        return [replace(e, default=e.source == "configured") for e in entries]
    try:
        hit = pick(scan.found, str(configured), resolved=resolved)
        error = (
            None
            if hit is not None
            else str(
                model_not_found(settings, str(configured), scan.problems, cwd=cwd, environ=environ)
            )
        )
    except ModelFileError as exc:
        hit, error = None, str(exc)
    if hit is not None:
        return [replace(e, default=(e.source, e.name) == (hit.source, hit.name)) for e in entries]
    missing = ModelEntry(
        file_stem(configured.name), configured, None, error, False, True, "configured"
    )
    return [missing, *entries]


def model_not_found(
    settings: Settings,
    name: str,
    problems: Sequence[str],
    *,
    cwd: Path | None,
    environ: Mapping[str, str] | None,
) -> ModelFileError:
    """The error for a configured model that names no file and no model found.

    Args:
        settings: Where the search looked (listed in the message).
        name: The value of ``--model`` or ``local.model``.
        problems: Folders that could not be read, named in the message as not searched.
        cwd: Folder ``./models`` is relative to (default: the current working directory).
        environ: The environment the stores' variables are read from (default: the process's).

    Returns:
        The error to raise, saying what to do; for a folder, the GGUF files in it.
    """
    folder = Path(name).expanduser()
    if folder.is_dir():
        return _a_folder(name, folder)
    places = [str(folder) for folder in _searched_dirs(settings, cwd=cwd)]
    places += [f"{folder} ({store})" for store, folder in store_folders(settings, environ=environ)]
    unread = f" Not searched: {'; '.join(problems)}." if problems else ""
    return ModelFileError(
        f"the configured model {name} does not exist (no such file, and no model of that "
        f"name in {', '.join(places)}). Fix --model or local.model (HYBRID_LOCAL__MODEL), run "
        f"`hybrid models` to list the models found, or unset it to use the embedded default "
        f"{DEFAULT_MODEL_ID}.{unread}"
    )


_LISTED = 5
"""GGUF files a folder given as a model lists at most."""


def _a_folder(name: str, folder: Path) -> ModelFileError:
    """The error for a model path that names a folder, listing the GGUF files it holds."""
    # Settings keep the value as a Path, which drops a leading "./": put it back, so the name
    # reads as the path it is and the files listed can be copied as they are.
    shown = name if folder.is_absolute() or name.startswith((".", "~")) else f"./{name}"
    files = sorted(
        path.relative_to(folder).as_posix()
        for path in folder.rglob("*")
        if is_gguf_file(path) and path.is_file()  # a dot-file is a partial download, say
    )
    if not files:
        return ModelFileError(
            f"{shown} is a folder, and it holds no .gguf file; pass the path of a .gguf model "
            f"file, or a name `hybrid models` lists"
        )
    listed = ", ".join(f"{shown.rstrip('/')}/{file}" for file in files[:_LISTED])
    more = f" (and {len(files) - _LISTED} more)" if len(files) > _LISTED else ""
    return ModelFileError(f"{shown} is a folder; pass one of the .gguf files in it: {listed}{more}")


def _unique_found(found: Iterable[Found]) -> list[Found]:
    seen: set[tuple[Path, str]] = set()
    unique = []
    for model in found:
        # Ollama tags that share a blob are each a name `ollama list` shows: keep each.
        key = (resolved(model.path), model.name if model.source == "ollama" else "")
        if key not in seen and (key[0], "") not in seen:
            seen.add(key)
            unique.append(model)
    return unique


def resolved(path: Path) -> Path:
    """The path with symlinks followed, to tell whether two paths name one file; the absolute
    path when it cannot be resolved (a symlink loop, a folder that cannot be read)."""
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # a symlink loop (RuntimeError before Python 3.13)
        return path.absolute()


def _unique(paths: Iterable[Path]) -> list[Path]:
    seen: set[Path] = set()
    unique = []
    for path in paths:
        key = resolved(path)
        if key not in seen:
            seen.add(key)
            unique.append(path)
    return unique
