"""``hybrid config``: print the effective settings and where each value came from.

Secrets are never printed, whatever their length: a set secret shows as ``**********``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from pydantic import BaseModel

    from hybrid.settings import LoadedSettings

HELP = "print the effective settings and where each value came from"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--json``."""
    parser.add_argument(
        "--json",
        action="store_true",
        help='print {"config_file": ..., "settings": {"server.port": {"value", "source"}}}',
    )


def run_loaded(args: argparse.Namespace, loaded: LoadedSettings) -> int:
    """Print the settings as aligned ``name = value   (source)`` lines, or as JSON.

    Args:
        args: Parsed arguments; ``args.json`` selects JSON output.
        loaded: The settings and their sources, as :func:`hybrid.cli.main` loaded them.

    Returns:
        0.
    """
    values = effective_values(loaded.settings)
    if args.json:
        _print_json(values, loaded, sys.stdout)
    else:
        _print_text(values, loaded, sys.stdout)
    return 0


def effective_values(settings: BaseModel) -> dict[str, object]:
    """Return every leaf setting by dotted path, as JSON-ready values with secrets masked.

    Args:
        settings: The settings model (sections are nested models).

    Returns:
        ``{"server.port": 8642, "local.model": None, "server.api_key": "**********", ...}``
        in declaration order; paths become strings.
    """
    from pydantic import BaseModel

    values: dict[str, object] = {}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if isinstance(value, BaseModel):
            values.update({f"{name}.{key}": item for key, item in effective_values(value).items()})
        else:
            values[name] = _plain(value)
    return values


def _plain(value: object) -> object:
    from pydantic import BaseModel, SecretStr

    from hybrid.settings_sources import SECRET_MASK

    if isinstance(value, SecretStr):
        return SECRET_MASK
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, BaseModel):  # an entry of a list of sections, e.g. cloud.providers
        return {key: _plain(getattr(value, key)) for key in type(value).model_fields}
    return value


def _config_file_line(loaded: LoadedSettings) -> str:
    if loaded.config_file is not None:
        return f"config file: {loaded.config_file}"
    from hybrid.settings import default_config_file

    return f"config file: {default_config_file()} (not found; none read)"


def _print_text(values: dict[str, object], loaded: LoadedSettings, out: TextIO) -> None:
    shown = {name: json.dumps(value) for name, value in values.items()}
    name_width = max(map(len, shown))
    value_width = max(map(len, shown.values()))
    print(_config_file_line(loaded), file=out)
    print(file=out)
    for name, value in shown.items():
        source = loaded.sources.get(name, "default")
        line = f"{name:<{name_width}} = {value:<{value_width}}   ({source})"
        print(line, file=out)


def _print_json(values: dict[str, object], loaded: LoadedSettings, out: TextIO) -> None:
    document = {
        "config_file": str(loaded.config_file) if loaded.config_file is not None else None,
        "settings": {
            name: {"value": value, "source": loaded.sources.get(name, "default")}
            for name, value in values.items()
        },
    }
    json.dump(document, out, indent=2)
    out.write("\n")
