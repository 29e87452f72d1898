"""llama.cpp's download cache (``llama-cli -hf org/repo:QUANT`` and ``llama-server -hf``).

A flat folder (``$LLAMA_CACHE``, else ``~/.cache/llama.cpp``)::

    <org>_<repo>_<file>.gguf                 the model file ("/" in the names become "_")
    <org>_<repo>_<file>.gguf.etag            its ETag, for the next download
    manifest=<org>=<repo>=<tag>.json         {"ggufFile": {"rfilename": <file>}, "mmprojFile": ...}

A file named by a manifest is called ``org/repo:<tag>`` (``org/repo`` alone for the tag
``latest``), the name it was downloaded by; any other ``.gguf`` is called by its file name
without ``.gguf``.  Vision projectors, a manifest's ``mmprojFile`` included, are skipped.  A
cache folder that cannot be read is reported as a problem, not as an empty cache.
"""

from __future__ import annotations

import json
from pathlib import Path

from hybrid.models.stores import Found, Skipped, StoreScan
from hybrid.models.stores.files import PROJECTOR_REASON, group_models, is_gguf_file, list_folder

MANIFEST_PREFIX = "manifest="
MANIFEST_SUFFIX = ".json"


def scan_llama_cache(cache: Path) -> StoreScan:
    """List the models in llama.cpp's cache.

    Args:
        cache: The cache folder (it may not exist).

    Returns:
        The models, by file name; a problem when the folder cannot be read.
    """
    problems: list[str] = []
    children = list_folder(cache, problems)
    names, projectors, skipped = _manifests(children)
    models, passed = group_models(
        path for path in children if is_gguf_file(path) and path.name not in projectors
    )
    skipped.extend(passed)
    skipped.extend(Skipped(cache / name, PROJECTOR_REASON) for name in sorted(projectors))
    found = []
    for model in models:
        name, aliases = names.get(model.path.name, (model.stem, ()))
        found.append(Found("llama.cpp", name, model.path, model.parts, aliases, model.error))
    return StoreScan(tuple(found), tuple(skipped), tuple(problems))


def _manifests(
    children: list[Path],
) -> tuple[dict[str, tuple[str, tuple[str, ...]]], set[str], list[Skipped]]:
    """From the cache's entries: file name -> (name, aliases) from the manifests; projector
    file names; bad manifests."""
    names: dict[str, tuple[str, tuple[str, ...]]] = {}
    projectors: set[str] = set()
    skipped: list[Skipped] = []
    manifests = [
        path
        for path in children
        if path.name.startswith(MANIFEST_PREFIX) and path.name.endswith(MANIFEST_SUFFIX)
    ]
    for path in manifests:
        fields = path.name[len(MANIFEST_PREFIX) : -len(MANIFEST_SUFFIX)].split("=")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            gguf = data["ggufFile"]["rfilename"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            skipped.append(
                Skipped(
                    path,
                    f"an unreadable llama.cpp manifest ({exc!r}); its model is listed under its "
                    "file name. Delete the manifest, or download the model again with llama.cpp",
                )
            )
            continue
        if len(fields) != 3 or not isinstance(gguf, str):
            continue
        org, repo, tag = fields
        prefix = f"{org}/{repo}"
        aliases = (prefix,) if tag == "latest" else ()
        names[_cached_name(prefix, gguf)] = (f"{prefix}:{tag}", aliases)
        projector = data.get("mmprojFile")
        if isinstance(projector, dict) and isinstance(projector.get("rfilename"), str):
            projectors.add(_cached_name(prefix, projector["rfilename"]))
    return names, projectors, skipped


def _cached_name(repo: str, file: str) -> str:
    """The name llama.cpp gives a downloaded file: ``<repo>_<file>`` with "/" as "_"."""
    return f"{repo}_{file}".replace("/", "_")
