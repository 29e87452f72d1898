"""The parts of ``hybrid models`` beyond one line per model: details, skipped files, places.

``--verbose`` shows, for each model, its path (and a split model's parts), the other names that
pick it, and what its store records: Ollama's Go template (kept as information: hybrid formats
prompts with the GGUF's own chat template), its system prompt, and its parameters, of which
hybrid reads ``stop``, ``num_ctx`` and ``temperature``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hybrid.cli.models import ModelRow
    from hybrid.models.catalog import Discovery, ModelEntry

_PREVIEW = 60


def where_searched(folders: Sequence[Path], discovery: Discovery | None) -> str:
    """The folders and stores searched, for the listing's last lines."""
    places = [str(folder) for folder in folders]
    if discovery is not None:
        places += [f"{path} ({store})" for store, path in discovery.stores]
    return ", ".join(places)


def details(rows: Sequence[ModelRow]) -> list[str]:
    """``--verbose``: a block of indented lines per model."""
    lines = ["Details:"]
    for row in rows:
        entry = row.entry
        lines.append(f"  {entry.name} ({entry.source})")
        lines.append(f"    path: {entry.path}")
        if entry.parts:
            lines.append(
                f"    parts: {len(entry.parts)} files, the first loaded (llama.cpp opens the rest)"
            )
        if entry.aliases:
            lines.append(f"    also picked by: {', '.join(entry.aliases)}")
        metadata = entry.metadata
        if metadata is not None:
            if metadata.manifest is not None:
                lines.append(f"    manifest: {metadata.manifest}")
            if metadata.template is not None:
                lines.append(
                    f"    store template: {_preview(metadata.template)} (kept as information; "
                    "hybrid formats with the GGUF's chat template)"
                )
            if metadata.system is not None:
                lines.append(f"    store system prompt: {_preview(metadata.system)}")
            if metadata.params:
                params = ", ".join(f"{key}={value!r}" for key, value in metadata.params.items())
                lines.append(f"    store params: {params}")
        if row.plan is not None:
            lines.extend(f"    plan: {note}" for note in row.plan.notes)
    return lines


def skipped_lines(discovery: Discovery | None, *, verbose: bool) -> list[str]:
    """The files skipped as not models: each with its reason, or a count without ``verbose``."""
    skipped = discovery.skipped if discovery is not None else ()
    if not skipped:
        return []
    if not verbose:
        return [f"Skipped {len(skipped)} .gguf files that are not models (--verbose says why)."]
    return ["Skipped (not models):", *(f"  {item.path}: {item.reason}" for item in skipped)]


def store_json(entry: ModelEntry) -> dict[str, Any] | None:
    """What the model's store records, for ``--json``; None when it records nothing."""
    metadata = entry.metadata
    if metadata is None:
        return None
    defaults = metadata.defaults
    return {
        "manifest": str(metadata.manifest) if metadata.manifest is not None else None,
        "template": metadata.template,
        "system": metadata.system,
        "params": dict(metadata.params),
        "defaults": {
            "stop": list(defaults.stop),
            "n_ctx": defaults.n_ctx,
            "temperature": defaults.temperature,
        },
    }


def _preview(text: str) -> str:
    flat = " ".join(text.split())
    return repr(flat if len(flat) <= _PREVIEW else flat[: _PREVIEW - 3] + "...")
