"""The ``[server]`` settings that decide who may call: ``api_key``, ``allowed_hosts`` and
``allowed_origins``; a value that would not protect what the user thinks it protects is a
configuration error that says what to do."""

from __future__ import annotations

from pathlib import Path

import pytest

from hybrid.errors import ConfigError
from hybrid.settings import Settings, load_settings


def load(**environ: str) -> Settings:
    return load_settings(environ=environ, dotenv_file=None).settings


@pytest.mark.parametrize(
    "key",
    ["s3cret", "fifteen-chars-k", " " * 20, "a key with spaces in it", "\tsixteen-chars-k\n"],
    ids=["short", "15-chars", "whitespace", "inner-spaces", "padded"],
)
def test_a_weak_api_key_is_refused_with_what_to_do(key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(HYBRID_SERVER__API_KEY=key)

    message = str(caught.value)
    assert message.startswith("invalid setting server.api_key = **********")
    assert "at least 16 characters and no whitespace" in message
    assert "secrets.token_urlsafe" in message
    if key.strip():
        assert key.strip() not in message


def test_a_key_of_16_characters_is_accepted() -> None:
    settings = load(HYBRID_SERVER__API_KEY="sixteen-chars-k!")
    assert settings.server.api_key is not None
    assert settings.server.api_key.get_secret_value() == "sixteen-chars-k!"


def test_the_weak_key_check_covers_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[server]\napi_key = "hunter2"\n')
    with pytest.raises(ConfigError, match="at least 16 characters"):
        load_settings(environ={}, dotenv_file=None, config_file=config)


def test_origins_are_read_as_browsers_send_them() -> None:
    settings = load(
        HYBRID_SERVER__ALLOWED_ORIGINS=(
            '["HTTP://LocalHost:3000/", "https://app.example:443", "http://[::1]:8000", "*"]'
        )
    )
    assert settings.server.allowed_origins == [
        "http://localhost:3000",
        "https://app.example",
        "http://[::1]:8000",
        "*",
    ]


@pytest.mark.parametrize(
    "origin",
    [
        "localhost:3000",
        "http://localhost:3000/app",
        "app.example",
        "http://:3000",
        "http://user@app.example",
        "http://app.example:port",
    ],
)
def test_something_that_is_no_origin_is_refused(origin: str) -> None:
    with pytest.raises(ConfigError, match=r"is not an origin.*'http://localhost:3000'"):
        load(HYBRID_SERVER__ALLOWED_ORIGINS=f'["{origin}"]')


def test_hosts_are_names_not_urls() -> None:
    settings = load(HYBRID_SERVER__ALLOWED_HOSTS='["Hybrid.LAN", "[fd00::1]"]')
    assert settings.server.allowed_hosts == ["hybrid.lan", "fd00::1"]
    with pytest.raises(ConfigError, match="is not a host name"):
        load(HYBRID_SERVER__ALLOWED_HOSTS='["http://hybrid.lan"]')


def test_by_default_no_page_and_no_other_name_is_allowed() -> None:
    server = load().server
    assert (server.allowed_hosts, server.allowed_origins, server.api_key) == ([], [], None)
