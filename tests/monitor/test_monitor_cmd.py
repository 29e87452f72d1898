"""``hybrid monitor``: which daemon it watches, and that it is listed."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from hybrid.cli import main
from hybrid.cli import monitor as monitor_cmd
from hybrid.errors import ConfigError
from hybrid.monitor.client import DaemonClient
from hybrid.settings import Settings, load_settings


def settings_with(tmp_path: Path, server: str = "") -> Settings:
    config = tmp_path / "config.toml"
    config.write_text(f"[server]\n{server}\n")
    return load_settings(config_file=config).settings


def test_it_watches_the_daemon_the_settings_describe(tmp_path: Path) -> None:
    assert monitor_cmd.daemon_url(settings_with(tmp_path)) == "http://127.0.0.1:8642"
    assert (
        monitor_cmd.daemon_url(settings_with(tmp_path, 'host = "0.0.0.0"\nport = 9000'))
        == "http://127.0.0.1:9000"
    )
    assert monitor_cmd.daemon_url(settings_with(tmp_path, 'host = "::"')) == "http://[::1]:8642"
    assert (
        monitor_cmd.daemon_url(settings_with(tmp_path, 'host = "fe80::1"'))
        == "http://[fe80::1]:8642"
    )


def test_url_wins_and_must_be_http(tmp_path: Path) -> None:
    settings = settings_with(tmp_path)

    assert monitor_cmd.daemon_url(settings, "https://box.lan:8642/") == "https://box.lan:8642"
    with pytest.raises(ConfigError, match="--url must be an http:// or https:// URL"):
        monitor_cmd.daemon_url(settings, "box.lan:8642")


def test_the_command_builds_the_app_with_the_url_and_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hybrid.monitor.app import MonitorApp

    ran: list[MonitorApp] = []
    monkeypatch.setattr(MonitorApp, "run", lambda self: ran.append(self))
    monkeypatch.setenv("HYBRID_SERVER__API_KEY", "s3cret-key-for-tests")
    monkeypatch.setenv("HYBRID_SERVER__PORT", "9100")

    assert main(["monitor"]) == 0

    [app] = ran
    daemon = app._daemon
    assert isinstance(daemon, DaemonClient)
    assert daemon.url == "http://127.0.0.1:9100"
    assert daemon._http.headers["authorization"] == "Bearer s3cret-key-for-tests"


def test_a_bad_url_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["monitor", "--url", "ftp://x"]) == 2
    assert "--url must be an http:// or https:// URL" in capsys.readouterr().err


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:abc",
        "http://127.0.0.1:99999",
        "http://127.0.0.1:0",
        "http://[::1:8642",
        "http://::1:8642",
    ],
)
def test_a_bad_port_or_ipv6_host_is_a_usage_error(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from hybrid.monitor.app import MonitorApp

    monkeypatch.setattr(MonitorApp, "run", lambda self: pytest.fail("the dashboard started"))
    assert main(["monitor", "--url", url]) == 2
    err = capsys.readouterr().err
    assert "--url must be an http:// or https:// URL" in err and "Traceback" not in err
    assert monitor_cmd.daemon_url(settings_with(tmp_path), "http://[::1]:8642/") == (
        "http://[::1]:8642"
    )


def test_a_dashboard_that_crashes_exits_non_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    from hybrid.monitor.app import MonitorApp

    def crash(self: MonitorApp) -> None:
        self._return_code = 1  # what Textual sets when the app ends on an unhandled error

    monkeypatch.setattr(MonitorApp, "run", crash)
    assert main(["monitor", "--url", "http://127.0.0.1:8642"]) == 1


def test_it_is_listed_in_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "monitor" in capsys.readouterr().out
    assert isinstance(monitor_cmd.HELP, str)
    parser = argparse.ArgumentParser()
    monitor_cmd.add_arguments(parser)
    assert parser.parse_args(["--url", "http://x:1"]).url == "http://x:1"
