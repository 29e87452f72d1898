"""Ollama's store: manifests that map ``name:tag`` to content-addressed blobs.

Layout (``$OLLAMA_MODELS``, else ``~/.ollama/models``)::

    manifests/<host>/<namespace>/<model>/<tag>     JSON: {"layers": [{mediaType, digest, size}]}
    blobs/sha256-<hex>                             the layer whose digest is sha256:<hex>

The layer of media type ``application/vnd.ollama.image.model`` is the GGUF file, served in
place.  Beside it:

- ``...image.template``: Ollama's prompt template (a Go template).  It is kept as information
  only: hybrid formats prompts with the chat template inside the GGUF (``tokenizer.chat_template``).
- ``...image.params``: JSON parameters.  hybrid reads ``stop`` (stop sequences), ``num_ctx``
  (context window) and ``temperature`` into :class:`~hybrid.models.stores.ModelDefaults`, which
  apply when the model is served (:func:`hybrid.local.slot.plan_load`,
  :func:`hybrid.local.slot.model_backend`); the others (``top_k``, ``repeat_penalty``, ...) are
  kept as written.
- ``...image.system``: a default system prompt, kept as information.
- ``...image.adapter``: a LoRA adapter (``ADAPTER`` in the Modelfile).  hybrid does not apply
  adapters, so such a model is listed with an error and refused by its name rather than served
  as its plain base model; the error names the base model's own names, when the store has any.

Models are listed by name.  Names are the ones ``ollama list`` shows: ``llama3.2:3b`` for the
default registry's ``library`` namespace, ``user/model:tag`` for another namespace,
``host/namespace/model:tag`` for another registry (``hf.co/...``); ``:latest`` may be left out.
A folder of ``manifests/`` that cannot be read is reported as a problem; the other manifests are
still listed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType

from hybrid.models.stores import Found, ModelDefaults, Skipped, StoreMetadata, StoreScan
from hybrid.models.stores.files import is_folder, list_folder

MEDIA_PREFIX = "application/vnd.ollama.image."
MODEL_LAYER = MEDIA_PREFIX + "model"
TEMPLATE_LAYER = MEDIA_PREFIX + "template"
PARAMS_LAYER = MEDIA_PREFIX + "params"
SYSTEM_LAYER = MEDIA_PREFIX + "system"
ADAPTER_LAYER = MEDIA_PREFIX + "adapter"

DEFAULT_HOST = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"
DEFAULT_TAG = "latest"

_DIGEST = re.compile(r"^sha256:([0-9a-f]{64})$")
_TEXT_LIMIT = 1 << 20  # templates and params are a few KB; a larger "text" layer is not one


class _Broken(Exception):
    """A manifest or one of its blobs cannot be used; ``args[0]`` says why and what to do."""


def scan_ollama(root: Path) -> StoreScan:
    """List the models of an Ollama store.

    Args:
        root: The store (holds ``manifests/`` and ``blobs/``); it may not exist.

    Returns:
        One :class:`Found` per manifest (broken ones, and ones with a LoRA adapter, with an
        ``error``); manifests that name no model weights (Ollama's cloud models) are skipped;
        a problem for each folder of ``manifests/`` that cannot be read.
    """
    problems: list[str] = []
    found: list[Found] = []
    skipped: list[Skipped] = []
    adapted: list[Found] = []
    for manifest in _manifests(root / "manifests", problems):
        host, namespace, model, tag = manifest.relative_to(root / "manifests").parts
        name, aliases = _names(host, namespace, model, tag)
        try:
            read = _read(root, manifest, name, aliases)
        except _Broken as exc:
            found.append(Found("ollama", name, manifest, aliases=aliases, error=str(exc.args[0])))
        except _NoWeights as exc:
            skipped.append(Skipped(manifest, str(exc.args[0])))
        else:
            (adapted if read.adapters else found).append(read.found)
    found.extend(_refused(model, found) for model in adapted)
    found.sort(key=lambda model: model.name)
    return StoreScan(tuple(found), tuple(skipped), tuple(problems))


class _NoWeights(Exception):
    """The manifest names no model layer; ``args[0]`` says so."""


@dataclass(frozen=True)
class _Read:
    found: Found
    adapters: tuple[Path, ...]


def _manifests(folder: Path, problems: list[str]) -> list[Path]:
    """``<host>/<namespace>/<model>/<tag>`` files under ``folder``, each folder listed on its
    own so that one unreadable folder hides only the manifests inside it."""
    levels = [folder]
    for _ in range(3):
        levels = [
            child
            for parent in levels
            for child in list_folder(parent, problems)
            if not child.name.startswith(".") and is_folder(child, problems)
        ]
    return sorted(
        child
        for parent in levels
        for child in list_folder(parent, problems)
        if not child.name.startswith(".") and _is_file(child)
    )


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:  # a link this user cannot follow: reading the manifest says so
        return True


def _refused(model: Found, found: list[Found]) -> Found:
    """A model with a LoRA adapter, listed with why it is not served and what to serve."""
    blob = model.path
    manifest = model.metadata.manifest if model.metadata is not None else None
    bases = sorted(other.name for other in found if other.error is None and other.path == blob)
    if bases:
        instead = f"serve it by its own name ({', '.join(bases)})"
    else:
        instead = (
            "serve it by its own name once Ollama has it (`ollama pull` the FROM of the "
            f"Modelfile), or by the path of its weights, {blob}"
        )
    error = (
        f"Ollama model {model.name} applies a LoRA adapter (an ADAPTER layer in manifest "
        f"{manifest}), which hybrid does not support: served, it would answer as its base model "
        f"without the adapter. To run the base model alone, {instead}; to run it with the "
        "adapter, use Ollama"
    )
    return replace(model, path=manifest or model.path, error=error)


def _names(host: str, namespace: str, model: str, tag: str) -> tuple[str, tuple[str, ...]]:
    if host == DEFAULT_HOST and namespace == DEFAULT_NAMESPACE:
        short = model
    elif host == DEFAULT_HOST:
        short = f"{namespace}/{model}"
    else:
        short = f"{host}/{namespace}/{model}"
    forms = [short, f"{namespace}/{model}", f"{host}/{namespace}/{model}"]
    forms = list(dict.fromkeys(forms))
    aliases = [f"{form}:{tag}" for form in forms[1:]]
    if tag == DEFAULT_TAG:
        aliases.extend(forms)
    return f"{short}:{tag}", tuple(aliases)


def _read(root: Path, manifest: Path, name: str, aliases: tuple[str, ...]) -> _Read:
    layers = _layers(manifest, name)
    model = next((layer for layer in layers if layer.get("mediaType") == MODEL_LAYER), None)
    if model is None:
        raise _NoWeights(
            f"Ollama manifest {manifest} ({name}) names no model weights (a cloud model, or "
            "not a GGUF model): hybrid can serve only models whose weights are on disk"
        )
    blob = _blob(root, manifest, name, model)
    texts: dict[str, str] = {}
    params: dict[str, object] = {}
    adapters: list[Path] = []
    for layer in layers:
        media = layer.get("mediaType")
        if media == ADAPTER_LAYER:
            adapters.append(_blob(root, manifest, name, layer))
        elif media in (TEMPLATE_LAYER, SYSTEM_LAYER, PARAMS_LAYER):
            text = _text(_blob(root, manifest, name, layer), manifest, name)
            if media == PARAMS_LAYER:
                params = _params(text, manifest, name)
            else:
                texts[str(media)] = text
    metadata = StoreMetadata(
        manifest=manifest,
        template=texts.get(TEMPLATE_LAYER),
        system=texts.get(SYSTEM_LAYER),
        params=MappingProxyType(params),
        defaults=defaults_from(params),
    )
    found = Found("ollama", name, blob, aliases=aliases, metadata=metadata)
    return _Read(found, tuple(adapters))


def _layers(manifest: Path, name: str) -> list[Mapping[str, object]]:
    again = f"run `ollama pull {name}` to fetch it again, or `ollama rm {name}`"
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except OSError as exc:
        raise _Broken(f"cannot read Ollama manifest {manifest} ({exc}): {again}") from exc
    except ValueError as exc:
        raise _Broken(f"Ollama manifest {manifest} is not valid JSON ({exc}): {again}") from exc
    layers = data.get("layers") if isinstance(data, dict) else None
    if not isinstance(layers, list) or not all(isinstance(layer, dict) for layer in layers):
        raise _Broken(f"Ollama manifest {manifest} has no list of layers: {again}")
    return layers


def _blob(root: Path, manifest: Path, name: str, layer: Mapping[str, object]) -> Path:
    digest = layer.get("digest")
    match = _DIGEST.match(digest) if isinstance(digest, str) else None
    again = f"run `ollama pull {name}` to fetch it again"
    if match is None:
        raise _Broken(
            f"Ollama manifest {manifest} names a layer with digest {digest!r}, not "
            f"sha256:<64 hex digits>: {again}"
        )
    blob = root / "blobs" / f"sha256-{match[1]}"
    try:
        actual = blob.stat().st_size
    except FileNotFoundError:
        raise _Broken(
            f"Ollama manifest {manifest} names blob {blob}, which does not exist: {again}"
        ) from None
    except OSError as exc:
        raise _Broken(f"cannot read Ollama blob {blob} ({exc}): make it readable") from exc
    size = layer.get("size")
    if isinstance(size, int) and not isinstance(size, bool) and size != actual:
        raise _Broken(
            f"Ollama blob {blob} has {actual:,} bytes but manifest {manifest} says {size:,} "
            f"(a partial download): {again}"
        )
    return blob


def _text(blob: Path, manifest: Path, name: str) -> str:
    try:
        with blob.open("rb") as handle:
            raw = handle.read(_TEXT_LIMIT + 1)
    except OSError as exc:
        raise _Broken(f"cannot read Ollama blob {blob} ({exc}): make it readable") from exc
    if len(raw) > _TEXT_LIMIT:
        raise _Broken(
            f"Ollama blob {blob}, a text layer of manifest {manifest}, holds more than "
            f"{_TEXT_LIMIT:,} bytes: run `ollama pull {name}` to fetch it again"
        )
    return raw.decode("utf-8", errors="replace")


def _params(text: str, manifest: Path, name: str) -> dict[str, object]:
    try:
        params = json.loads(text)
    except ValueError as exc:
        raise _Broken(
            f"the params layer of Ollama manifest {manifest} is not valid JSON ({exc}): "
            f"run `ollama pull {name}` to fetch it again"
        ) from exc
    if not isinstance(params, dict):
        raise _Broken(
            f"the params layer of Ollama manifest {manifest} is not a JSON object: "
            f"run `ollama pull {name}` to fetch it again"
        )
    return params


def defaults_from(params: Mapping[str, object]) -> ModelDefaults:
    """The parameters hybrid can use, from Ollama's ``params`` JSON.

    Args:
        params: The JSON object (``stop`` is a string or a list of strings, ``num_ctx`` an
            integer, ``temperature`` a number); values of another type are ignored.

    Returns:
        Stop sequences, context window and temperature.
    """
    stop = params.get("stop")
    stops = (stop,) if isinstance(stop, str) else stop if isinstance(stop, list) else ()
    num_ctx = params.get("num_ctx")
    temperature = params.get("temperature")
    return ModelDefaults(
        stop=tuple(item for item in stops if isinstance(item, str) and item),
        n_ctx=num_ctx if isinstance(num_ctx, int) and not isinstance(num_ctx, bool) else None,
        temperature=(
            float(temperature)
            if isinstance(temperature, int | float) and not isinstance(temperature, bool)
            else None
        ),
    )
