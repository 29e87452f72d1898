"""Where each store keeps its models, from the environment the way each tool reads it.

============  ==========================================================================
store         folders, first match wins where a variable is named
============  ==========================================================================
ollama        ``$OLLAMA_MODELS``, else ``~/.ollama/models``
lmstudio      ``~/.lmstudio/models`` and ``~/.cache/lm-studio/models`` (both)
hf            ``$HF_HUB_CACHE``, else ``$HUGGINGFACE_HUB_CACHE``, else ``$HF_HOME/hub``,
              else ``$XDG_CACHE_HOME/huggingface/hub``, else ``~/.cache/huggingface/hub``
llama.cpp     ``$LLAMA_CACHE``, else ``~/Library/Caches/llama.cpp`` on macOS,
              ``%LOCALAPPDATA%/llama.cpp`` on Windows, ``$XDG_CACHE_HOME/llama.cpp`` or
              ``~/.cache/llama.cpp`` elsewhere
============  ==========================================================================

``~`` is ``$HOME`` (``%USERPROFILE%`` on Windows).  The environment is passed in, so that a
caller (and a test) decides which one is read.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from hybrid.models.stores import StoreName


@dataclass(frozen=True)
class StoreRoots:
    """The folders of each store (a folder may not exist).

    Attributes:
        ollama: Ollama's models folder (holds ``manifests/`` and ``blobs/``).
        lmstudio: LM Studio's models folders.
        hf: The Hugging Face hub cache (holds ``models--org--name`` folders).
        llama_cpp: llama.cpp's download cache.
    """

    ollama: Path
    lmstudio: tuple[Path, ...]
    hf: Path
    llama_cpp: Path

    def of(self, store: StoreName) -> tuple[Path, ...]:
        """The folders of one store."""
        if store == "ollama":
            return (self.ollama,)
        if store == "lmstudio":
            return self.lmstudio
        if store == "hf":
            return (self.hf,)
        return (self.llama_cpp,)


def store_roots(
    environ: Mapping[str, str] | None = None, *, platform: str | None = None
) -> StoreRoots:
    """Find each store's folders.

    Args:
        environ: The environment to read (default: the process's).
        platform: ``sys.platform`` to assume (default: this one's).

    Returns:
        The folders, with ``~`` expanded against ``HOME``.
    """
    env = os.environ if environ is None else environ
    system = sys.platform if platform is None else platform
    home = _home(env, system)

    def named(*names: str) -> Path | None:
        for name in names:
            if env.get(name):
                return _expand(env[name], home)
        return None

    cache = named("XDG_CACHE_HOME") or home / ".cache"
    hf_home = named("HF_HOME")
    hf = named("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE") or (
        hf_home / "hub" if hf_home is not None else cache / "huggingface" / "hub"
    )
    if system == "darwin":
        llama_default = home / "Library" / "Caches" / "llama.cpp"
    elif system == "win32" and env.get("LOCALAPPDATA"):
        llama_default = Path(env["LOCALAPPDATA"]) / "llama.cpp"
    else:
        llama_default = cache / "llama.cpp"
    return StoreRoots(
        ollama=named("OLLAMA_MODELS") or home / ".ollama" / "models",
        lmstudio=(home / ".lmstudio" / "models", home / ".cache" / "lm-studio" / "models"),
        hf=hf,
        llama_cpp=named("LLAMA_CACHE") or llama_default,
    )


def _home(env: Mapping[str, str], system: str) -> Path:
    for name in ("USERPROFILE", "HOME") if system == "win32" else ("HOME",):
        if env.get(name):
            return Path(env[name])
    return Path.home()


def _expand(value: str, home: Path) -> Path:
    if value == "~" or value.startswith(("~/", "~\\")):
        return home / value[2:]
    return Path(value)
