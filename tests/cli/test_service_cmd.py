"""`hybrid service install|uninstall|status` on Linux: the user unit, the environment file, and
systemctl driven through a fake program on PATH that records its arguments."""

from __future__ import annotations

import os
import socket
import stat
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from hybrid.cli import main
from hybrid.cli.service_units import systemd_arguments

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="installs a systemd unit: Linux only"
)

SECRET = "sk-test-not-a-real-key-0123456789"


@pytest.fixture
def unit(isolated: Path) -> Path:
    """Where the user unit goes: below $XDG_CONFIG_HOME, which the test fixture points at."""
    return isolated / "xdg-config" / "systemd" / "user" / "hybrid.service"


@pytest.fixture
def env_file(isolated: Path) -> Path:
    return isolated / "xdg-config" / "hybrid" / "service.env"


@pytest.fixture
def systemctl(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[], list[str]]:
    """A `systemctl` on PATH that records its arguments and says the service is active.

    Returns:
        A function returning the recorded calls, one string each.
    """
    bin_dir = isolated / "bin"
    bin_dir.mkdir()
    log = isolated / "systemctl.log"
    script = bin_dir / "systemctl"
    script.write_text(
        f'#!/bin/sh\necho "$*" >> "{log}"\ncase "$*" in *is-active*) echo active;; esac\n'
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return lambda: log.read_text().splitlines() if log.exists() else []


def exec_start(unit: Path) -> list[str]:
    [line] = [ln for ln in unit.read_text().splitlines() if ln.startswith("ExecStart=")]
    return systemd_arguments(line.removeprefix("ExecStart="))


def test_dry_run_prints_the_unit_and_the_commands_and_writes_nothing(
    unit: Path,
    env_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)

    assert main(["service", "install", "--dry-run", "--port", "9123"]) == 0

    out = capsys.readouterr().out
    hybrid_script = Path(sys.executable).with_name("hybrid")
    assert f"ExecStart={hybrid_script} serve --port 9123" in out
    assert "Restart=on-failure" in out and "WantedBy=default.target" in out
    assert f"# {unit}" in out
    assert "#   OPENAI_API_KEY" in out and SECRET not in out
    assert "systemctl --user daemon-reload\nsystemctl --user enable --now hybrid.service" in out
    assert not unit.exists() and not env_file.exists()


def test_install_writes_the_unit_keeps_secrets_in_a_private_file_and_starts_it(
    unit: Path,
    env_file: Path,
    isolated: Path,
    systemctl: Callable[[], list[str]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = isolated / "team.toml"
    config.write_text(
        '[[cloud.providers]]\nname = "groq"\nbase_url = "https://api.groq.com/openai/v1"\n'
        'api_key_env = "GROQ_KEY"\nmodels = ["llama-3.3-70b"]\n'
    )
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("GROQ_KEY", SECRET + "-groq")
    monkeypatch.setenv("HYBRID_SERVER__API_KEY", SECRET + "-server")
    monkeypatch.setenv("HYBRID_HOME", str(isolated / "data"))
    monkeypatch.setenv("UNRELATED_TOKEN", "not-hybrids")

    assert main(["service", "install", "--config", str(config)]) == 0

    text = unit.read_text()
    assert SECRET not in text
    assert exec_start(unit) == [
        str(Path(sys.executable).with_name("hybrid")),
        "serve",
        "--config",
        str(config),
    ]
    assert f"Environment=HYBRID_HOME={isolated}/data" in text.splitlines()
    assert f"EnvironmentFile=-{env_file}" in text.splitlines()
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    carried = env_file.read_text()
    for line in (
        f'OPENAI_API_KEY="{SECRET}"',
        f'GROQ_KEY="{SECRET}-groq"',
        f'HYBRID_SERVER__API_KEY="{SECRET}-server"',
    ):
        assert line in carried.splitlines()
    assert "UNRELATED_TOKEN" not in carried and "HYBRID_HOME" not in carried
    assert systemctl() == ["--user daemon-reload", "--user enable --now hybrid.service"]
    out = capsys.readouterr().out
    assert "installed and started" in out and "journalctl --user -u hybrid.service" in out
    assert "loginctl enable-linger" in out


def test_installing_again_restarts_the_service_on_its_new_command_line(
    unit: Path, systemctl: Callable[[], list[str]]
) -> None:
    assert main(["service", "install"]) == 0
    assert main(["service", "install", "--port", "9124"]) == 0

    assert exec_start(unit)[-2:] == ["--port", "9124"]
    assert systemctl()[-1] == "--user restart hybrid.service"


def test_uninstall_stops_disables_and_removes_then_says_there_is_nothing_left(
    unit: Path,
    env_file: Path,
    systemctl: Callable[[], list[str]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["service", "install"]) == 0
    capsys.readouterr()

    assert main(["service", "uninstall"]) == 0
    out = capsys.readouterr().out
    assert not unit.exists() and not env_file.exists()
    assert f"removed {unit}" in out and f"removed {env_file}" in out
    assert systemctl()[-2:] == ["--user disable --now hybrid.service", "--user daemon-reload"]

    calls = len(systemctl())
    assert main(["service", "uninstall"]) == 0
    assert "hybrid service is not installed" in capsys.readouterr().out
    assert len(systemctl()) == calls


def test_without_systemctl_install_says_what_to_run(
    unit: Path, isolated: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = isolated / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))

    assert main(["service", "install"]) == 0

    out = capsys.readouterr().out
    assert unit.is_file()
    assert "systemctl not found; run these yourself:" in out
    assert "  systemctl --user enable --now hybrid.service" in out


def test_status_when_not_installed_exits_3_and_says_how_to_install(
    unit: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A port held bound but not listening refuses connections, whatever else runs here (a
    # `hybrid serve` on the default 8642 would answer).
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        port = held.getsockname()[1]
        monkeypatch.setenv("HYBRID_SERVER__PORT", str(port))
        assert main(["service", "status"]) == 3

    out = capsys.readouterr().out
    assert f"installed: no (no {unit})" in out and "hybrid service install" in out
    assert f"health: http://127.0.0.1:{port}/health does not answer" in out


def test_status_reads_the_installed_port_and_sees_the_daemon_answer(
    unit: Path,
    systemctl: Callable[[], list[str]],
    serve: Callable[..., str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    base_url = serve()  # a real hybrid server on a loopback port
    port = base_url.rsplit(":", 1)[1].split("/")[0]
    assert main(["service", "install", "--port", port]) == 0
    capsys.readouterr()

    assert main(["service"]) == 0  # status is the default action

    out = capsys.readouterr().out
    assert f"installed: yes ({unit})" in out
    assert "state: active" in out
    assert f"health: http://127.0.0.1:{port}/health answers HTTP 200, status ok" in out
    assert systemctl()[-1] == "--user is-active hybrid.service"


def test_installing_a_server_reachable_from_other_machines_needs_an_api_key(
    unit: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["service", "install", "--dry-run", "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert "without an API key" in err and "HYBRID_SERVER__API_KEY" in err

    monkeypatch.setenv("HYBRID_SERVER__API_KEY", SECRET)
    assert main(["service", "install", "--dry-run", "--host", "0.0.0.0"]) == 0
    out = capsys.readouterr().out
    assert "serve --host 0.0.0.0" in out and SECRET not in out


def test_an_invalid_port_is_a_config_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["service", "install", "--dry-run", "--port", "70000"]) == 2
    assert "server.port" in capsys.readouterr().err


def test_an_unknown_action_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["service", "restart"]) == 2
    assert "invalid choice: 'restart'" in capsys.readouterr().err


def test_an_unsupported_platform_is_a_clear_error(
    unit: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "platform", "win32")

    assert main(["service", "install"]) == 2

    err = capsys.readouterr().err
    assert "this platform is 'win32'" in err and "hybrid serve" in err
    assert not unit.exists()


@pytest.mark.slow
def test_the_units_command_serves_with_the_carried_settings_and_stops_cleanly(
    unit: Path,
    env_file: Path,
    isolated: Path,
    systemctl: Callable[[], list[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import httpx2
    from server_process import free_port, start_server

    port = free_port()
    monkeypatch.setenv("HYBRID_HOME", str(isolated / "data"))
    monkeypatch.setenv("HYBRID_SERVER__API_KEY", SECRET)
    monkeypatch.setenv("HYBRID_ROUTING__CAPACITY__MAX_OTHER_CPU_PERCENT", "100")
    assert main(["service", "install", "--port", str(port)]) == 0

    # What systemd would run: the unit's Environment= lines, then its EnvironmentFile=, read
    # here by sh (the file's syntax is both's), in a bare environment from the home folder.
    environment = {
        name: value
        for line in unit.read_text().splitlines()
        if line.startswith("Environment=")
        for name, value in [line.removeprefix("Environment=").strip('"').split("=", 1)]
    }
    environment |= {"PATH": os.environ["PATH"], "HOME": str(isolated / "user-home")}
    loader = ["/bin/sh", "-c", 'set -a; . "$0"; exec "$@"', str(env_file)]
    (isolated / "user-home").mkdir(exist_ok=True)
    server = start_server(
        [*loader, *exec_start(unit)],
        port=port,
        log=isolated / "service.log",
        env=environment,
        cwd=isolated / "user-home",
        what="the service's command",
    )
    try:
        models = f"http://127.0.0.1:{port}/v1/models"
        # The API key reached the service through the environment file only.
        assert httpx2.get(models, timeout=10).status_code == 401
        authorized = {"Authorization": f"Bearer {SECRET}"}
        assert httpx2.get(models, headers=authorized, timeout=10).status_code == 200
        assert (isolated / "data").is_dir()
    finally:
        code = server.stop()
    assert code == 0, server.output(40)  # a clean stop: Restart=on-failure leaves it stopped
