"""Read a ``.env`` file's ``PREFIX_*`` variables, refusing what would silently lose a setting.

python-dotenv skips a line it cannot parse with a warning of its own, reads a bare ``NAME``
(no ``=``) as a name without a value that it then drops, and fails with a
``UnicodeDecodeError`` on a file that is not UTF-8; here each becomes a
:class:`~hybrid.errors.ConfigError` naming the file (and the line), except for an odd line that
does not concern the prefix, which may belong to another tool and is only logged (a bare
``NAME`` of another tool is skipped silently, as python-dotenv does).
"""

from __future__ import annotations

import io
import logging
import shlex
from pathlib import Path

from hybrid.errors import ConfigError

_log = logging.getLogger(__name__)


def read_dotenv(
    path: Path,
    *,
    prefix: str,
    delimiter: str,
    environment_only: frozenset[str] = frozenset(),
) -> dict[str, str]:
    """Read the ``PREFIX_*`` variables of a ``.env`` file.

    A line that is not ``NAME=value`` is an error when it mentions ``PREFIX`` (a setting would
    be silently lost) and only a logged warning otherwise, since the file may be another
    tool's; a bare ``PREFIX_NAME`` without ``=`` is an error too.  Whether each name is a
    setting is left to the caller (:func:`hybrid.settings.sources.refuse_unknown_names`), so
    that misspelt names here and in the environment are reported together.

    Args:
        path: The ``.env`` file; it must exist.
        prefix: The variable prefix (``HYBRID_``).
        delimiter: The section/field separator in names (``__``), for the example in errors.
        environment_only: ``PREFIX_*`` names, upper case, that hybrid reads from the process
            environment only (``HYBRID_CONFIG``, read before this file): a line setting one
            would do nothing, so it is refused.

    Returns:
        The file's ``PREFIX_*`` variables, name as written to value (empty values included).

    Raises:
        ConfigError: The file cannot be read or is not UTF-8; a line mentioning ``PREFIX``
            cannot be parsed; a ``PREFIX_*`` line has no ``=``; or a line sets a name of
            ``environment_only`` to a value.
    """
    from dotenv import dotenv_values
    from dotenv.parser import parse_stream

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
        name, value = binding.key or "", binding.value
        where = f".env file {path.absolute()}, line {binding.original.line}"
        # A bare PREFIX_NAME parses, but as a name without a value that would be dropped.
        bare = value is None and name.lower().startswith(prefix.lower())
        if binding.error or bare:
            if prefix.lower() in statement.lower():
                raise ConfigError(
                    f"cannot parse {where}: {statement.strip()!r}; write it as NAME=value, "
                    f"e.g. {prefix}SERVER{delimiter}PORT=9000, and close any quote you open"
                )
            _log.warning("skipping %s: %r is not NAME=value", where, statement.strip())
            continue
        if value and name.upper() in environment_only:
            raise ConfigError(
                f"{name} in {where} has no effect: hybrid reads {name} from the environment "
                f"only, before the .env file; set it there instead "
                f"(export {name}={shlex.quote(value)}) and remove the line"
            )
        parsed.append(statement)
    # Only the parsed statements go to python-dotenv, which would warn about the others again.
    return {
        name: value
        for name, value in dotenv_values(stream=io.StringIO("".join(parsed))).items()
        if value is not None and name.lower().startswith(prefix.lower())
    }
