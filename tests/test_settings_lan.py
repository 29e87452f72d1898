"""LAN settings: declared servers, their keys, and the mistakes a config file can hold."""

from __future__ import annotations

from pathlib import Path

import pytest

from hybrid.errors import ConfigError
from hybrid.service.providers import build_lan
from hybrid.settings import Settings, load_settings

GPU_BOX = (
    "[[lan.servers]]\n"
    'name = "gpu-box"\nbase_url = "http://10.0.0.7:8080/v1/"\n'
    'api_key_env = "GPU_BOX_KEY"\nmodels = ["qwen2.5-32b-instruct"]\n'
    'max_concurrency = 8\nprivacy = "trusted"\n'
)


def load(tmp_path: Path, toml: str, env: dict[str, str] | None = None) -> Settings:
    config = tmp_path / "config.toml"
    config.write_text(toml, encoding="utf-8")
    return load_settings(config_file=config, environ=env or {}, dotenv_file=None).settings


def test_a_server_is_read_with_its_key_from_the_variable_it_names(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        GPU_BOX + '[lan]\nstrategy = "round_robin"\nusd_per_1m_tokens = 0.05\n'
        "[routing.privacy]\nallow_lan = true\n",
        {"GPU_BOX_KEY": "sk-lan-1"},
    )
    (server,) = settings.lan.servers
    assert server.api_key is not None and server.api_key.get_secret_value() == "sk-lan-1"
    assert server.base_url == "http://10.0.0.7:8080/v1"
    assert (server.max_concurrency, server.privacy, server.kind) == (8, "trusted", "auto")
    assert (settings.lan.strategy, settings.lan.usd_per_1m_tokens) == ("round_robin", 0.05)
    assert settings.routing.privacy.allow_lan is True


@pytest.mark.parametrize(
    ("toml", "says"),
    [
        (GPU_BOX + GPU_BOX, "server names must be unique; repeated: gpu-box"),
        (GPU_BOX.replace('"gpu-box"', '"cloud"'), "'cloud' is reserved"),
        (GPU_BOX.replace("http://10.0.0.7", "10.0.0.7"), "must start with http:// or https://"),
        (GPU_BOX.replace('"trusted"', '"yes"'), "privacy"),
        (GPU_BOX.replace("max_concurrency = 8", "max_concurrency = 0"), "max_concurrency"),
        ('[lan]\nstrategy = "random"\n', "strategy"),
    ],
)
def test_a_bad_server_entry_is_refused_with_the_setting_named(
    tmp_path: Path, toml: str, says: str
) -> None:
    with pytest.raises(ConfigError, match=says):
        load(tmp_path, toml)


def test_a_lan_server_may_not_take_a_cloud_providers_name(tmp_path: Path) -> None:
    groq = '[[cloud.providers]]\nname = "groq"\nbase_url = "https://g.example/v1"\nmodels = ["m"]\n'
    settings = load(tmp_path, groq + GPU_BOX.replace('"gpu-box"', '"groq"'))
    with pytest.raises(ConfigError, match="also a cloud provider's"):
        build_lan(settings.lan, settings.cloud)


def test_no_servers_build_no_lan_tier() -> None:
    settings = Settings()
    assert build_lan(settings.lan, settings.cloud) is None


def test_a_judge_may_be_a_lan_servers_model(tmp_path: Path) -> None:
    judge = '[routing.learn]\njudge_model = "gpu-box/qwen2.5-32b-instruct"\n'
    settings = load(tmp_path, GPU_BOX + judge)
    assert settings.routing.learn.judge_model == "gpu-box/qwen2.5-32b-instruct"


@pytest.mark.parametrize("lan", [GPU_BOX, ""])
def test_a_judge_nothing_answers_to_is_refused_with_the_names_that_do(
    tmp_path: Path, lan: str
) -> None:
    judge = '[routing.learn]\njudge_model = "gpu-bx/qwen2.5-32b-instruct"\n'
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, lan + judge)
    message = str(caught.value)
    assert "routing.learn.judge_model" in message
    assert "'gpu-bx' names no cloud provider and no LAN server" in message
    assert 'judge_model = "openai/qwen2.5-32b-instruct"' in message
    assert ("gpu-box (LAN)" in message) == bool(lan)
