"""The model stores other tools keep on this machine, read in place.

Each module reads one store's own layout and reports what it holds; nothing is copied or
moved, and a model is served from the file the store keeps:

- :mod:`~hybrid.models.stores.ollama`: Ollama's manifests and ``sha256-`` blobs
  (``OLLAMA_MODELS``, else ``~/.ollama/models``), named ``name:tag`` as ``ollama list`` shows;
- :mod:`~hybrid.models.stores.lmstudio`: LM Studio's ``<root>/<publisher>/<repo>/<file>.gguf``
  (``~/.lmstudio/models`` and ``~/.cache/lm-studio/models``);
- :mod:`~hybrid.models.stores.hf_cache`: the Hugging Face hub cache
  (``HF_HUB_CACHE``, ``HF_HOME/hub``, else ``~/.cache/huggingface/hub``);
- :mod:`~hybrid.models.stores.llama_cache`: llama.cpp's ``-hf`` download cache
  (``LLAMA_CACHE``, else ``~/.cache/llama.cpp``).

:mod:`~hybrid.models.stores.files` groups the ``.gguf`` files of a folder into models (split
GGUFs as one, vision projectors skipped) and :mod:`~hybrid.models.stores.roots` finds each
store's folder from the environment.  A store reports a broken model (a damaged manifest, a
missing or partial blob, a split with a part missing) as a :class:`Found` with an ``error``
instead of raising, so one bad file never hides the others; and a folder it cannot read
(permission denied) as one of :attr:`StoreScan.problems`, going on with the rest.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Literal

from hybrid.settings.local import STORE_NAMES, StoreName

__all__ = [
    "STORE_NAMES",
    "Found",
    "ModelDefaults",
    "Skipped",
    "Source",
    "StoreMetadata",
    "StoreName",
    "StoreScan",
]

Source = Literal["ollama", "lmstudio", "hf", "llama.cpp", "folder", "embedded", "configured"]
"""Where a model was found: a store, a models folder, the embedded default, or the setting."""


@dataclass(frozen=True)
class ModelDefaults:
    """Generation defaults a store records for a model (Ollama's ``params`` layer).

    Attributes:
        stop: Stop sequences (``stop``).
        n_ctx: Context window in tokens (``num_ctx``).
        temperature: Sampling temperature (``temperature``).
    """

    stop: tuple[str, ...] = ()
    n_ctx: int | None = None
    temperature: float | None = None


@dataclass(frozen=True)
class StoreMetadata:
    """What a store keeps beside the weights (only Ollama keeps any today).

    Attributes:
        manifest: The file that describes the model (Ollama's manifest).
        template: The store's prompt template (Ollama's Go template), kept as information:
            hybrid formats prompts with the chat template inside the GGUF.
        system: The store's default system prompt, when it has one.
        params: The store's parameters as written (Ollama's ``params`` JSON).
        defaults: The parameters hybrid can use (see :class:`ModelDefaults`).
    """

    manifest: Path | None = None
    template: str | None = None
    system: str | None = None
    params: Mapping[str, object] = field(default_factory=lambda: MappingProxyType({}))
    defaults: ModelDefaults = ModelDefaults()


@dataclass(frozen=True)
class Found:
    """A model a store holds, before its header is read.

    Attributes:
        source: The store (or folder) it came from.
        name: The name ``hybrid models`` shows and ``--model`` accepts.
        path: The file llama.cpp loads: the blob, the snapshot file, or a split's first part.
        parts: Every file of a split model, first part first; empty for a single file.
        aliases: Other names that pick it (``llama3.2`` for ``llama3.2:latest``,
            ``org/repo/file.gguf`` for ``org/repo:Q4_K_M``).
        error: Why it cannot be served (names the file and what to do), else None.
        metadata: What the store keeps beside the weights, when it keeps anything.
    """

    source: Source
    name: str
    path: Path
    parts: tuple[Path, ...] = ()
    aliases: tuple[str, ...] = ()
    error: str | None = None
    metadata: StoreMetadata | None = None


@dataclass(frozen=True)
class Skipped:
    """A ``.gguf`` file that is not a model on its own, and why it is not listed.

    Attributes:
        path: The file.
        reason: Why it is skipped (a vision projector, a vocabulary-only file, ...).
    """

    path: Path
    reason: str


@dataclass(frozen=True)
class StoreScan:
    """What one store (or folder) holds.

    Attributes:
        found: The models, in listing order.
        skipped: The ``.gguf`` files that are not models.
        problems: The parts of it that could not be read (a folder, permission denied), each a
            message naming the folder and what to do; the models of the other parts are listed.
    """

    found: tuple[Found, ...] = ()
    skipped: tuple[Skipped, ...] = ()
    problems: tuple[str, ...] = ()
