"""The files `hybrid service install` writes, rendered for both platforms on any machine, and the
service managers driven through their real command lines (fake programs on PATH)."""

from __future__ import annotations

import dataclasses
import getpass
import io
import os
import plistlib
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from hybrid.cli.os_service import (
    CommandResult,
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
    systemd_arguments,
)
from hybrid.errors import ConfigError, HybridError


def spec(tmp_path: Path, *command: str, system: bool = False) -> ServiceSpec:
    return ServiceSpec(
        command=command or (sys.executable, "-m", "hybrid", "serve"),
        home=tmp_path / "data home",
        environment_file=tmp_path / "config" / "service.env",
        log_dir=tmp_path / "data home" / "logs",
        system=system,
        user_name="alice" if system else None,
    )


def unit_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


# --- systemd ------------------------------------------------------------------------------------


def test_user_unit_restarts_on_failure_logs_to_the_journal_and_starts_at_login(
    tmp_path: Path,
) -> None:
    lines = unit_lines(render_systemd_unit(spec(tmp_path)))

    assert f"ExecStart={sys.executable} -m hybrid serve" in lines
    assert "Restart=on-failure" in lines
    assert "RestartSec=5" in lines
    assert "StandardOutput=journal" in lines and "StandardError=journal" in lines
    assert "WantedBy=default.target" in lines
    assert f"EnvironmentFile=-{tmp_path}/config/service.env" in lines
    assert f'Environment="HYBRID_HOME={tmp_path}/data home"' in lines
    assert not [line for line in lines if line.startswith("User=")]


def test_system_unit_runs_as_the_user_at_boot_after_the_network(tmp_path: Path) -> None:
    lines = unit_lines(render_systemd_unit(spec(tmp_path, system=True)))

    assert "User=alice" in lines
    assert "WantedBy=multi-user.target" in lines
    assert "After=network-online.target" in lines


def test_exec_start_quotes_spaces_percent_and_dollar(tmp_path: Path) -> None:
    command = ("/opt/my tools/hybrid", "serve", "--config", "/cfg/100%/a$HOME.toml")
    text = render_systemd_unit(spec(tmp_path, *command))
    [exec_start] = [ln for ln in text.splitlines() if ln.startswith("ExecStart=")]

    # systemd would expand %/ and $HOME; doubled, they reach the program as written.
    assert "%%" in exec_start and "$$HOME" in exec_start
    assert systemd_arguments(exec_start.removeprefix("ExecStart=")) == list(command)


def test_a_line_break_in_an_argument_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="line break"):
        render_systemd_unit(spec(tmp_path, "/bin/hybrid", "serve", "--config", "a\nb"))


def verify_complaints(unit: Path) -> list[str]:
    """What `systemd-analyze verify` says about the unit file.  It exits 0 even for settings it
    ignores, and reports those on lines naming the file."""
    done = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    lines = (done.stdout + done.stderr).splitlines()
    complaints = [line for line in lines if str(unit) in line]
    if done.returncode != 0:
        complaints.append(f"exit {done.returncode}: {lines}")
    return complaints


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed here"
)
@pytest.mark.parametrize("system", [False, True], ids=["user", "system"])
def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path, system: bool) -> None:
    unit = tmp_path / "hybrid.service"
    # A real executable and user, with a space in the data folder's path.
    service = spec(tmp_path, sys.executable, "-m", "hybrid", "serve", system=system)
    if system:
        service = dataclasses.replace(service, user_name=getpass.getuser())
    unit.write_text(render_systemd_unit(service))

    assert verify_complaints(unit) == []


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed here"
)
def test_systemd_analyze_verify_would_catch_a_broken_unit(tmp_path: Path) -> None:
    unit = tmp_path / "hybrid.service"
    text = render_systemd_unit(spec(tmp_path, sys.executable, "-m", "hybrid", "serve"))
    unit.write_text(text.replace("Restart=on-failure", "Restart=sometimes"))

    assert verify_complaints(unit) != []


# --- launchd ------------------------------------------------------------------------------------


def test_launchd_agent_runs_at_load_and_is_kept_alive_after_a_failure(tmp_path: Path) -> None:
    job = plistlib.loads(render_launchd_plist(spec(tmp_path)).encode())

    assert job["Label"] == "dev.hybrid.serve"
    assert job["RunAtLoad"] is True
    assert job["KeepAlive"] == {"SuccessfulExit": False}
    assert job["ProgramArguments"][-4:] == [sys.executable, "-m", "hybrid", "serve"]
    assert job["EnvironmentVariables"]["HYBRID_HOME"] == str(tmp_path / "data home")
    assert job["StandardOutPath"] == str(tmp_path / "data home" / "logs" / "serve.out.log")
    assert job["StandardErrorPath"] == str(tmp_path / "data home" / "logs" / "serve.err.log")
    assert "UserName" not in job


def test_launchd_daemon_names_its_user(tmp_path: Path) -> None:
    job = plistlib.loads(render_launchd_plist(spec(tmp_path, system=True)).encode())

    assert job["UserName"] == "alice"


def test_launchd_job_reads_the_environment_file_through_sh(tmp_path: Path) -> None:
    tricky = {"OPENAI_API_KEY": 'sk-"quoted" $HOME `id` \\ end', "HYBRID_LOG_LEVEL": "debug"}
    service = spec(tmp_path, "/usr/bin/env")
    service.environment_file.parent.mkdir(parents=True)
    service.environment_file.write_text(render_environment_file(tricky))
    job = plistlib.loads(render_launchd_plist(service).encode())

    # What launchd would run, with the environment it would set.
    done = subprocess.run(
        job["ProgramArguments"],
        env=job["EnvironmentVariables"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )

    seen = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    assert seen["OPENAI_API_KEY"] == tricky["OPENAI_API_KEY"]
    assert seen["HYBRID_LOG_LEVEL"] == "debug"
    assert seen["HYBRID_HOME"] == str(tmp_path / "data home")


def test_launchd_job_starts_without_the_environment_file(tmp_path: Path) -> None:
    job = plistlib.loads(render_launchd_plist(spec(tmp_path, "/usr/bin/env")).encode())

    done = subprocess.run(job["ProgramArguments"], env={}, capture_output=True, timeout=30)

    assert done.returncode == 0


# --- the environment file -----------------------------------------------------------------------


def test_environment_file_refuses_a_value_with_a_line_break() -> None:
    with pytest.raises(ConfigError, match=r"OPENAI_API_KEY.*line break"):
        render_environment_file({"OPENAI_API_KEY": "sk-1\nsk-2"})


def test_environment_file_refuses_a_name_that_is_no_variable() -> None:
    with pytest.raises(ConfigError, match="not a valid variable name"):
        render_environment_file({"MY-KEY": "x"})


def test_carried_variables_are_hybrids_and_the_named_keys_only() -> None:
    environ = {
        "HYBRID_LOG_LEVEL": "debug",
        "hybrid_server__port": "9000",
        "HYBRID_CONFIG": "/elsewhere.toml",
        "HYBRID_HOME": "/data",
        "HYBRID_EMPTY": "",
        "OPENAI_API_KEY": "sk-1",
        "GROQ_KEY": "gsk-2",
        "AWS_SECRET_ACCESS_KEY": "not hybrid's",
        "PATH": "/usr/bin",
    }

    carried = carried_variables(environ, ["OPENAI_API_KEY", "GROQ_KEY", "ANTHROPIC_API_KEY"])

    assert carried == {
        "HYBRID_LOG_LEVEL": "debug",
        "hybrid_server__port": "9000",
        "OPENAI_API_KEY": "sk-1",
        "GROQ_KEY": "gsk-2",
    }


# --- platforms and layouts ----------------------------------------------------------------------


def test_platforms() -> None:
    assert platform_of("linux") == "linux"
    assert platform_of("darwin") == "macos"
    with pytest.raises(ConfigError) as caught:
        platform_of("win32")
    message = str(caught.value)
    assert "'win32'" in message and "systemd" in message and "launchd" in message


def test_layouts(tmp_path: Path) -> None:
    common = {
        "user_home": tmp_path,
        "config_home": tmp_path / "xdg",
        "hybrid_config_dir": tmp_path / "cfg",
        "uid": 501,
    }
    linux = layout_for("linux", system=False, **common)  # type: ignore[arg-type]
    mac = layout_for("macos", system=False, **common)  # type: ignore[arg-type]
    mac_system = layout_for("macos", system=True, **common)  # type: ignore[arg-type]

    assert linux.unit_path == tmp_path / "xdg" / "systemd" / "user" / "hybrid.service"
    assert layout_for("linux", system=True, **common).unit_path == Path(  # type: ignore[arg-type]
        "/etc/systemd/system/hybrid.service"
    )
    assert mac.unit_path == tmp_path / "Library" / "LaunchAgents" / "dev.hybrid.serve.plist"
    assert mac.name == "gui/501/dev.hybrid.serve"
    assert mac_system.name == "system/dev.hybrid.serve"
    assert linux.environment_path == tmp_path / "cfg" / "service.env"


# --- driving launchd through a fake launchctl ---------------------------------------------------


@pytest.fixture
def fake_launchctl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A `launchctl` on PATH that records its arguments and answers `print` as a running job."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "launchctl.log"
    script = bin_dir / "launchctl"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> "{log}"\n'
        'if [ "$1" = print ]; then printf "\\tstate = running\\n\\tpid = 42\\n"; fi\n'
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return log


def test_launchd_install_bootstraps_and_uninstall_boots_out(
    tmp_path: Path, fake_launchctl: Path
) -> None:
    layout = layout_for(
        "macos",
        system=False,
        user_home=tmp_path / "home",
        config_home=tmp_path / "home" / ".config",
        hybrid_config_dir=tmp_path / "home" / "cfg",
        uid=501,
    )
    service = spec(tmp_path)
    out = io.StringIO()

    install_service(
        layout,
        render_launchd_plist(service),
        render_environment_file({"OPENAI_API_KEY": "sk-secret"}),
        runner=run_command,
        out=out,
        log_dir=service.log_dir,
    )
    install_service(layout, render_launchd_plist(service), "", runner=run_command, out=out)

    assert plistlib.loads(layout.unit_path.read_bytes())["Label"] == "dev.hybrid.serve"
    assert service.log_dir.is_dir()
    assert service_state(layout, run_command) == "running"
    assert uninstall_service(layout, runner=run_command, out=out)
    assert not layout.unit_path.exists() and not layout.environment_path.exists()
    assert fake_launchctl.read_text().splitlines() == [
        f"bootstrap gui/501 {layout.unit_path}",
        "bootout gui/501/dev.hybrid.serve",  # the reinstall unloads the old job first
        f"bootstrap gui/501 {layout.unit_path}",
        "print gui/501/dev.hybrid.serve",
        "bootout gui/501/dev.hybrid.serve",
    ]


# --- when the service manager is missing or refuses ---------------------------------------------


def linux_layout(tmp_path: Path, *, system: bool = False):  # type: ignore[no-untyped-def]
    return layout_for(
        "linux",
        system=system,
        user_home=tmp_path,
        config_home=tmp_path / ".config",
        hybrid_config_dir=tmp_path / ".config" / "hybrid",
        uid=1000,
    )


def test_without_systemctl_the_files_are_written_and_the_commands_printed(tmp_path: Path) -> None:
    layout = linux_layout(tmp_path)
    out = io.StringIO()

    install_service(layout, "[Unit]\n", "", runner=lambda argv: None, out=out)

    assert layout.unit_path.is_file()
    assert stat.S_IMODE(layout.environment_path.stat().st_mode) == 0o600
    text = out.getvalue()
    assert "systemctl not found; run these yourself:" in text
    assert "systemctl --user daemon-reload" in text
    assert "systemctl --user enable --now hybrid.service" in text


def test_a_refused_command_is_an_error_naming_it_and_the_unit(tmp_path: Path) -> None:
    layout = linux_layout(tmp_path)

    def refuse_enable(argv: object) -> CommandResult:
        refused = "enable" in str(argv)
        return CommandResult(1 if refused else 0, "Failed to connect to bus" if refused else "")

    with pytest.raises(HybridError) as caught:
        install_service(layout, "[Unit]\n", "", runner=refuse_enable, out=io.StringIO())

    message = str(caught.value)
    assert "systemctl --user enable --now hybrid.service" in message
    assert "Failed to connect to bus" in message and str(layout.unit_path) in message


def test_uninstall_goes_on_when_systemctl_refuses(tmp_path: Path) -> None:
    layout = linux_layout(tmp_path)
    install_service(layout, "[Unit]\n", "", runner=lambda argv: None, out=io.StringIO())
    out = io.StringIO()

    assert uninstall_service(layout, runner=lambda argv: CommandResult(1, "no bus"), out=out)

    assert not layout.unit_path.exists()
    assert "(ignored)" in out.getvalue() and "no bus" in out.getvalue()


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_a_system_unit_without_root_says_how_to_install_it(tmp_path: Path) -> None:
    layout = linux_layout(tmp_path, system=True)  # /etc/systemd/system

    with pytest.raises(HybridError, match=r"--system --dry-run.*sudo"):
        install_service(layout, "[Unit]\n", "", runner=lambda argv: None, out=io.StringIO())

    assert not layout.environment_path.exists()
