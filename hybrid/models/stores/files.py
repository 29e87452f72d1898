"""Group the ``.gguf`` files of a folder into models.

- A split model (``name-00001-of-00003.gguf``, ``-00002-``, ...: llama.cpp's ``gguf-split``
  naming) is one model; llama.cpp loads its first part and opens the others itself.  A split
  with a part missing is reported with an error naming the missing files.
- Vision projectors (``mmproj`` in the name) are skipped: they go with a model, they are not one.
- A link whose target is gone (a pruned Hugging Face blob) is reported with an error.
- Dot-files are ignored: they include the temporary files of a download or assembly.
- A folder that exists but cannot be read (permission denied) is reported as a problem naming
  it and what to do (:func:`list_folder`); the rest of the store is still read.

:func:`quant_tag` reads the quantization from a file name for discovery and ``hybrid pull``
alike.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from hybrid.models.stores import Found, Skipped, Source

GGUF_SUFFIX = ".gguf"

_SPLIT = re.compile(r"^(?P<prefix>.+)-(?P<index>\d{5})-of-(?P<count>\d{5})\.gguf$", re.IGNORECASE)
# A quantization label standing alone in a name (between '-', '_', '.' or the ends): Q4_K_M,
# IQ2_XXS, Q4_0_4_8, TQ1_0, MXFP4_MOE, F16, FP16, BF16, F32, and Unsloth's UD- variants
# (``llama-2-7b.Q4_K_M``, ``Model.i1-IQ3_XS``, ``Qwen3-4B-UD-Q4_K_XL``, ``L3-8B-Q4_K_M-imat``).
_QUANT = re.compile(
    r"(?<![A-Za-z0-9])((?:UD-)?(?:I?Q\d(?:_[A-Z0-9]{1,3})*|TQ[12]_0|MXFP4(?:_MOE)?|BF16|FP16|F16"
    r"|F32))(?![A-Za-z0-9])",
    re.IGNORECASE,
)

PROJECTOR_REASON = "a vision projector (mmproj): it is loaded with its model, not served alone"


def is_projector(file_name: str) -> bool:
    """Whether a GGUF file is a vision projector (``mmproj`` anywhere in its name:
    ``mmproj-model-f16.gguf``, ``llava-v1.5-7b-mmproj-model-f16.gguf``), not a model."""
    return "mmproj" in file_name.lower()


@dataclass(frozen=True)
class ModelFiles:
    """The file or files of one model in a folder.

    Attributes:
        path: The file to load: the only file, or a split's first part.
        parts: Every part of a split model, in order; empty for a single file.
        stem: The model's file name without ``.gguf`` and without the split suffix.
        error: Why it cannot be loaded (a part or a link target is missing), else None.
    """

    path: Path
    parts: tuple[Path, ...]
    stem: str
    error: str | None = None

    @property
    def files(self) -> tuple[Path, ...]:
        """Every file of the model."""
        return self.parts or (self.path,)


def list_folder(folder: Path, problems: list[str] | None = None) -> list[Path]:
    """The entries of a folder, sorted by name.

    Args:
        folder: The folder; it may not exist.
        problems: Receives a message naming the folder and what to do when it exists but cannot
            be read (permission denied, say), so the caller lists the rest of its store.

    Returns:
        The entries; none when the folder is missing or unreadable.
    """
    try:
        children = sorted(folder.iterdir())
        if children:
            # A folder readable but not searchable (no x bit) lists names it cannot open.
            _searchable(children[0])
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as exc:
        if problems is not None:
            problems.append(unreadable_folder(folder, exc))
        return []
    return children


def _searchable(child: Path) -> None:
    try:
        child.lstat()
    except PermissionError:
        raise
    except OSError:  # gone since the listing, say: the folder itself is fine
        pass


def is_folder(path: Path, problems: list[str] | None = None) -> bool:
    """Whether ``path`` is a folder or a link to one; a link this user cannot follow (into a
    folder it may not search) is not, and is reported to ``problems``."""
    try:
        return path.is_dir()
    except OSError as exc:
        if problems is not None:
            problems.append(unreadable_folder(path, exc))
        return False


def unreadable_folder(folder: Path, exc: OSError) -> str:
    """The message for a folder that cannot be read: what happened and what to do."""
    why = exc.strerror or str(exc)
    return (
        f"cannot read folder {folder} ({why}), so the models in it are not listed: give the "
        f"user running hybrid read access to it (e.g. `chmod u+rx {folder}` as its owner), or "
        "remove it"
    )


def gguf_files(folder: Path, problems: list[str] | None = None) -> list[Path]:
    """``*.gguf`` files (and links, even broken ones) directly in ``folder``, sorted by name.

    Args:
        folder: The folder; it may not exist.
        problems: Receives a message when the folder cannot be read (see :func:`list_folder`).

    Returns:
        The files; none when the folder is missing or unreadable.
    """
    return [child for child in list_folder(folder, problems) if is_gguf_file(child)]


def is_gguf_file(path: Path) -> bool:
    """Whether a folder entry is a ``*.gguf`` file or a link (even a broken one), not a
    dot-file."""
    return (
        path.name.lower().endswith(GGUF_SUFFIX)
        and not path.name.startswith(".")
        and (path.is_symlink() or path.is_file())
    )


def group_models(files: Iterable[Path]) -> tuple[list[ModelFiles], list[Skipped]]:
    """Turn ``.gguf`` files into models: splits grouped, projectors skipped.

    Args:
        files: The files, all in one folder or snapshot (any order).

    Returns:
        The models (in the order of their first file) and the skipped files.
    """
    models: list[ModelFiles] = []
    skipped: list[Skipped] = []
    splits: dict[tuple[Path, str, int], dict[int, Path]] = {}
    for path in sorted(files):
        if is_projector(path.name):
            skipped.append(Skipped(path, PROJECTOR_REASON))
            continue
        part = split_part(path.name)
        if part is None:
            models.append(_checked(ModelFiles(path, (), path.name[: -len(GGUF_SUFFIX)])))
            continue
        prefix, index, count = part
        splits.setdefault((path.parent, prefix, count), {})[index] = path
    for (parent, prefix, count), found in splits.items():
        models.append(_checked(_split_model(parent, prefix, count, found)))
    models.sort(key=lambda model: model.path)
    return models, skipped


def quant_tag(file_name: str) -> str | None:
    """The quantization a file's name carries, as written (``Q4_K_M``, ``iq4_xs``,
    ``UD-Q4_K_XL``, ``F16``): the one source for discovery's names and ``hybrid pull``'s choice.

    Args:
        file_name: A file name or stem, with or without its folders and a split suffix, e.g.
            ``Q8_0/Big-Q8_0-00001-of-00003.gguf`` or ``Llama-3.2-1B-Instruct-Q4_K_M``.

    Returns:
        The last label in the name, or None when it names none.
    """
    stem = file_stem(file_name.rsplit("/", 1)[-1])
    part = split_part(stem + GGUF_SUFFIX)
    labels = _QUANT.findall(part[0] if part else stem)
    return labels[-1] if labels else None


def quant_label(file_name: str) -> str | None:
    """The quantization a file's name carries (:func:`quant_tag`), upper case, as models are
    named (``org/repo:Q4_K_M``)."""
    tag = quant_tag(file_name)
    return tag.upper() if tag is not None else None


def file_stem(file_name: str) -> str:
    """A file name without its ``.gguf`` suffix (any case)."""
    return file_name[: -len(GGUF_SUFFIX)] if file_name.lower().endswith(GGUF_SUFFIX) else file_name


def split_part(file_name: str) -> tuple[str, int, int] | None:
    """Which part of a split model a file is, by llama.cpp's ``gguf-split`` naming
    (``<prefix>-00001-of-00003.gguf``, any case): the one reader for discovery and ``hybrid pull``.

    Args:
        file_name: A file name, or a path inside a repository
            (``Q8_0/Big-Q8_0-00001-of-00003.gguf``).

    Returns:
        ``(prefix, index, count)``: what comes before the split suffix (folders included),
        the part's number (1-based) and the number of parts; None when the name is not a part's.
    """
    match = _SPLIT.match(file_name)
    if match is None:
        return None
    return match["prefix"], int(match["index"]), int(match["count"])


def split_part_name(prefix: str, index: int, count: int) -> str:
    """The file name of part ``index`` (1-based) of a split model, as llama.cpp names it."""
    return f"{prefix}-{index:05d}-of-{count:05d}{GGUF_SUFFIX}"


def _split_model(parent: Path, prefix: str, count: int, found: dict[int, Path]) -> ModelFiles:
    expected = [parent / split_part_name(prefix, index, count) for index in range(1, count + 1)]
    parts = tuple(found.get(index, expected[index - 1]) for index in range(1, count + 1))
    missing = [str(parts[index - 1]) for index in range(1, count + 1) if index not in found]
    error = None
    if missing:
        error = (
            f"split model {parts[0]} is missing {len(missing)} of its {count} parts "
            f"({', '.join(missing)}): download the missing parts again (llama.cpp needs "
            "every part next to the first), or delete the other parts"
        )
    return ModelFiles(parts[0], parts, prefix, error)


def _checked(model: ModelFiles) -> ModelFiles:
    """Report a file that is a link to nothing (a pruned or half-downloaded blob)."""
    if model.error is not None:
        return model
    for path in model.files:
        if path.is_symlink() and not path.exists():
            target = os.readlink(path)
            return ModelFiles(
                model.path,
                model.parts,
                model.stem,
                f"{path} is a link to {target}, which does not exist (the download was "
                "interrupted or the cache was cleaned): download the model again",
            )
    return model


def repo_models(source: Source, repo: str, models: Sequence[tuple[ModelFiles, str]]) -> list[Found]:
    """Name the models of one repository (a Hugging Face repo, an LM Studio folder).

    A model is named ``org/repo:QUANT`` when its quantization label is unique in the repo,
    else ``org/repo/<file>``; ``org/repo/<file>`` always picks it, and ``org/repo`` does too
    when the repo holds just one model.

    Args:
        source: The store.
        repo: ``org/repo``.
        models: Each model with its first file's path inside the repo.

    Returns:
        One :class:`Found` per model.
    """
    labels = [quant_label(model.stem) for model, _ in models]
    found = []
    for (model, relative), label in zip(models, labels, strict=True):
        by_file = f"{repo}/{relative}"
        if label is not None and labels.count(label) == 1:
            name, aliases = f"{repo}:{label}", [by_file]
        else:
            name, aliases = by_file, []
        if len(models) == 1:
            aliases.append(repo)
        found.append(
            Found(source, name, model.path, model.parts, tuple(aliases), error=model.error)
        )
    return found
