"""``hybrid service install|uninstall|status``: run ``hybrid serve`` as an operating-system service.

On Linux a systemd user unit (``~/.config/systemd/user/hybrid.service``, below
``$XDG_CONFIG_HOME`` when set) starts the server at login, restarts it when it fails and logs to
the journal; on macOS a launchd agent (``~/Library/LaunchAgents/dev.hybrid.serve.plist``) does
the same.  ``--system`` installs a system unit or launchd daemon instead, started at boot
(installing one needs root).

The service reads the settings this shell reads: the config file found now is passed as
``--config``, the data folder is set as ``HYBRID_HOME``, and the ``HYBRID_*`` variables and the
API key variables hybrid reads (``OPENAI_API_KEY``, ``ANTHROPIC_API_KEY``, each ``api_key_env``
of the config) are copied into an environment file of mode 0600 next to the config file.  The
unit names that file and holds no secret.  A ``.env`` file in the current folder is not read by
the service.

``status`` exits 0 when the service is installed and its ``/health`` answers 200, else 3 (the
code ``systemctl is-active`` and LSB init scripts use for "not running").

Rendering is in :mod:`hybrid.cli.service_units`, the service managers in
:mod:`hybrid.cli.os_service`; this module gathers the inputs and prints.
"""

from __future__ import annotations

import argparse
import ipaddress
import itertools
import os
import plistlib
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from hybrid.cli.os_service import (
    Runner,
    ServiceLayout,
    install_service,
    layout_for,
    platform_of,
    run_command,
    service_state,
    uninstall_service,
)
from hybrid.cli.service_units import (
    ServiceSpec,
    carried_variables,
    render_environment_file,
    render_launchd_plist,
    render_systemd_unit,
    stop_timeout_for,
    systemd_arguments,
)
from hybrid.errors import ConfigError

if TYPE_CHECKING:
    from hybrid.settings import LoadedSettings, Settings

HELP = "run `hybrid serve` at login or boot: service install, uninstall or status"
SETTINGS_FLAGS = {"host": "server.host", "port": "server.port"}

EXIT_NOT_RUNNING = 3
"""``status``: not installed, or installed but ``/health`` does not answer 200."""

_HEALTH_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class ServicePlan:
    """Everything ``install`` writes, decided before anything is written.

    Attributes:
        layout: Where the files go and which commands drive the service manager.
        spec: What the service runs.
        unit_text: The systemd unit or launchd property list.
        environment_text: The environment file.
        carried: Names of the variables copied into the environment file.
    """

    layout: ServiceLayout
    spec: ServiceSpec
    unit_text: str
    environment_text: str
    carried: tuple[str, ...]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the action and the flags of ``hybrid service``."""
    parser.add_argument(
        "action",
        nargs="?",
        choices=("install", "uninstall", "status"),
        default="status",
        help="install (write the unit and start it), uninstall, or status (the default)",
    )
    parser.add_argument(
        "--system",
        action="store_true",
        help="a system service started at boot (needs root) instead of the user's, at login",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print the files and the commands without writing or running anything",
    )
    parser.add_argument("--host", help="address the service listens on (default: the settings')")
    parser.add_argument("--port", type=int, help="port the service listens on (default 8642)")


def run_loaded(args: argparse.Namespace, loaded: LoadedSettings) -> int:
    """Install, remove or report the service for this platform.

    Returns:
        0 on success; for ``status``, 3 when not installed or not answering ``/health``.

    Raises:
        ConfigError: This platform has no supported service manager, or the settings would
            stop the service from starting (listening beyond loopback without an API key).
        HybridError: A file cannot be written or removed, or the service manager refused.
    """
    from hybrid.settings import default_config_file

    platform = platform_of(sys.platform)
    layout = layout_for(
        platform,
        system=bool(args.system),
        user_home=Path.home(),
        config_home=_config_home(os.environ, Path.home()),
        hybrid_config_dir=default_config_file().parent,
        uid=os.getuid(),
    )
    out = sys.stdout
    if args.action == "install":
        plan = plan_install(
            layout,
            loaded,
            environ=os.environ,
            executable=Path(sys.executable),
            host=args.host,
            port=args.port,
            user_name=_user_name() if args.system else None,
        )
        if args.dry_run:
            print_install_plan(plan, out)
            return 0
        install_service(
            layout,
            plan.unit_text,
            plan.environment_text,
            runner=run_command,
            out=out,
            log_dir=plan.spec.log_dir if platform == "macos" else None,
        )
        print(
            f"carried into the environment file: {', '.join(plan.carried) or 'nothing'}", file=out
        )
        return 0
    if args.action == "uninstall":
        if args.dry_run:
            print_uninstall_plan(layout, out)
        else:
            uninstall_service(layout, runner=run_command, out=out)
        return 0
    return report_status(
        layout, loaded.settings, host=args.host, port=args.port, runner=run_command, out=out
    )


def plan_install(
    layout: ServiceLayout,
    loaded: LoadedSettings,
    *,
    environ: Mapping[str, str],
    executable: Path,
    host: str | None,
    port: int | None,
    user_name: str | None,
) -> ServicePlan:
    """Decide the service's command line, environment and files.

    Args:
        layout: Where the files go.
        loaded: The settings as this shell reads them, with the config file found.
        environ: The environment to carry variables from.
        executable: The Python interpreter running hybrid (its ``hybrid`` script is used).
        host: ``--host`` given to ``install``, passed on to ``hybrid serve``.
        port: ``--port`` given to ``install``, passed on to ``hybrid serve``.
        user_name: The account a system service runs as.

    Returns:
        The plan; nothing is written.

    Raises:
        ConfigError: The service would listen beyond loopback without ``server.api_key``, or
            a carried value cannot be written into the files.
    """
    from hybrid.settings.cloud import ECOSYSTEM_VARIABLES

    settings = loaded.settings
    _check_exposure(settings)
    command = [*hybrid_program(executable), "serve"]
    if loaded.config_file is not None:
        command += ["--config", str(loaded.config_file)]
    if host is not None:
        command += ["--host", host]
    if port is not None:
        command += ["--port", str(port)]
    spec = ServiceSpec(
        command=tuple(command),
        home=settings.home.absolute(),
        environment_file=layout.environment_path,
        log_dir=settings.home.absolute() / "logs",
        stop_timeout_s=stop_timeout_for(settings.server.shutdown_timeout_s),
        system=layout.system,
        user_name=user_name,
    )
    carried = carried_variables(environ, [*ECOSYSTEM_VARIABLES, *_key_variables(settings)])
    render = render_systemd_unit if layout.platform == "linux" else render_launchd_plist
    return ServicePlan(
        layout=layout,
        spec=spec,
        unit_text=render(spec),
        environment_text=render_environment_file(carried),
        carried=tuple(sorted(carried)),
    )


def hybrid_program(executable: Path) -> tuple[str, ...]:
    """Return how the service starts hybrid: the ``hybrid`` script beside the interpreter, else
    ``<python> -m hybrid``; absolute, and not resolved through links (a virtualenv's python is
    one, and resolving it would leave the virtualenv)."""
    executable = executable.absolute()
    script = executable.with_name("hybrid")
    if script.is_file() and os.access(script, os.X_OK):
        return (str(script),)
    return (str(executable), "-m", "hybrid")


def print_install_plan(plan: ServicePlan, out: TextIO) -> None:
    """Print what ``install`` would write and run, without the carried variables' values."""
    layout = plan.layout
    print("# dry run: nothing is written or run", file=out)
    print(f"# {layout.unit_path}", file=out)
    out.write(plan.unit_text)
    print(f"# {layout.environment_path} (mode 0600), values not shown:", file=out)
    for name in plan.carried:
        print(f"#   {name}", file=out)
    print("# then:", file=out)
    for command in layout.start_commands(reinstall=layout.unit_path.exists()):
        print(command, file=out)


def print_uninstall_plan(layout: ServiceLayout, out: TextIO) -> None:
    """Print what ``uninstall`` would run and remove."""
    print("# dry run: nothing is removed or run", file=out)
    if not layout.unit_path.exists():
        print(f"# hybrid service is not installed (no {layout.unit_path}); nothing to do", file=out)
        return
    for command in layout.stop_commands():
        print(command, file=out)
    print(f"rm {layout.unit_path} {layout.environment_path}", file=out)
    for command in layout.forget_commands():
        print(command, file=out)


def report_status(
    layout: ServiceLayout,
    settings: Settings,
    *,
    host: str | None,
    port: int | None,
    runner: Runner,
    out: TextIO,
) -> int:
    """Print whether the service is installed, what its manager says, and whether it answers.

    Args:
        layout: Where the service's file is.
        settings: Where the server listens when the installed file does not say.
        host: ``--host`` given to ``status``: check this address instead.
        port: ``--port`` given to ``status``: check this port instead.
        runner: Runs the service manager's query.
        out: Where the report goes.

    Returns:
        0 when installed and ``/health`` answers 200, else :data:`EXIT_NOT_RUNNING`.
    """
    installed = layout.unit_path.exists()
    if installed:
        print(f"installed: yes ({layout.unit_path})", file=out)
        print(f"state: {service_state(layout, runner)}", file=out)
    else:
        print(f"installed: no (no {layout.unit_path}); `hybrid service install` adds it", file=out)
    flags = installed_serve_flags(layout) if installed else {}
    url = health_url(
        host or flags.get("--host") or settings.server.host,
        port or int(flags.get("--port") or settings.server.port),
    )
    answered, detail = check_health(url, settings)
    print(f"health: {url} {detail}", file=out)
    return 0 if installed and answered else EXIT_NOT_RUNNING


def installed_serve_flags(layout: ServiceLayout) -> dict[str, str]:
    """Read ``--host`` and ``--port`` from the installed unit's command line, when present."""
    try:
        text = layout.unit_path.read_text(encoding="utf-8")
        if layout.platform == "linux":
            line = next(
                (ln for ln in text.splitlines() if ln.startswith("ExecStart=")), "ExecStart="
            )
            words = systemd_arguments(line.removeprefix("ExecStart="))
        else:
            words = [
                str(word) for word in plistlib.loads(text.encode()).get("ProgramArguments", [])
            ]
    except (OSError, ValueError, plistlib.InvalidFileException, AttributeError):
        return {}  # unreadable or edited by hand: the settings say where the server listens
    return {flag: value for flag, value in itertools.pairwise(words) if flag.startswith("--")}


def health_url(host: str, port: int) -> str:
    """Return ``/health``'s URL for a server listening on ``host``; an any-address is reached
    on loopback."""
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    try:
        if ipaddress.ip_address(host).version == 6:
            host = f"[{host}]"
    except ValueError:
        pass  # a host name
    return f"http://{host}:{port}/health"


def check_health(url: str, settings: Settings) -> tuple[bool, str]:
    """GET ``url`` once, directly (no proxy), with a short timeout.

    Returns:
        Whether it answered 200, and a phrase saying what happened.
    """
    import httpx2

    try:
        with httpx2.Client(trust_env=False, timeout=_HEALTH_TIMEOUT_S) as client:
            response = client.get(url)
    except httpx2.HTTPError as exc:
        return False, f"does not answer ({type(exc).__name__}: {exc or 'no detail'})"
    status = ""
    try:
        body = response.json()
        if isinstance(body, dict) and "status" in body:
            status = f", status {body['status']}"
    except ValueError:
        status = ", not hybrid's JSON"
    return response.status_code == 200, f"answers HTTP {response.status_code}{status}"


def _check_exposure(settings: Settings) -> None:
    host = settings.server.host
    if settings.server.api_key is not None or _is_loopback(host):
        return
    raise ConfigError(
        f"the service would listen on {host}, which other machines can reach, without an API "
        f"key, and `hybrid serve` refuses that. Set HYBRID_SERVER__API_KEY (or server.api_key "
        f"in the config file) before installing, or listen on 127.0.0.1."
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _key_variables(settings: Settings) -> list[str]:
    """The variables named by ``api_key_env`` in ``[[cloud.providers]]`` and ``[[lan.servers]]``."""
    names = [p.api_key_env for p in settings.cloud.providers if p.api_key_env]
    lan = getattr(settings, "lan", None)  # the LAN tier's section, where this build has it
    for server in getattr(lan, "servers", None) or []:
        name = getattr(server, "api_key_env", None)
        if isinstance(name, str) and name:
            names.append(name)
    return names


def _config_home(environ: Mapping[str, str], user_home: Path) -> Path:
    """``$XDG_CONFIG_HOME`` when it is an absolute path (the XDG rule), else ``~/.config``."""
    value = environ.get("XDG_CONFIG_HOME", "")
    return Path(value) if value and Path(value).is_absolute() else user_home / ".config"


def _user_name() -> str | None:
    """The account a system service runs as: this one, or None (root) when run as root."""
    import pwd

    uid = os.getuid()
    return None if uid == 0 else pwd.getpwuid(uid).pw_name
