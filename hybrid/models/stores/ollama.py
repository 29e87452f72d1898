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

Models are listed by name.  Names are the ones ``ollama list`` shows: ``llama3.2:3b`` for the
default registry's ``library`` namespace, ``user/model:tag`` for another namespace,
``host/namespace/model:tag`` for another registry (``hf.co/...``); ``:latest`` may be left out.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

from hybrid.models.stores import Found, ModelDefaults, Skipped, StoreMetadata, StoreScan

MEDIA_PREFIX = "application/vnd.ollama.image."
MODEL_LAYER = MEDIA_PREFIX + "model"
TEMPLATE_LAYER = MEDIA_PREFIX + "template"
PARAMS_LAYER = MEDIA_PREFIX + "params"
SYSTEM_LAYER = MEDIA_PREFIX + "system"

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
        One :class:`Found` per manifest (broken ones with an ``error``); manifests that name no
        model weights (Ollama's cloud models) are skipped.
    """
    try:
        manifests = sorted(
            path
            for path in (root / "manifests").glob("*/*/*/*")
            if not path.name.startswith(".") and path.is_file()
        )
    except OSError:
        return StoreScan()
    found: list[Found] = []
    skipped: list[Skipped] = []
    for manifest in manifests:
        host, namespace, model, tag = manifest.relative_to(root / "manifests").parts
        name, aliases = _names(host, namespace, model, tag)
        try:
            found.append(_read(root, manifest, name, aliases))
        except _Broken as exc:
            found.append(Found("ollama", name, manifest, aliases=aliases, error=str(exc.args[0])))
        except _NoWeights as exc:
            skipped.append(Skipped(manifest, str(exc.args[0])))
    found.sort(key=lambda model: model.name)
    return StoreScan(tuple(found), tuple(skipped))


class _NoWeights(Exception):
    """The manifest names no model layer; ``args[0]`` says so."""


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


def _read(root: Path, manifest: Path, name: str, aliases: tuple[str, ...]) -> Found:
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
    for layer in layers:
        media = layer.get("mediaType")
        if media in (TEMPLATE_LAYER, SYSTEM_LAYER, PARAMS_LAYER):
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
    return Found("ollama", name, blob, aliases=aliases, metadata=metadata)


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
