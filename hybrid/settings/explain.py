"""Explain invalid settings: one line per bad field, naming its value and where it came from.

:func:`hybrid.settings.load_settings` validates the merged layers (see
:mod:`hybrid.settings.sources`) and turns pydantic's :class:`~pydantic.ValidationError` into one
:class:`~hybrid.errors.ConfigError` with :func:`settings_error`: each invalid or unknown setting
is named as users write it (``local.n_ctx``), with its value (a secret masked) and its source
(``env HYBRID_LOCAL__N_CTX``), and an unknown one with the setting likely meant.  A check across
sections raises :func:`field_error` so that its line reads like any other.
"""

from __future__ import annotations

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticCustomError

from hybrid.errors import ConfigError
from hybrid.settings.sources import (
    SECRET_MASK,
    Layer,
    LeafPath,
    is_secret,
    source_of,
    suggestion,
)

FIELD_CONTEXT = "field"
"""The context key of a :func:`field_error`: the path of the field it is about."""

INPUT_CONTEXT = "value"
"""The context key of a :func:`field_error`: the field's value."""


def field_error(path: LeafPath, value: object, reason: str) -> PydanticCustomError:
    """The error a check across sections raises about one field (a ``model_validator`` of the
    settings root), so that :func:`settings_error` names that field, its value and its source
    like any other invalid setting.

    Args:
        path: The field, e.g. ``("budget", "per_provider")``.
        value: Its value.
        reason: What is wrong and what to write instead.

    Returns:
        The error to raise.
    """
    return PydanticCustomError(
        "invalid_setting", "{reason}", {"reason": reason, FIELD_CONTEXT: path, INPUT_CONTEXT: value}
    )


def settings_error(
    exc: ValidationError, layer: Layer, settings_cls: type[BaseModel]
) -> ConfigError:
    """Explain a validation failure with one line per bad field: field, value and source.

    Args:
        exc: pydantic's error from validating ``nest(layer)``.
        layer: The merged values, to find where each bad value came from.
        settings_cls: The settings model, to mask secrets and suggest known names.

    Returns:
        The error to raise, e.g. ``invalid setting local.n_ctx = 'abc' (from env
        HYBRID_LOCAL__N_CTX): Input should be a valid integer``.
    """
    lines: list[str] = []
    seen: set[LeafPath] = set()
    for error in exc.errors():
        loc = tuple(error["loc"])
        context = error.get("ctx") or {}
        if not loc and FIELD_CONTEXT in context:
            # A check across sections (see :func:`field_error`) is about one field.
            loc = tuple(context[FIELD_CONTEXT])
            error["input"] = context[INPUT_CONTEXT]
        keys = tuple(part for part in loc if isinstance(part, str))
        if keys in seen:
            continue  # one line per field, even when several of its list items are bad
        seen.add(keys)
        name = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc)[1:]
        source = source_of(keys, layer)
        if error["type"] == "extra_forbidden":
            lines.append(
                f"unknown setting {name} (from {source}): hybrid has no such setting"
                + suggestion(keys, settings_cls)
            )
            continue
        shown = SECRET_MASK if is_secret(settings_cls, keys) else repr(error["input"])
        lines.append(f"invalid setting {name} = {shown} (from {source}): {error['msg']}")
    return ConfigError("\n".join(lines))
