"""``ledger.url`` and ``ledger.instance``: a PostgreSQL URL or nothing, this daemon's name,
and the URL's password never shown by ``hybrid config`` or in a settings error."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from hybrid.cli import main
from hybrid.errors import ConfigError
from hybrid.settings import Settings, load_settings

SECRET = "pw-Zq81-secret"


def test_defaults_keep_the_sqlite_file_and_name_the_host() -> None:
    settings = Settings()
    assert settings.ledger.url is None
    assert settings.ledger.instance == socket.gethostname()


@pytest.mark.parametrize("scheme", ["postgresql", "postgres", "PostgreSQL"])
def test_a_postgresql_url_is_accepted(scheme: str) -> None:
    url = f"{scheme}://hybrid:{SECRET}@db.lan:5432/hybrid"
    settings = Settings.model_validate({"ledger": {"url": url, "instance": "edge-7"}})
    assert settings.ledger.url is not None
    assert settings.ledger.url.get_secret_value() == url
    assert settings.ledger.instance == "edge-7"
    assert SECRET not in repr(settings)


@pytest.mark.parametrize(
    "url", [f"mysql://hybrid:{SECRET}@db/hybrid", f"db.lan:5432 {SECRET}", "sqlite:///x.db"]
)
def test_another_url_is_refused_without_repeating_it(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={"HYBRID_LEDGER__URL": url}, dotenv_file=None)
    text = str(caught.value)
    assert "invalid setting ledger.url = **********" in text
    assert "(from env HYBRID_LEDGER__URL)" in text
    assert "must be a PostgreSQL URL, postgresql://user:password@host:5432/database" in text
    assert SECRET not in text


@pytest.mark.parametrize("name", ["", "two words", "x" * 65])
def test_an_instance_name_is_one_short_word(name: str, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f"[ledger]\ninstance = {json.dumps(name)}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"ledger\.instance .* must be 1 to 64 characters"):
        load_settings(config_file=config, environ={}, dotenv_file=None)


def test_hybrid_config_masks_the_url(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HYBRID_LEDGER__URL", f"postgresql://hybrid:{SECRET}@db.lan/hybrid")
    monkeypatch.setenv("HYBRID_LEDGER__INSTANCE", "edge-7")

    assert main(["config"]) == 0
    text = capsys.readouterr().out
    assert main(["config", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)

    assert SECRET not in text and "db.lan" not in text
    assert SECRET not in json.dumps(document)
    assert document["settings"]["ledger.url"] == {
        "value": "**********",
        "source": "env HYBRID_LEDGER__URL",
    }
    assert document["settings"]["ledger.instance"] == {
        "value": "edge-7",
        "source": "env HYBRID_LEDGER__INSTANCE",
    }
