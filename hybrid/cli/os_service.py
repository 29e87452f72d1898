"""Installing, removing and asking after ``hybrid serve`` as an operating-system service.

:class:`ServiceLayout` says where a platform keeps the service's file and which commands load,
start, stop and query it (systemd's ``systemctl``, launchd's ``launchctl``);
:func:`install_service`, :func:`uninstall_service` and :func:`service_state` do the work with
those, running commands through a :data:`Runner` (:func:`run_command` runs real programs; a
program that is not installed is reported, with the commands to run by hand).

Paths, user ids and the platform come in as arguments, so every platform's behaviour can be
exercised on any machine.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TextIO

from hybrid.cli.service_units import LAUNCHD_LABEL, SYSTEMD_UNIT_NAME
from hybrid.errors import ConfigError, HybridError

Platform = Literal["linux", "macos"]

_PLATFORMS: dict[str, Platform] = {"linux": "linux", "darwin": "macos"}
_COMMAND_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class CommandResult:
    """How a command ended.

    Attributes:
        returncode: Its exit status.
        output: Its standard output and error, stripped.
    """

    returncode: int
    output: str


Runner = Callable[[Sequence[str]], "CommandResult | None"]
"""Runs a command; None when its program is not installed."""


@dataclass(frozen=True)
class ServiceCommand:
    """A command the service manager is given.

    Attributes:
        argv: The program and its arguments.
        may_fail: Failing is expected (stopping a job that is not loaded) and only reported.
    """

    argv: tuple[str, ...]
    may_fail: bool = False

    def __str__(self) -> str:
        return " ".join(self.argv)


@dataclass(frozen=True)
class ServiceLayout:
    """Where one platform keeps the service, and how its service manager is driven.

    Attributes:
        platform: ``linux`` (systemd) or ``macos`` (launchd).
        system: A system service (boot, root to install) rather than the user's (login).
        unit_path: The unit file or property list.
        environment_path: The 0600 file of carried variables.
        uid: The user id whose launchd domain (``gui/<uid>``) holds a macOS agent.
    """

    platform: Platform
    system: bool
    unit_path: Path
    environment_path: Path
    uid: int

    @property
    def manager(self) -> str:
        """The program that drives the service manager: ``systemctl`` or ``launchctl``."""
        return "systemctl" if self.platform == "linux" else "launchctl"

    @property
    def name(self) -> str:
        """The service's name for its manager: the unit's name or launchd's ``domain/label``."""
        if self.platform == "linux":
            return SYSTEMD_UNIT_NAME
        domain = "system" if self.system else f"gui/{self.uid}"
        return f"{domain}/{LAUNCHD_LABEL}"

    def start_commands(self, *, reinstall: bool) -> list[ServiceCommand]:
        """Commands that load the written file and start the service (again, when ``reinstall``)."""
        if self.platform == "linux":
            commands = [
                self._systemctl("daemon-reload"),
                self._systemctl("enable", "--now", SYSTEMD_UNIT_NAME),
            ]
            if reinstall:  # enable --now leaves a running service on its old command line
                commands.append(self._systemctl("restart", SYSTEMD_UNIT_NAME))
            return commands
        domain = self.name.rsplit("/", 1)[0]
        commands = [ServiceCommand(("launchctl", "bootout", self.name), may_fail=True)]
        commands.append(ServiceCommand(("launchctl", "bootstrap", domain, str(self.unit_path))))
        return commands if reinstall else commands[1:]

    def stop_commands(self) -> list[ServiceCommand]:
        """Commands that stop the service and stop it starting, before its file is removed."""
        if self.platform == "linux":
            return [self._systemctl("disable", "--now", SYSTEMD_UNIT_NAME, may_fail=True)]
        return [ServiceCommand(("launchctl", "bootout", self.name), may_fail=True)]

    def forget_commands(self) -> list[ServiceCommand]:
        """Commands run after the file is removed, so the manager forgets it."""
        if self.platform == "linux":
            return [self._systemctl("daemon-reload", may_fail=True)]
        return []

    def state_command(self) -> ServiceCommand:
        """The command whose answer says whether the service runs."""
        if self.platform == "linux":
            return self._systemctl("is-active", SYSTEMD_UNIT_NAME)
        return ServiceCommand(("launchctl", "print", self.name))

    def logs_hint(self) -> str:
        """How to read the service's output."""
        if self.platform == "linux":
            scope = "" if self.system else "--user "
            return f"journalctl {scope}-u {SYSTEMD_UNIT_NAME} -f"
        return f"the files named StandardOutPath and StandardErrorPath in {self.unit_path}"

    def _systemctl(self, *args: str, may_fail: bool = False) -> ServiceCommand:
        scope = () if self.system else ("--user",)
        return ServiceCommand(("systemctl", *scope, *args), may_fail=may_fail)


def platform_of(sys_platform: str) -> Platform:
    """Map ``sys.platform`` to a platform hybrid can install a service on.

    Raises:
        ConfigError: Neither Linux nor macOS; the message says how to run the server instead.
    """
    platform = _PLATFORMS.get(sys_platform) or (
        "linux" if sys_platform.startswith("linux") else None
    )
    if platform is None:
        raise ConfigError(
            f"`hybrid service` installs a systemd unit (Linux) or a launchd agent (macOS); "
            f"this platform is {sys_platform!r}. Run `hybrid serve` under this system's own "
            f"service manager instead (on Windows, the Task Scheduler or NSSM)."
        )
    return platform


def layout_for(
    platform: Platform,
    *,
    system: bool,
    user_home: Path,
    config_home: Path,
    hybrid_config_dir: Path,
    uid: int,
) -> ServiceLayout:
    """Return where ``platform`` keeps the service's files.

    Args:
        platform: ``linux`` or ``macos``.
        system: A system service instead of the user's.
        user_home: The user's home folder (``~``).
        config_home: ``$XDG_CONFIG_HOME`` or ``~/.config`` (Linux user units live below it).
        hybrid_config_dir: hybrid's config folder, where the environment file goes.
        uid: The user's id.
    """
    if platform == "linux":
        folder = Path("/etc/systemd/system") if system else config_home / "systemd" / "user"
        unit = folder / SYSTEMD_UNIT_NAME
    else:
        folder = Path("/Library/LaunchDaemons") if system else user_home / "Library/LaunchAgents"
        unit = folder / f"{LAUNCHD_LABEL}.plist"
    return ServiceLayout(
        platform=platform,
        system=system,
        unit_path=unit,
        environment_path=hybrid_config_dir / "service.env",
        uid=uid,
    )


def run_command(argv: Sequence[str]) -> CommandResult | None:
    """Run a command found on ``PATH`` and wait for it (at most a minute).

    Returns:
        Its exit status and output, or None when its program is not installed.
    """
    try:
        done = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=_COMMAND_TIMEOUT_S, check=False
        )
    except FileNotFoundError:
        return None
    except subprocess.TimeoutExpired:
        return CommandResult(124, f"no answer within {_COMMAND_TIMEOUT_S:.0f} s")
    except OSError as exc:
        return CommandResult(126, str(exc))
    return CommandResult(done.returncode, (done.stdout + done.stderr).strip())


def install_service(
    layout: ServiceLayout,
    unit_text: str,
    environment_text: str,
    *,
    runner: Runner,
    out: TextIO,
    log_dir: Path | None = None,
) -> None:
    """Write the service's files, then load and start it.

    Args:
        layout: Where the files go and which commands start the service.
        unit_text: The unit file or property list.
        environment_text: The environment file (written with mode 0600).
        runner: Runs the service manager's commands.
        out: Where progress is reported.
        log_dir: A folder to create for the service's log files (launchd does not).

    Raises:
        HybridError: A file cannot be written (for a system service: not run as root), or
            the service manager refused a command; the message says what to do.
    """
    reinstall = layout.unit_path.exists()
    # The unit first: a system service's folder needs root, and that should fail before
    # anything is written.  The unit reads the environment file only if it exists.
    _write(layout.unit_path, unit_text, mode=0o644, layout=layout)
    _write(layout.environment_path, environment_text, mode=0o600, layout=layout)
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
    print(f"wrote {layout.unit_path}", file=out)
    print(f"wrote {layout.environment_path} (mode 0600: the service's variables)", file=out)
    commands = layout.start_commands(reinstall=reinstall)
    if not _run_all(commands, runner, out, strict=True, unit_path=layout.unit_path):
        return
    print(f"hybrid service {'reinstalled' if reinstall else 'installed'} and started", file=out)
    print(f"logs: {layout.logs_hint()}", file=out)
    if layout.platform == "linux" and not layout.system:
        print(
            "a user service starts at login; to start it at boot, before you log in, run "
            "`loginctl enable-linger $USER`",
            file=out,
        )


def uninstall_service(layout: ServiceLayout, *, runner: Runner, out: TextIO) -> bool:
    """Stop the service, stop it starting, and remove its files.

    Args:
        layout: Where the files are and which commands stop the service.
        runner: Runs the service manager's commands; their failures are reported, not raised.
        out: Where progress is reported.

    Returns:
        Whether a service was installed (False: nothing to do, and it says so).

    Raises:
        HybridError: A file cannot be removed (for a system service: not run as root).
    """
    if not layout.unit_path.exists():
        print(f"hybrid service is not installed (no {layout.unit_path}); nothing to do", file=out)
        _remove(layout.environment_path, out)
        return False
    _run_all(layout.stop_commands(), runner, out, strict=False, unit_path=layout.unit_path)
    _remove(layout.unit_path, out)
    _remove(layout.environment_path, out)
    _run_all(layout.forget_commands(), runner, out, strict=False, unit_path=layout.unit_path)
    print("hybrid service uninstalled", file=out)
    return True


def service_state(layout: ServiceLayout, runner: Runner) -> str:
    """Ask the service manager whether the service runs.

    Returns:
        systemd's word (``active``, ``inactive``, ``failed``, ``activating``...), launchd's
        (``running``, ``loaded``, ``not loaded``), or ``unknown (<program> not found)``.
    """
    command = layout.state_command()
    result = runner(command.argv)
    if result is None:
        return f"unknown ({layout.manager} not found)"
    if layout.platform == "linux":
        words = result.output.split()
        return words[0] if words and result.returncode in (0, 3) else f"unknown ({result.output})"
    if result.returncode != 0:
        return "not loaded"
    for line in result.output.splitlines():
        key, _, value = line.strip().partition(" = ")
        if key == "state":
            return "running" if value.strip() == "running" else "loaded"
    return "loaded"


def _run_all(
    commands: Sequence[ServiceCommand],
    runner: Runner,
    out: TextIO,
    *,
    strict: bool,
    unit_path: Path,
) -> bool:
    """Run commands in order; False when their program is missing (the rest are then printed)."""
    for index, command in enumerate(commands):
        result = runner(command.argv)
        if result is None:
            print(f"{command.argv[0]} not found; run these yourself:", file=out)
            for pending in commands[index:]:
                print(f"  {pending}", file=out)
            return False
        print(f"ran: {command}", file=out)
        if result.returncode == 0:
            continue
        detail = f"`{command}` exited {result.returncode}: {result.output or 'no output'}"
        if strict and not command.may_fail:
            raise HybridError(
                f"{detail}. The service file is written ({unit_path}); fix the problem and run "
                f"`hybrid service install` again, or run that command yourself"
            )
        print(f"  (ignored) {detail}", file=out)
    return True


def _write(path: Path, text: str, *, mode: int, layout: ServiceLayout) -> None:
    """Replace ``path`` with ``text`` in one step, with ``mode`` from the start."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            os.fchmod(fd, mode)
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                file.write(text)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    except PermissionError as exc:
        raise HybridError(_permission_message("write", path, exc, layout)) from exc
    except OSError as exc:
        raise HybridError(f"cannot write {path}: {exc.strerror or exc}") from exc


def _remove(path: Path, out: TextIO) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        return
    except PermissionError as exc:
        raise HybridError(
            f"cannot remove {path}: permission denied; a system service is removed as root "
            f"(sudo hybrid service uninstall --system)"
        ) from exc
    print(f"removed {path}", file=out)


def _permission_message(verb: str, path: Path, exc: OSError, layout: ServiceLayout) -> str:
    if layout.system:
        return (
            f"cannot {verb} {path}: {exc.strerror or 'permission denied'}. A system service "
            f"is installed as root: run `hybrid service install --system --dry-run` to see "
            f"the files and commands, then write and run them with sudo; or install a user "
            f"service without --system"
        )
    return f"cannot {verb} {path}: {exc.strerror or 'permission denied'}; check its folder's owner"
