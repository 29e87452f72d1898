"""Read a ``.env`` file into a settings layer, refusing what would silently lose a setting.

python-dotenv skips a line it cannot parse with a warning of its own and fails with a
``UnicodeDecodeError`` on a file that is not UTF-8; here both become a
:class:`~hybrid.errors.ConfigError` naming the file (and the line), except for an odd line that
does not mention the prefix, which may belong to another tool and is only logged.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

from pydantic import BaseModel

from hybrid.errors import ConfigError
from hybrid.settings.sources import Layer, read_env

_log = logging.getLogger(__name__)


def read_dotenv(
    path: Path,
    settings_cls: type[BaseModel],
    *,
    prefix: str,
    delimiter: str,
    ignored: frozenset[str] = frozenset(),
) -> Layer:
    """Read the ``PREFIX_*`` variables of a ``.env`` file into a layer.

    A line that is not ``NAME=value`` is an error when it mentions ``PREFIX`` (a setting would
    be silently lost) and only a logged warning otherwise, since the file may be another
    tool's.

    Args:
        path: The ``.env`` file; it must exist.
        settings_cls: The settings model.
        prefix: The variable prefix (``HYBRID_``).
        delimiter: The section/field separator in names (``__``).
        ignored: ``PREFIX_*`` names, upper case, that are not settings (see :func:`read_env`).

    Returns:
        The file's values with source ``".env <absolute path>"``.

    Raises:
        ConfigError: The file cannot be read or is not UTF-8; a line mentioning ``PREFIX``
            cannot be parsed; a ``PREFIX_*`` name is no setting; or a JSON value is malformed.
    """
    from dotenv import dotenv_values
    from dotenv.parser import parse_stream

    source = f".env {path.absolute()}"
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"cannot read .env file {path.absolute()}: {exc}; check that it is a readable "
            f"UTF-8 file, or remove it from the working folder"
        ) from exc
    parsed: list[str] = []
    for binding in parse_stream(io.StringIO(text)):
        statement = binding.original.string
        if not binding.error:
            parsed.append(statement)
            continue
        where = f".env file {path.absolute()}, line {binding.original.line}"
        if prefix.lower() in statement.lower():
            raise ConfigError(
                f"cannot parse {where}: {statement.strip()!r}; write it as NAME=value, "
                f"e.g. {prefix}SERVER{delimiter}PORT=9000, and close any quote you open"
            )
        _log.warning("skipping %s: %r is not NAME=value", where, statement.strip())
    # Only the parsed statements go to python-dotenv, which would warn about the others again.
    values = {
        name: value
        for name, value in dotenv_values(stream=io.StringIO("".join(parsed))).items()
        if value is not None
    }
    return read_env(
        values,
        settings_cls,
        prefix=prefix,
        delimiter=delimiter,
        source=lambda _: source,
        ignored=ignored,
    )
