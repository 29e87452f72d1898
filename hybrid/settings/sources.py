"""Read each settings layer into flat ``path -> (value, source)`` maps, and merge them.

:func:`hybrid.settings.load_settings` reads the TOML file, the ``.env`` file (with
:mod:`hybrid.settings.dotenv_file`), the environment and the command line separately, so that
every leaf value keeps the name of the layer it came from.  The environment is read with
pydantic-settings' rules (so ``Settings()`` and ``load_settings`` agree): names are
case-insensitive, empty values count as unset, ``PREFIX_SECTION__FIELD`` sets one field,
``PREFIX_SECTION`` takes a JSON object for the whole section (its nested variables win over it),
and list values are JSON.  A ``PREFIX_*`` name that is no setting is refused, not skipped.

The merged layer keeps each value's source, which :mod:`hybrid.settings.explain` names when a
value is invalid.  The functions take the settings class as an argument instead of importing it,
so this module knows nothing about which settings exist.
"""

from __future__ import annotations

import difflib
import json
import tomllib
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Union, get_args, get_origin

from pydantic import BaseModel, SecretStr

from hybrid.errors import ConfigError

LeafPath = tuple[str, ...]
"""A field's place in the settings tree: ``("server", "port")``."""


@dataclass(frozen=True)
class ProvidedValue:
    """One value as a layer gave it, before validation.

    Attributes:
        value: The raw value (a string from the environment, a TOML value, a flag's value).
        source: Where it came from, as ``hybrid config`` shows it (``"env HYBRID_SERVER__PORT"``).
    """

    value: object
    source: str


Layer = dict[LeafPath, ProvidedValue]
"""Values of one layer, keyed by leaf path; a key may also name a section or an unknown key."""

SECRET_MASK = "**********"
"""What a secret is shown as, whatever its length."""

_COMPLEX_ORIGINS = (list, tuple, set, frozenset, dict)


def dotted(path: LeafPath) -> str:
    """Return the path as users write it: ``("server", "port")`` -> ``"server.port"``."""
    return ".".join(path)


def leaf_paths(settings_cls: type[BaseModel]) -> Iterator[LeafPath]:
    """Yield the path of every leaf field, depth first in declaration order.

    Args:
        settings_cls: The settings model; fields whose type is a model are sections.
    """
    for name, field in settings_cls.model_fields.items():
        section = _section_model(field.annotation)
        if section is None:
            yield (name,)
        else:
            yield from ((name, *rest) for rest in leaf_paths(section))


def find_config_file(
    explicit: Path | None, environ: Mapping[str, str], *, env_name: str, default: Path
) -> Path | None:
    """Decide which TOML file to read.

    Args:
        explicit: The path given with ``--config``, if any.
        environ: The environment, searched case-insensitively for ``env_name``.
        env_name: The variable that names a config file (``HYBRID_CONFIG``).
        default: The file read when nothing names one, if it exists.

    Returns:
        The absolute path of the file to read, or None when there is none to read.

    Raises:
        ConfigError: ``--config`` or ``env_name`` names a file that does not exist.
    """
    if explicit is not None:
        path, origin = explicit, "--config"
    else:
        named = _lookup(environ, env_name)
        if named is None:
            return default if default.is_file() else None
        path, origin = Path(named[1]), named[0]
    path = path.expanduser().absolute()
    if not path.exists():
        raise ConfigError(
            f"config file {path} (named by {origin}) does not exist; create it, "
            f"or point {origin} at an existing TOML file"
        )
    return path


def read_toml(path: Path, settings_cls: type[BaseModel]) -> Layer:
    """Read a TOML config file into a layer.

    Relative paths in path-typed fields are taken relative to the file's folder, and ``~`` is
    expanded, so a config file means the same thing from any working directory.

    Args:
        path: The TOML file.
        settings_cls: The settings model, to know sections and path-typed fields.

    Returns:
        The file's values with source ``"config file <path>"``.

    Raises:
        ConfigError: The file cannot be read or is not valid TOML (the message names the line
            and column); or a key differs from a setting's name only in case (``[Server]``),
            which pydantic would otherwise half-accept.
    """
    try:
        with path.open("rb") as file:
            data = tomllib.load(file)
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message ends with "(at line L, column C)".
        raise ConfigError(
            f"config file {path} is not valid TOML: {exc}; fix the syntax there"
        ) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"cannot read config file {path}: {exc}; check that it is a readable UTF-8 file"
        ) from exc
    layer: Layer = {}
    for leaf, value in _flatten(data, settings_cls, ()):
        _refuse_case_slip(leaf, settings_cls, f"config file {path}")
        _put(
            layer,
            leaf,
            ProvidedValue(
                _relative_to(path.parent, leaf, value, settings_cls), f"config file {path}"
            ),
        )
    return layer


def refuse_unknown_names(
    variables: Sequence[tuple[Mapping[str, str], Callable[[str], str]]],
    settings_cls: type[BaseModel],
    *,
    prefix: str,
    delimiter: str,
    ignored: frozenset[str] = frozenset(),
) -> None:
    """Refuse every ``PREFIX_*`` name, in any of several environments, that is no setting.

    A name is a setting when each of its keys names a field of the section before it, so a
    misspelt section (``HYBRID_SEVER__PORT``), field (``HYBRID_LOCAL__N_CXT``) or a single
    ``_`` for ``__`` cannot go unnoticed; keys below a field whose value is JSON (a table such
    as ``budget.per_provider``) are left to validation.  All such names are reported at once,
    so that one run shows every typo.

    Args:
        variables: Each environment (variable name to value) with the function that builds
            the source of a value from the variable's name as written (``"env NAME"``).
        settings_cls: The settings model.
        prefix: The variable prefix (``HYBRID_``).
        delimiter: The section/field separator in names (``__``).
        ignored: ``PREFIX_*`` names, upper case, that hybrid reads but that are not settings
            (``HYBRID_CONFIG``).

    Raises:
        ConfigError: One line per name that is no setting, each with the likely setting.
    """
    lines = [
        f"unknown setting {dotted(keys)} (from {source(name)}): hybrid has no such setting"
        + _env_suggestion(keys, settings_cls, prefix, delimiter)
        for environ, source in variables
        for keys, name, _ in _prefixed(environ, prefix, delimiter, ignored)
        if not _names_setting(keys, settings_cls)
    ]
    if lines:
        raise ConfigError("\n".join(lines))


def read_env(
    environ: Mapping[str, str],
    settings_cls: type[BaseModel],
    *,
    prefix: str,
    delimiter: str,
    source: Callable[[str], str],
    ignored: frozenset[str] = frozenset(),
) -> Layer:
    """Read the ``PREFIX_*`` variables of an environment into a layer.

    A name that is no setting is refused (see :func:`refuse_unknown_names`).

    Args:
        environ: Variable name to value.
        settings_cls: The settings model.
        prefix: The variable prefix (``HYBRID_``).
        delimiter: The section/field separator in names (``__``).
        source: Builds a value's source from the variable's name as written.
        ignored: ``PREFIX_*`` names, upper case, that hybrid reads but that are not settings
            (``HYBRID_CONFIG``).

    Returns:
        The environment's values.

    Raises:
        ConfigError: Names that are no setting (one line each, suggesting the likely one); or
            a value that must be JSON (a section, a list) is not.
    """
    refuse_unknown_names(
        [(environ, source)], settings_cls, prefix=prefix, delimiter=delimiter, ignored=ignored
    )
    found = list(_prefixed(environ, prefix, delimiter, ignored))
    layer: Layer = {}
    # A whole-section JSON value goes first so that its nested variables override it.
    for keys, name, raw in sorted(found, key=lambda item: len(item[0])):
        value: object = raw
        if _is_complex(_annotation_at(settings_cls, keys)):
            value = _decode_json(raw, keys, source(name))
        parent = (
            _section_model(_annotation_at(settings_cls, keys[:-1])) if keys[1:] else settings_cls
        )
        for leaf, leaf_value in _flatten({keys[-1]: value}, parent, keys[:-1]):
            _put(layer, leaf, ProvidedValue(leaf_value, source(name)))
    return layer


def read_cli(values: Mapping[str, object], flags: Mapping[str, str]) -> Layer:
    """Turn command-line values keyed by dotted path into a layer.

    Args:
        values: Dotted path (``"server.port"``) to the flag's value.
        flags: Dotted path to the flag that set it (``"--port"``).

    Returns:
        The values with source ``"command line --flag"`` (``"command line"`` without a flag).
    """
    layer: Layer = {}
    for path, value in values.items():
        flag = flags.get(path)
        source = f"command line {flag}" if flag else "command line"
        _put(layer, tuple(path.split(".")), ProvidedValue(value, source))
    return layer


def merge(layers: list[Layer]) -> Layer:
    """Merge layers given lowest precedence first; a later value replaces overlapping ones.

    Overlapping means the same path, or one path inside the other (a whole section from one
    layer and one of its fields from another).
    """
    merged: Layer = {}
    for layer in layers:
        for path, provided in layer.items():
            _put(merged, path, provided)
    return merged


def nest(layer: Layer) -> dict[str, object]:
    """Turn a merged layer into the nested dict that the settings model validates."""
    nested: dict[str, object] = {}
    for path, provided in layer.items():
        node = nested
        for key in path[:-1]:
            child = node.setdefault(key, {})
            assert isinstance(child, dict), "merge() leaves no path inside a non-section value"
            node = child
        node[path[-1]] = provided.value
    return nested


def leaf_sources(layer: Layer, settings_cls: type[BaseModel]) -> dict[str, str]:
    """Return the source of every leaf field: the layer that set it, else ``"default"``."""
    return {
        dotted(leaf): layer[leaf].source if leaf in layer else "default"
        for leaf in leaf_paths(settings_cls)
    }


def source_of(keys: LeafPath, layer: Layer) -> str:
    """Return where the value at ``keys`` came from: the layer value at, inside or around that
    path, else ``"default"``."""
    for path, provided in layer.items():
        if _overlaps(path, keys):
            return provided.source
    return "default"


def is_secret(settings_cls: type[BaseModel], keys: LeafPath) -> bool:
    """Whether the field at ``keys`` holds a secret (a ``SecretStr``), to be shown masked."""
    return SecretStr in _union_members(_annotation_at(settings_cls, keys))


def suggestion(keys: LeafPath, settings_cls: type[BaseModel]) -> str:
    """The end of an "unknown setting" line: the closest setting's name, or where to list them.

    Returns:
        ``"; did you mean server.port?"``, or ``"; run `hybrid config` to list them"``.
    """
    known = [dotted(leaf) for leaf in leaf_paths(settings_cls)]
    known += [name for name in settings_cls.model_fields]
    close = difflib.get_close_matches(dotted(keys), known, n=1)
    return f"; did you mean {close[0]}?" if close else "; run `hybrid config` to list them"


def _put(layer: Layer, path: LeafPath, provided: ProvidedValue) -> None:
    for old in [old for old in layer if _overlaps(old, path)]:
        del layer[old]
    layer[path] = provided


def _overlaps(a: LeafPath, b: LeafPath) -> bool:
    shorter = min(len(a), len(b))
    return a[:shorter] == b[:shorter]


def _lookup(environ: Mapping[str, str], name: str) -> tuple[str, str] | None:
    for key, value in environ.items():
        if key.upper() == name.upper() and value:
            return key, value
    return None


def _prefixed(
    environ: Mapping[str, str], prefix: str, delimiter: str, ignored: frozenset[str]
) -> Iterator[tuple[LeafPath, str, str]]:
    """Yield ``(keys, name, value)`` for each non-empty ``PREFIX_*`` variable not ignored."""
    for name, raw in environ.items():
        lowered = name.lower()
        if raw and lowered.startswith(prefix.lower()) and name.upper() not in ignored:
            yield tuple(lowered[len(prefix) :].split(delimiter)), name, raw


def _names_setting(keys: LeafPath, settings_cls: type[BaseModel]) -> bool:
    """Whether each key names a field of the section before it; keys below a field whose
    value is JSON (a table, a list) are that value's, for validation to judge."""
    model = settings_cls
    for depth, key in enumerate(keys):
        field = model.model_fields.get(key)
        if field is None:
            return False
        section = _section_model(field.annotation)
        if section is None:
            return depth == len(keys) - 1 or _is_complex(field.annotation)
        model = section
    return True


def _flatten(
    data: Mapping[str, object], model: type[BaseModel] | None, prefix: LeafPath
) -> Iterator[tuple[LeafPath, object]]:
    """Yield ``(path, value)`` for the values of ``data``, descending into known sections.

    Args:
        data: Values keyed by field name, found at ``prefix``.
        model: The section model at ``prefix``, or None where ``prefix`` names no section.
        prefix: Where ``data`` sits in the settings tree.
    """
    for key, value in data.items():
        field = model.model_fields.get(key) if model is not None else None
        section = _section_model(field.annotation) if field is not None else None
        if section is not None and isinstance(value, dict):
            yield from _flatten(value, section, (*prefix, key))
        else:
            yield (*prefix, key), value


def _refuse_case_slip(leaf: LeafPath, settings_cls: type[BaseModel], source: str) -> None:
    """Refuse a key that names a field only when compared case-insensitively (``Server``).

    pydantic-settings matches top-level names case-insensitively but :func:`_flatten` and
    :func:`leaf_sources` do not, so such a key would be applied yet shown as a default, beat
    the environment, and could replace the correctly spelt section next to it.
    """
    model: type[BaseModel] | None = settings_cls
    for depth, key in enumerate(leaf):
        if model is None:
            return
        if key not in model.model_fields:
            known = {name.lower(): name for name in model.model_fields}
            if key.lower() in known:
                raise ConfigError(
                    f"unknown setting {dotted(leaf[: depth + 1])} (from {source}): hybrid has "
                    f"no such setting; did you mean {dotted((*leaf[:depth], known[key.lower()]))}?"
                )
            return
        model = _section_model(model.model_fields[key].annotation)


def _section_model(annotation: object) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _annotation_at(settings_cls: type[BaseModel], keys: LeafPath) -> object:
    """Return the type annotation of the field at ``keys``, or None for an unknown field."""
    model: type[BaseModel] | None = settings_cls
    annotation: object = None
    for key in keys:
        field = model.model_fields.get(key) if model is not None else None
        if field is None:
            return None
        annotation = field.annotation
        model = _section_model(annotation)
    return annotation


def _union_members(annotation: object) -> tuple[object, ...]:
    if get_origin(annotation) in (Union, types.UnionType):
        return tuple(arg for arg in get_args(annotation) if arg is not type(None))
    return (annotation,)


def _is_complex(annotation: object) -> bool:
    """Whether an environment value for this type is JSON, as pydantic-settings decides."""
    return any(
        _section_model(member) is not None
        or member in _COMPLEX_ORIGINS
        or get_origin(member) in _COMPLEX_ORIGINS
        for member in _union_members(annotation)
    )


def _path_kind(annotation: object) -> Literal["one", "many"] | None:
    for member in _union_members(annotation):
        if member is Path:
            return "one"
        if get_origin(member) in (list, tuple, set, frozenset) and Path in get_args(member):
            return "many"
    return None


def _relative_to(
    folder: Path, leaf: LeafPath, value: object, settings_cls: type[BaseModel]
) -> object:
    """Anchor relative paths of path-typed fields at ``folder``; leave other values alone."""

    def anchor(item: object) -> object:
        if not isinstance(item, str):
            return item  # validation reports the wrong type with the value as written
        path = Path(item).expanduser()
        return path if path.is_absolute() else folder / path

    kind = _path_kind(_annotation_at(settings_cls, leaf))
    if kind == "one":
        return anchor(value)
    if kind == "many" and isinstance(value, list):
        return [anchor(item) for item in value]
    return value


def _decode_json(raw: str, keys: LeafPath, source: str) -> object:
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"invalid setting {dotted(keys)} = {raw!r} (from {source}): "
            f'expected a JSON value ({exc.msg}); write a list as \'["a", "b"]\' '
            f"and a section as '{{\"field\": value}}'"
        ) from exc


def _env_suggestion(
    keys: LeafPath, settings_cls: type[BaseModel], prefix: str, delimiter: str
) -> str:
    """Suggest the variable meant by an unknown name: the same words with ``__`` between
    section and key when that names a setting, else the closest setting."""
    written = "_".join(keys)
    for path in _all_paths(settings_cls):
        if len(path) > 1 and "_".join(path) == written:
            meant = prefix + delimiter.join(path).upper()
            return f"; use {delimiter} between section and key: {meant}"
    return suggestion(keys, settings_cls)


def _all_paths(model: type[BaseModel], prefix: LeafPath = ()) -> Iterator[LeafPath]:
    """Yield the path of every section and leaf field, depth first."""
    for name, field in model.model_fields.items():
        yield (*prefix, name)
        section = _section_model(field.annotation)
        if section is not None:
            yield from _all_paths(section, (*prefix, name))
