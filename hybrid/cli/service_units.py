"""The files ``hybrid service install`` writes, rendered by pure functions.

Three files run ``hybrid serve`` as an operating-system service:

- a systemd unit (Linux): ``hybrid.service``, a user unit started at login (or at boot with
  lingering), or with ``--system`` a system unit started at boot as the installing user;
- a launchd property list (macOS): ``dev.hybrid.serve.plist``, an agent started at login, or
  with ``--system`` a daemon started at boot;
- an environment file, mode 0600, holding the variables hybrid reads that were set when the
  service was installed (``HYBRID_*``, ``OPENAI_API_KEY``, the ``api_key_env`` variables the
  config names).  Secrets live there only: the unit and the property list name the file, never
  a value.  It is written in the syntax both systemd's ``EnvironmentFile=`` and ``/bin/sh``'s
  ``.`` read (``NAME="value"`` with ``\\``, ``"``, ``$`` and backquote escaped).

Nothing here touches the file system or the environment: every input is an argument, so the
files for either platform can be rendered and checked on any machine.
"""

from __future__ import annotations

import plistlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from hybrid.errors import ConfigError

SYSTEMD_UNIT_NAME = "hybrid.service"
"""The systemd unit's name, user or system."""

LAUNCHD_LABEL = "dev.hybrid.serve"
"""The launchd job's label; its property list is ``<label>.plist``."""

RESTART_DELAY_S = 5
"""Seconds between a failed ``hybrid serve`` and its restart."""

_STOP_GRACE_S = 15
"""Seconds the service manager waits beyond ``server.shutdown_timeout_s`` before killing."""

_SYSTEMD_PLAIN = re.compile(r"^[A-Za-z0-9_@+=:,./-]+$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class ServiceSpec:
    """What the service runs and with which settings; the same for every platform.

    Attributes:
        command: The program and its arguments: ``(".../bin/hybrid", "serve", "--config", ...)``.
        home: hybrid's data folder, set as ``HYBRID_HOME`` so the service uses the same one.
        environment_file: The 0600 file holding the carried variables (secrets included).
        log_dir: Where launchd writes the service's output (systemd uses the journal).
        stop_timeout_s: Seconds a stop may take before the service manager kills the process.
        system: A system service started at boot instead of a user service started at login.
        user_name: The account a system service runs as; None runs it as root.
        extra_environment: Non-secret variables set in the unit itself, beside ``HYBRID_HOME``.
    """

    command: tuple[str, ...]
    home: Path
    environment_file: Path
    log_dir: Path
    stop_timeout_s: int = 10 + _STOP_GRACE_S
    system: bool = False
    user_name: str | None = None
    extra_environment: Mapping[str, str] = field(default_factory=lambda: {"PYTHONUNBUFFERED": "1"})

    def environment(self) -> dict[str, str]:
        """Return the variables set in the unit itself (no secrets): ``HYBRID_HOME`` and extras."""
        return {"HYBRID_HOME": str(self.home), **self.extra_environment}


def stop_timeout_for(shutdown_timeout_s: int) -> int:
    """Return how long a stop may take: the server's graceful shutdown plus a margin.

    Args:
        shutdown_timeout_s: ``server.shutdown_timeout_s``.
    """
    return shutdown_timeout_s + _STOP_GRACE_S


def render_systemd_unit(spec: ServiceSpec) -> str:
    """Render the systemd unit that runs ``spec.command``.

    Args:
        spec: What to run.

    Returns:
        The unit file's text: restarts on failure after :data:`RESTART_DELAY_S` seconds (at
        most 5 times in 5 minutes), logs to the journal, reads the environment file if it
        exists, and is wanted by ``default.target`` (``multi-user.target`` for a system unit).

    Raises:
        ConfigError: A path or argument holds a line break, which a unit file cannot carry.
    """
    lines = [
        "# Written by `hybrid service install`; `hybrid service uninstall` removes it.",
        "[Unit]",
        "Description=hybrid: local-first LLM router (OpenAI- and Anthropic-compatible API)",
        "StartLimitIntervalSec=300",
        "StartLimitBurst=5",
    ]
    if spec.system:
        lines += ["After=network-online.target", "Wants=network-online.target"]
    lines += ["", "[Service]", "Type=simple"]
    if spec.system and spec.user_name is not None:
        lines.append(f"User={_one_line(spec.user_name, 'user name')}")
    lines.append("ExecStart=" + " ".join(_systemd_word(arg) for arg in spec.command))
    for name, value in spec.environment().items():
        lines.append("Environment=" + _systemd_word(f"{name}={value}", dollar=False))
    # "-": a missing file is no error, so removing it (or never writing it) leaves a valid unit.
    env_file = _systemd_specifiers(_one_line(str(spec.environment_file), "environment file"))
    lines += [
        f"EnvironmentFile=-{env_file}",
        "Restart=on-failure",
        f"RestartSec={RESTART_DELAY_S}",
        f"TimeoutStopSec={spec.stop_timeout_s}",
        "StandardOutput=journal",
        "StandardError=journal",
        "SyslogIdentifier=hybrid",
        "",
        "[Install]",
        f"WantedBy={'multi-user.target' if spec.system else 'default.target'}",
        "",
    ]
    return "\n".join(lines)


def render_launchd_plist(spec: ServiceSpec) -> str:
    """Render the launchd property list that runs ``spec.command``.

    launchd has no environment files, so the job runs ``/bin/sh``, which reads the file (when
    it exists) and then ``exec``s the command: the secrets stay out of the property list.

    Args:
        spec: What to run.

    Returns:
        The property list's XML: runs at load, is restarted when it exits unsuccessfully
        (``KeepAlive`` / ``SuccessfulExit`` false) at most every :data:`RESTART_DELAY_S`
        seconds, and writes its output to ``serve.out.log`` and ``serve.err.log`` in
        ``spec.log_dir``.
    """
    loader = 'set -a; if [ -r "$0" ]; then . "$0"; fi; set +a; exec "$@"'
    job: dict[str, object] = {
        "Label": LAUNCHD_LABEL,
        "ProgramArguments": ["/bin/sh", "-c", loader, str(spec.environment_file), *spec.command],
        "EnvironmentVariables": spec.environment(),
        "RunAtLoad": True,
        "KeepAlive": {"SuccessfulExit": False},
        "ThrottleInterval": RESTART_DELAY_S,
        "ExitTimeOut": spec.stop_timeout_s,
        "ProcessType": "Background",
        "StandardOutPath": str(spec.log_dir / "serve.out.log"),
        "StandardErrorPath": str(spec.log_dir / "serve.err.log"),
    }
    if spec.system and spec.user_name is not None:
        job["UserName"] = spec.user_name
    return plistlib.dumps(job, sort_keys=False).decode("utf-8")


def render_environment_file(variables: Mapping[str, str]) -> str:
    """Render the environment file: a header, then one ``NAME="value"`` line per variable.

    Args:
        variables: Variable name to value; names sorted in the output.

    Returns:
        The file's text, read alike by systemd's ``EnvironmentFile=`` and ``/bin/sh``.

    Raises:
        ConfigError: A name is not a valid variable name, or a value holds a line break or a
            NUL (neither reader can carry those).
    """
    lines = [
        "# Variables for the hybrid service, written by `hybrid service install` (mode 0600:",
        "# it may hold API keys). Edit it and restart the service, or install again.",
    ]
    for name in sorted(variables):
        value = variables[name]
        if not _ENV_NAME.match(name):
            raise ConfigError(
                f"cannot carry the variable {name!r} into the service: not a valid variable "
                f"name; unset it before running `hybrid service install`"
            )
        if "\n" in value or "\r" in value or "\0" in value:
            raise ConfigError(
                f"cannot carry {name} into the service: its value holds a line break; set a "
                f"one-line value, or put that setting in the config file instead"
            )
        escaped = re.sub(r'([\\"$`])', r"\\\1", value)
        lines.append(f'{name}="{escaped}"')
    return "\n".join(lines) + "\n"


def carried_variables(environ: Mapping[str, str], key_variables: Iterable[str]) -> dict[str, str]:
    """Pick the variables the service must see to read the same settings as this shell.

    Args:
        environ: The environment ``hybrid service install`` runs in.
        key_variables: Other variables hybrid reads: the ecosystem's (``OPENAI_API_KEY``, ...)
            and each ``api_key_env`` the config names.

    Returns:
        Every non-empty ``HYBRID_*`` variable except ``HYBRID_CONFIG`` and ``HYBRID_HOME``
        (the service gets those as ``--config`` and in the unit itself), and every non-empty
        variable named in ``key_variables``.
    """
    wanted = set(key_variables)
    skipped = {"HYBRID_CONFIG", "HYBRID_HOME"}
    return {
        name: value
        for name, value in environ.items()
        if value
        and ((name.upper().startswith("HYBRID_") and name.upper() not in skipped) or name in wanted)
    }


def systemd_arguments(exec_start: str) -> list[str]:
    """Split an ``ExecStart=`` value written by :func:`render_systemd_unit` back into words.

    Args:
        exec_start: The text after ``ExecStart=``.

    Returns:
        The program and its arguments, unquoted.
    """
    words = re.findall(r'"((?:[^"\\]|\\.)*)"|(\S+)', exec_start)
    return [
        _systemd_unescape(re.sub(r"\\(.)", r"\1", quoted)) if quoted else _systemd_unescape(plain)
        for quoted, plain in words
    ]


def _systemd_word(word: str, *, dollar: bool = True) -> str:
    """Quote one word for a unit file: ``%`` (and, in ExecStart, ``$``) doubled; spaces quoted."""
    word = _systemd_specifiers(_one_line(word, "argument"))
    if dollar:
        word = word.replace("$", "$$")
    if _SYSTEMD_PLAIN.match(word):
        return word
    return '"' + re.sub(r'([\\"])', r"\\\1", word) + '"'


def _systemd_unescape(word: str) -> str:
    return word.replace("$$", "$").replace("%%", "%")


def _systemd_specifiers(text: str) -> str:
    return text.replace("%", "%%")


def _one_line(text: str, what: str) -> str:
    if "\n" in text or "\r" in text:
        raise ConfigError(
            f"the {what} {text!r} holds a line break, which a service file cannot carry; "
            f"use a path or value without one"
        )
    return text
