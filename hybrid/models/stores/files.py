"""Group the ``.gguf`` files of a folder into models.

- A split model (``name-00001-of-00003.gguf``, ``-00002-``, ...: llama.cpp's ``gguf-split``
  naming) is one model; llama.cpp loads its first part and opens the others itself.  A split
  with a part missing is reported with an error naming the missing files.
- Vision projectors (``mmproj`` in the name) are skipped: they go with a model, they are not one.
- A link whose target is gone (a pruned Hugging Face blob) is reported with an error.
- Dot-files are ignored: they include the temporary files of a download or assembly.
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
_QUANT = re.compile(
    r"(?<![A-Za-z0-9])(I?Q\d(?:_[A-Z0-9]{1,3})*|BF16|F16|F32|MXFP4(?:_MOE)?)(?![A-Za-z0-9])",
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


def gguf_files(folder: Path) -> list[Path]:
    """``*.gguf`` files (and links, even broken ones) directly in ``folder``, sorted by name.

    Returns:
        The files; none when the folder is missing or unreadable.
    """
    try:
        children = sorted(folder.iterdir())
    except OSError:
        return []
    return [
        child
        for child in children
        if child.name.lower().endswith(GGUF_SUFFIX)
        and not child.name.startswith(".")
        and (child.is_file() or child.is_symlink())
    ]


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
        match = _SPLIT.match(path.name)
        if match is None:
            models.append(_checked(ModelFiles(path, (), path.name[: -len(GGUF_SUFFIX)])))
            continue
        key = (path.parent, match["prefix"], int(match["count"]))
        splits.setdefault(key, {})[int(match["index"])] = path
    for (parent, prefix, count), found in splits.items():
        models.append(_checked(_split_model(parent, prefix, count, found)))
    models.sort(key=lambda model: model.path)
    return models, skipped


def quant_label(file_name: str) -> str | None:
    """The quantization a file's name carries (``Q4_K_M``, ``IQ4_XS``, ``F16``), upper case.

    Args:
        file_name: A file name or stem, e.g. ``Llama-3.2-1B-Instruct-Q4_K_M.gguf``.

    Returns:
        The last label in the name, or None when it names none.
    """
    stem = file_name[: -len(GGUF_SUFFIX)] if file_name.lower().endswith(GGUF_SUFFIX) else file_name
    split = _SPLIT.match(stem + GGUF_SUFFIX)
    labels = _QUANT.findall(split["prefix"] if split else stem)
    return labels[-1].upper() if labels else None


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
