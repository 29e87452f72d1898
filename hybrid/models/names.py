"""Picking a model by the name ``hybrid models`` shows.

Names by source (every name is matched without regard to case):

==========  =====================================  ===========================================
source      name                                   also accepted
==========  =====================================  ===========================================
ollama      ``llama3.2:3b``, ``user/m:tag``,       ``llama3.2`` for ``llama3.2:latest``;
            ``hf.co/org/repo:Q4_K_M``              ``registry.ollama.ai/library/llama3.2:3b``
hf          ``org/repo:Q4_K_M``                    ``org/repo/<file in the repo>``; ``org/repo``
                                                   when the cache holds one model of the repo
lmstudio    ``publisher/repo:Q4_K_M``              as hf
llama.cpp   ``org/repo:<tag>`` (from its           the file name
            manifest), else the file name stem
folder      the file name without ``.gguf``        the file name
==========  =====================================  ===========================================

``org/repo/<file>`` is the name when the quantization label does not tell a repository's
files apart.  A name two stores share (the same repository in LM Studio and the Hugging Face
cache, say) is refused with the candidates listed; prefix it with its store to pick one:
``ollama:``, ``lmstudio:``, ``hf:``, ``llama.cpp:`` or ``folder:`` (``hf:org/repo:Q4_K_M``).
Files of one name in one store (``model.gguf`` in two ``local.models_dirs`` folders, or in LM
Studio's two folders) have one prefixed name too: the error says to pass the path instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from hybrid.errors import ModelFileError
from hybrid.models.stores import Found

if TYPE_CHECKING:
    from collections.abc import Callable

PREFIXES = ("ollama", "lmstudio", "hf", "llama.cpp", "folder")
"""Store prefixes a name may carry (``folder`` covers models folders, the embedded model and
the configured file)."""

_FOLDER_SOURCES = ("folder", "embedded", "configured")


def split_prefix(text: str) -> tuple[str | None, str]:
    """Split ``ollama:llama3.2:3b`` into ``("ollama", "llama3.2:3b")``; no prefix gives None."""
    for prefix in PREFIXES:
        if text.startswith(prefix + ":") and len(text) > len(prefix) + 1:
            return prefix, text[len(prefix) + 1 :]
    return None, text


def matches(found: Sequence[Found], text: str) -> list[Found]:
    """The models a name picks (several when it is ambiguous; they may share a file).

    Args:
        found: The models, in listing order.
        text: A name as ``hybrid models`` shows it, an alias, or a file name; with or without a
            store prefix.

    Returns:
        The models it names, in listing order.
    """
    prefix, name = split_prefix(text)
    key = name.casefold()
    hits = []
    for model in found:
        if prefix is not None and not _in_store(model, prefix):
            continue
        names = {n.casefold() for n in (model.name, *model.aliases, model.path.name)}
        if key in names:
            hits.append(model)
    if not hits and prefix is not None:
        # A name that only looks prefixed (an Ollama model called "hf", say).
        return matches(found, name) if name != text else []
    return hits


def pick(found: Sequence[Found], text: str, *, resolved: Callable[[Path], Path]) -> Found | None:
    """The one model a name picks.

    Args:
        found: The models, in listing order.
        text: The name.
        resolved: Turns a path into the file it leads to (to see that two hits are one file).

    Returns:
        The model, or None when the name picks none.

    Raises:
        ModelFileError: The name picks different files (the message lists each with the
            prefixed name that picks it), or the model it picks cannot be served (its error).
    """
    hits = matches(found, text)
    if not hits:
        return None
    files = {resolved(hit.path) for hit in hits}
    if len(files) > 1:
        raise _ambiguous(found, text, hits, resolved)
    hit = hits[0]
    if hit.error is not None:
        raise ModelFileError(f"model {text!r} cannot be served: {hit.error}")
    return hit


def _ambiguous(
    found: Sequence[Found], text: str, hits: Sequence[Found], resolved: Callable[[Path], Path]
) -> ModelFileError:
    """The error for a name that picks several files: each listed with its path, and the way to
    pick one: its store prefix where that picks it alone, else its path (two models folders, or
    LM Studio's two folders, may hold files of one name; nothing else tells them apart)."""
    choices = "; ".join(f"{label(hit)} ({hit.path})" for hit in hits)
    by_path = [
        hit for hit in hits if len({resolved(m.path) for m in matches(found, label(hit))}) > 1
    ]
    if not by_path:
        fix = f"Pick one by its store prefix (e.g. --model {label(hits[0])}) or by its path."
    else:
        shared = sorted({label(hit) for hit in by_path})
        fix = (
            f"{' and '.join(shared)} name{'s' if len(shared) == 1 else ''} several files, so "
            f"pass the path of the one to use (e.g. --model {by_path[0].path})"
        )
        others = [label(hit) for hit in hits if hit not in by_path]
        if others:
            which = "the other is" if len(others) == 1 else "the others are each"
            fix += f"; {which} picked by its store prefix ({', '.join(others)})"
        fix += "."
    return ModelFileError(f"model name {text!r} matches {len(hits)} models: {choices}. {fix}")


def label(model: Found, name: str | None = None) -> str:
    """The model's name (or ``name``, another of its names) with its store prefix
    (``ollama:llama3.2:3b``)."""
    prefix = "folder" if model.source in _FOLDER_SOURCES else model.source
    return f"{prefix}:{model.name if name is None else name}"


def names_of(model: Found) -> tuple[str, ...]:
    """Every name that may pick the model, plainest first: its name, its name with the store
    prefix, its aliases, then each alias with the prefix."""
    return (
        model.name,
        label(model),
        *model.aliases,
        *(label(model, alias) for alias in model.aliases),
    )


def _in_store(model: Found, prefix: str) -> bool:
    return model.source == prefix or (prefix == "folder" and model.source in _FOLDER_SOURCES)
