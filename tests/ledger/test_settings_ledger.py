"""The [ledger], [pricing], [energy] and [budget] settings, through the real settings loader."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hybrid.cli import main
from hybrid.errors import ConfigError
from hybrid.settings import load_settings


def test_defaults_put_the_ledger_in_the_data_folder(isolated: Path) -> None:
    settings = load_settings(environ={}, dotenv_file=None).settings
    assert settings.ledger.resolved_path(settings.home) == settings.home / "ledger.sqlite3"
    assert settings.ledger.retention_days == 90
    assert settings.pricing.reference_model == "openai/gpt-4.1-mini"
    assert (settings.energy.cpu_watts, settings.energy.usd_per_kwh) == (15.0, 0.17)
    assert settings.budget.daily_usd is None and settings.budget.warn_percent == 80.0


def test_a_config_file_sets_overrides_caps_and_a_relative_ledger_path(isolated: Path) -> None:
    config = isolated / "conf" / "config.toml"
    config.parent.mkdir()
    config.write_text(
        """
[ledger]
path = "data/ledger.db"

[[pricing.overrides]]
provider = "groq"
model = "llama-3.3-70b"
input = 0.59
output = 0.79

[budget]
daily_usd = 1.0
per_provider = { openai = { monthly_usd = 5.0 } }
""",
        encoding="utf-8",
    )
    settings = load_settings(config_file=config, environ={}, dotenv_file=None).settings
    assert settings.ledger.resolved_path(settings.home) == config.parent / "data" / "ledger.db"
    assert settings.pricing.overrides[0].cached_input is None
    assert settings.budget.per_provider == {"openai": {"monthly_usd": 5.0}}


def test_per_provider_caps_come_from_json_in_the_environment(isolated: Path) -> None:
    environ = {"HYBRID_BUDGET__PER_PROVIDER": '{"anthropic": {"daily_usd": 0.5}}'}
    settings = load_settings(environ=environ, dotenv_file=None).settings
    assert settings.budget.per_provider == {"anthropic": {"daily_usd": 0.5}}


@pytest.mark.parametrize(
    ("name", "value", "field"),
    [
        ("HYBRID_PRICING__REFERENCE_MODEL", "gpt-4.1-mini", "pricing.reference_model"),
        ("HYBRID_BUDGET__PER_PROVIDER", '{"openai": {"daily": 1}}', "budget.per_provider"),
        ("HYBRID_BUDGET__DAILY_USD", "-1", "budget.daily_usd"),
        ("HYBRID_BUDGET__WARN_PERCENT", "0", "budget.warn_percent"),
        ("HYBRID_LEDGER__RETENTION_DAYS", "-5", "ledger.retention_days"),
    ],
)
def test_bad_values_are_named(isolated: Path, name: str, value: str, field: str) -> None:
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        load_settings(environ={name: value}, dotenv_file=None)


def test_a_cap_for_a_provider_hybrid_does_not_know_is_refused_with_the_known_names(
    isolated: Path,
) -> None:
    config = isolated / "config.toml"
    config.write_text(
        """
[budget]
per_provider = { OpenAI = { daily_usd = 0.0 } }

[[cloud.providers]]
name = "groq"
base_url = "https://api.groq.com/openai/v1"
models = ["llama-3.3-70b-versatile"]
""",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(config_file=config, environ={}, dotenv_file=None)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("invalid setting budget.per_provider = {'OpenAI': ")
    assert f"(from config file {config})" in message
    assert "'OpenAI' (did you mean 'openai'?) names no cloud provider" in message
    assert "the providers are openai, anthropic, groq" in message
    assert "per_provider = { openai = { daily_usd = 1.0 } }" in message


def test_caps_for_the_built_in_and_declared_providers_are_accepted(isolated: Path) -> None:
    environ = {
        "HYBRID_CLOUD__PROVIDERS": json.dumps(
            [{"name": "groq", "base_url": "https://api.groq.com/openai/v1", "models": ["m"]}]
        ),
        "HYBRID_BUDGET__PER_PROVIDER": json.dumps(
            {"openai": {"daily_usd": 1}, "anthropic": {"daily_usd": 2}, "groq": {"daily_usd": 3}}
        ),
    }
    settings = load_settings(environ=environ, dotenv_file=None).settings
    assert set(settings.budget.per_provider) == {"openai", "anthropic", "groq"}
    environ["HYBRID_BUDGET__PER_PROVIDER"] = json.dumps({"grok": {"daily_usd": 3}})
    with pytest.raises(ConfigError, match=r"\(from env HYBRID_BUDGET__PER_PROVIDER\): 'grok' "):
        load_settings(environ=environ, dotenv_file=None)


def test_hybrid_config_prints_the_new_sections_as_json(
    isolated: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HYBRID_BUDGET__PER_PROVIDER", '{"openai": {"daily_usd": 2}}')
    assert main(["config", "--json"]) == 0
    settings = json.loads(capsys.readouterr().out)["settings"]
    assert settings["budget.per_provider"] == {
        "value": {"openai": {"daily_usd": 2.0}},
        "source": "env HYBRID_BUDGET__PER_PROVIDER",
    }
    assert settings["ledger.path"]["value"] is None
    assert settings["energy.cpu_watts"]["value"] == 15.0
