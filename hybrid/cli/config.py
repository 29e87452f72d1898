"""``hybrid config``: print the effective settings and where each value came from.

The text output fits an 80-column terminal: one ``name = value  (source)`` line per setting,
with the source on a line of its own when it does not fit beside the value, and long values,
sources and paths wrapped (after a space, a slash or a comma when they can be).  ``--json``
prints every value whole.

Secrets are never printed, whatever their length: a set secret shows as ``**********``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from pydantic import BaseModel

    from hybrid.settings import LoadedSettings

HELP = "print the effective settings and where each value came from"

WIDTH = 80
"""Columns the text output fits in."""

SOURCE_INDENT = "    "
"""Indent of a source that does not fit beside its value."""

# A line may break after a space, a slash or a comma: between words, path parts, list items.
_BREAK_AFTER = re.compile(r"(?<=[ /,])")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--json``."""
    parser.add_argument(
        "--json",
        action="store_true",
        help='print {"config_file": ..., "settings": {"server.port": {"value", "source"}}}',
    )


def run_loaded(args: argparse.Namespace, loaded: LoadedSettings) -> int:
    """Print the settings as ``name = value  (source)`` lines within 80 columns, or as JSON.

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

    from hybrid.settings.sources import SECRET_MASK

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
    value_indent = " " * (name_width + len(" = "))
    lines = wrap(_config_file_line(loaded), first="", rest="  ")
    lines.append("")
    for name, value in shown.items():
        source = f"({loaded.sources.get(name, 'default')})"
        setting = wrap(value, first=f"{name:<{name_width}} = ", rest=value_indent)
        if len(setting[-1]) + 2 + len(source) <= WIDTH:
            setting[-1] += f"  {source}"
        else:
            setting += wrap(source, first=SOURCE_INDENT, rest=SOURCE_INDENT + " ")
        lines += setting
    out.write("\n".join(lines) + "\n")


def wrap(text: str, *, first: str, rest: str, width: int = WIDTH) -> list[str]:
    """Wrap ``text`` into lines of at most ``width`` columns.

    Lines break after a space, a slash or a comma where possible, and inside a word only when
    the word alone is longer than a line; spaces at a break are dropped.

    Args:
        text: One line of text.
        first: Printed before the first line (a name, an indent).
        rest: Printed before every later line.
        width: The longest line allowed; it must leave room after ``first`` and ``rest``.

    Returns:
        The lines, at least one.
    """
    lines: list[str] = []
    line, empty = first, True
    for piece in _BREAK_AFTER.split(text):
        if not empty and len(line) + len(piece.rstrip()) > width:
            lines.append(line.rstrip())
            line, empty = rest, True
        while len(line) + len(piece.rstrip()) > width:
            room = max(width - len(line), 1)
            lines.append(line + piece[:room])
            line, piece = rest, piece[room:]
        if piece:
            line, empty = line + piece, False
    lines.append(line.rstrip())
    return lines


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
