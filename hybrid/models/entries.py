"""A model found on this machine, with what its header says: :class:`ModelEntry`.

:func:`read_entry` reads the header of a model a store or folder holds.  A split model's
first part carries the metadata; every part's tensors count toward its size and layers.  A
``.gguf`` with no tensors (a vocabulary-only file, as llama.cpp ships for its tokenizer tests)
is not a model (:func:`is_model`) and comes back as a :class:`~hybrid.models.stores.Skipped`.

:func:`read_model_info` reads the model a file given by path is, and refuses a file that is
not a model with what to pass instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from hybrid.errors import ModelFileError
from hybrid.models.gguf import GgufInfo, read_gguf, read_gguf_layout
from hybrid.models.stores import Found, ModelDefaults, Skipped, Source, StoreMetadata
from hybrid.models.stores.files import ModelFiles, file_stem, gguf_files, group_models

if TYPE_CHECKING:
    from hybrid.hardware.plan import ModelFootprint

_BLOCK_TENSOR = re.compile(r"blk\.(\d+)\.")

VOCAB_ONLY_REASON = "a vocabulary-only GGUF (no weights): a tokenizer file, not a model"


@dataclass(frozen=True)
class ModelEntry:
    """One model found on this machine.

    Attributes:
        name: The name ``hybrid models`` shows and ``--model`` accepts: the file name without
            ``.gguf`` for a folder, ``llama3.2:3b`` for Ollama, ``org/repo:Q4_K_M`` for the
            Hugging Face cache and LM Studio (see :mod:`hybrid.models.catalog`).
        path: The file llama.cpp loads (an Ollama blob, a snapshot file, a split's first part).
        info: Its header, or None when it could not be read.
        error: Why it cannot be served (names the file and what to do), else None.
        embedded: It is the embedded default model assembled in the data dir.
        default: It is the model ``hybrid serve`` loads with the current settings.
        source: Where it was found: ``ollama``, ``lmstudio``, ``hf``, ``llama.cpp``,
            ``folder``, ``embedded`` or ``configured``.
        parts: Every file of a split model, first part first; empty for one file.
        aliases: Other names that pick it.
        metadata: What its store keeps beside the weights (Ollama's template and params).
    """

    name: str
    path: Path
    info: GgufInfo | None
    error: str | None
    embedded: bool
    default: bool = False
    source: Source = "folder"
    parts: tuple[Path, ...] = ()
    aliases: tuple[str, ...] = ()
    metadata: StoreMetadata | None = None

    @property
    def footprint(self) -> ModelFootprint | None:
        """The model's size and shape for the hardware planner, or None when unreadable."""
        return self.info.footprint() if self.info is not None else None

    @property
    def size_bytes(self) -> int | None:
        """Bytes on disk, every part of a split model together; None when unreadable."""
        return self.info.file_bytes if self.info is not None else None

    @property
    def quantization(self) -> str | None:
        """The quantization label (``Q4_K_M``), from the header."""
        return self.info.file_type if self.info is not None else None

    @property
    def context_length(self) -> int | None:
        """Tokens of context the model was trained with."""
        return self.info.context_length if self.info is not None else None

    @property
    def chat_template(self) -> bool | None:
        """Whether the GGUF carries a chat template (what hybrid formats prompts with)."""
        return self.info.chat_template is not None if self.info is not None else None

    @property
    def tools(self) -> bool | None:
        """Whether that chat template takes tools (it reads a ``tools`` variable)."""
        if self.info is None:
            return None
        return self.info.chat_template is not None and "tools" in self.info.chat_template

    @property
    def defaults(self) -> ModelDefaults:
        """Generation defaults its store records (empty when it records none)."""
        return self.metadata.defaults if self.metadata is not None else ModelDefaults()

    @property
    def names(self) -> tuple[str, ...]:
        """Every name that picks it: its name, then its aliases."""
        return (self.name, *self.aliases)


def read_entry(found: Found, *, embedded: bool = False) -> ModelEntry | Skipped:
    """Read the header of a model a store or folder holds.

    Args:
        found: The model.
        embedded: It is the embedded default model.

    Returns:
        The entry (with ``error`` set when the header cannot be read or a part is bad), or a
        :class:`Skipped` when the file is not a model (it has no tensors).
    """
    entry = ModelEntry(
        found.name,
        found.path,
        None,
        found.error,
        embedded,
        source=found.source,
        parts=found.parts,
        aliases=found.aliases,
        metadata=found.metadata,
    )
    if found.error is not None:
        return entry
    try:
        info = read_split(found.parts) if found.parts else read_gguf(found.path)
    except ModelFileError as exc:
        return replace(entry, error=str(exc))
    if not is_model(info):
        return Skipped(found.path, VOCAB_ONLY_REASON)
    return replace(entry, info=info)


def is_model(info: GgufInfo) -> bool:
    """Whether a GGUF header is a model's: it has tensors.  A vocabulary-only file (llama.cpp's
    ``ggml-vocab-*.gguf``: tokenizer metadata, no weights) has none and is not a model."""
    return bool(info.tensors)


def read_split(parts: tuple[Path, ...]) -> GgufInfo:
    """Read a split model: the first part's header, with every part's tensors counted.

    Args:
        parts: The files, first part first.

    Returns:
        The first part's :class:`GgufInfo`, with ``file_bytes``, ``layer_bytes``,
        ``other_bytes`` and ``tensors`` covering every part.

    Raises:
        ModelFileError: A part cannot be read, or the first part's ``split.count`` disagrees
            with the number of parts its file names promise.
    """
    info = read_gguf(parts[0])
    count = info.metadata.get("split.count")
    if isinstance(count, int) and count != len(parts):
        raise ModelFileError(
            f"{parts[0]} says the model has {count} parts (split.count) but its file name "
            f"says {len(parts)}: download the model again"
        )
    tensors = list(info.tensors)
    file_bytes = info.file_bytes
    for part in parts[1:]:
        _, more = read_gguf_layout(part)
        tensors.extend(more)
        file_bytes += part.stat().st_size
    layer_bytes = [0] * info.block_count
    other_bytes = 0
    for tensor in tensors:
        match = _BLOCK_TENSOR.match(tensor.name)
        index = int(match.group(1)) if match else -1
        if 0 <= index < info.block_count:
            layer_bytes[index] += tensor.n_bytes
        else:
            other_bytes += tensor.n_bytes
    return replace(
        info,
        file_bytes=file_bytes,
        layer_bytes=tuple(layer_bytes),
        other_bytes=other_bytes,
        tensors=tuple(tensors),
    )


def read_model_info(path: Path) -> GgufInfo:
    """Read the header of the model a file is, a split model's parts included.

    Args:
        path: A model file (a split model's first part: its other parts are read beside it).

    Returns:
        The header; for a split model, sizes and layers cover every part.

    Raises:
        ModelFileError: A part is missing, a header cannot be read, or the file is not a model
            (a vocabulary-only GGUF).
    """
    model = model_at(path)
    if model.error is not None:
        raise ModelFileError(model.error)
    info = read_split(model.parts) if model.parts else read_gguf(path)
    if not is_model(info):
        raise ModelFileError(
            f"{path} is {VOCAB_ONLY_REASON}. Pass a model's .gguf file instead (one with "
            "weights, such as a Q4_K_M file), or a name `hybrid models` lists."
        )
    return info


def model_at(path: Path) -> ModelFiles:
    """The model a file belongs to: a split's parts are found beside its first part; a later
    part comes back with an error naming the first."""
    models, _ = group_models(gguf_files(path.parent))
    for model in models:
        if model.path.name == path.name:
            return model
        names = [part.name for part in model.parts]
        if path.name in names:  # a later part: llama.cpp loads a split from its first
            return ModelFiles(
                path,
                (),
                model.stem,
                error=(
                    f"{path} is part {names.index(path.name) + 1} of {len(names)} of the split "
                    f"model {model.stem}; give its first part, {model.path}, or the model's "
                    f"name as `hybrid models` lists it"
                ),
            )
    return ModelFiles(path, (), file_stem(path.name))
