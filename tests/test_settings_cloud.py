"""Cloud settings: the ecosystem's own variables, declared providers and their keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from hybrid.errors import ConfigError
from hybrid.settings import load_settings


def load(tmp_path: Path, env: dict[str, str], toml: str = "") -> object:
    config = tmp_path / "config.toml"
    config.write_text(toml, encoding="utf-8")
    return load_settings(config_file=config, environ=env, dotenv_file=None)


def test_openai_and_anthropic_variables_are_honoured_with_their_source(tmp_path: Path) -> None:
    loaded = load(
        tmp_path,
        {
            "OPENAI_API_KEY": "sk-openai-123",
            "OPENAI_BASE_URL": "http://127.0.0.1:9/v1/",
            "ANTHROPIC_API_KEY": "sk-ant-456",
        },
    )
    cloud = loaded.settings.cloud  # type: ignore[attr-defined]
    assert cloud.openai.api_key.get_secret_value() == "sk-openai-123"
    assert cloud.openai.base_url == "http://127.0.0.1:9/v1"
    assert cloud.anthropic.api_key.get_secret_value() == "sk-ant-456"
    sources = loaded.sources  # type: ignore[attr-defined]
    assert sources["cloud.openai.api_key"] == "env OPENAI_API_KEY"
    assert sources["cloud.anthropic.base_url"] == "default"


def test_hybrid_variables_beat_the_ecosystem_ones_which_beat_the_file(tmp_path: Path) -> None:
    toml = '[cloud.openai]\nbase_url = "http://file.example/v1"\napi_key = "sk-file"\n'
    loaded = load(
        tmp_path,
        {
            "OPENAI_API_KEY": "sk-ecosystem",
            "HYBRID_CLOUD__OPENAI__BASE_URL": "http://hybrid.example/v1",
        },
        toml,
    )
    openai = loaded.settings.cloud.openai  # type: ignore[attr-defined]
    assert openai.api_key.get_secret_value() == "sk-ecosystem"
    assert openai.base_url == "http://hybrid.example/v1"


def test_a_declared_provider_takes_its_key_from_the_variable_it_names(tmp_path: Path) -> None:
    toml = (
        "[[cloud.providers]]\n"
        'name = "groq"\nbase_url = "https://api.groq.example/openai/v1"\n'
        'api_key_env = "GROQ_API_KEY"\nmodels = ["llama-3.3-70b"]\n'
    )
    loaded = load(tmp_path, {"GROQ_API_KEY": "gsk-789"}, toml)
    (groq,) = loaded.settings.cloud.providers  # type: ignore[attr-defined]
    assert groq.api_key.get_secret_value() == "gsk-789"
    assert "gsk-789" not in repr(loaded.settings)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ('[cloud.openai]\nbase_url = "api.openai.com"\n', "http:// or https://"),
        (
            '[[cloud.providers]]\nname = "openai"\nbase_url = "http://x"\nmodels = ["m"]\n',
            "reserved",
        ),
        (
            '[[cloud.providers]]\nname = "a"\nbase_url = "http://x"\nmodels = ["m"]\n'
            '[[cloud.providers]]\nname = "a"\nbase_url = "http://y"\nmodels = ["n"]\n',
            "unique",
        ),
        ('[[cloud.providers]]\nname = "b"\nbase_url = "http://x"\nmodels = []\n', "models"),
    ],
)
def test_bad_cloud_settings_are_clear_errors(tmp_path: Path, toml: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        load(tmp_path, {}, toml)
