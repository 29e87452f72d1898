from __future__ import annotations

import pytest
from pydantic import SecretStr

from hybrid.errors import ConfigError, ModelNotFoundError
from hybrid.routing.names import CloudTarget, ModelNames, ProviderModels
from hybrid.settings.cloud import (
    AnthropicSettings,
    CloudSettings,
    CompatibleProviderSettings,
    OpenAISettings,
)

LOCAL = "gemma-3-270m-q4_k_m"


def names(default: str | None = None, *, openai_key: bool = True) -> ModelNames:
    return ModelNames(
        [
            ProviderModels("openai", ("gpt-4.1-mini", "gpt-4.1"), usable=openai_key),
            ProviderModels("anthropic", ("claude-sonnet-4-5",), usable=True),
            ProviderModels("groq", ("llama-3.3-70b",), usable=True),
        ],
        default,
    )


@pytest.mark.parametrize("name", [None, "", "hybrid"])
def test_hybrid_or_no_name_lets_hybrid_decide_towards_the_default(name: str | None) -> None:
    resolved = names().resolve(name, local_id=LOCAL)
    assert resolved.mode == "auto" and not resolved.explicit
    assert resolved.target == CloudTarget("openai", "gpt-4.1-mini")


@pytest.mark.parametrize("name", ["local", LOCAL])
def test_local_names_pin_the_local_model(name: str) -> None:
    resolved = names().resolve(name, local_id=LOCAL)
    assert resolved.mode == "local" and resolved.explicit


def test_cloud_alias_goes_to_the_default_cloud_model() -> None:
    resolved = names("anthropic/claude-sonnet-4-5").resolve("cloud", local_id=LOCAL)
    assert resolved.mode == "cloud"
    assert resolved.target == CloudTarget("anthropic", "claude-sonnet-4-5")


@pytest.mark.parametrize(
    ("name", "target"),
    [
        ("gpt-4.1", CloudTarget("openai", "gpt-4.1")),
        ("claude-sonnet-4-5", CloudTarget("anthropic", "claude-sonnet-4-5")),
        ("openai/gpt-5-preview", CloudTarget("openai", "gpt-5-preview")),
        ("groq/llama-3.3-70b", CloudTarget("groq", "llama-3.3-70b")),
    ],
)
def test_a_cloud_model_name_routes_between_local_and_that_model(
    name: str, target: CloudTarget
) -> None:
    resolved = names().resolve(name, local_id=LOCAL)
    assert resolved.mode == "auto" and resolved.target == target


def test_an_unknown_name_is_a_404_listing_what_exists() -> None:
    with pytest.raises(ModelNotFoundError) as caught:
        names().resolve("mystery-model-9", local_id=LOCAL)
    assert caught.value.available[:4] == [LOCAL, "hybrid", "local", "cloud"]
    assert "openai/gpt-4.1-mini" in caught.value.available
    assert "mystery-model-9" in str(caught.value)


def test_default_is_the_first_provider_that_has_a_key() -> None:
    assert names(openai_key=False).default_target == CloudTarget("anthropic", "claude-sonnet-4-5")
    none_usable = ModelNames([ProviderModels("openai", ("gpt-4.1",), usable=False)], None)
    assert none_usable.default_target is None


def test_a_configured_default_must_name_a_provider() -> None:
    with pytest.raises(ConfigError, match=r"cloud\.default_model"):
        names("nowhere/model")
    with pytest.raises(ConfigError, match=r"cloud\.failover"):
        names().targets(["mystery-model"], setting="cloud.failover")


def configured(*, openai: bool = True, anthropic: bool = True) -> ModelNames:
    """The names as ``hybrid serve`` builds them, with the default model lists."""
    return ModelNames.from_settings(
        CloudSettings(
            openai=OpenAISettings(api_key=SecretStr("sk-o") if openai else None),
            anthropic=AnthropicSettings(api_key=SecretStr("sk-a") if anthropic else None),
            providers=[
                CompatibleProviderSettings(
                    name="groq",
                    base_url="https://api.groq.com/openai/v1",
                    models=["gpt-oss-120b"],
                )
            ],
        )
    )


@pytest.mark.parametrize(
    ("name", "provider"),
    [
        ("gpt-4", "openai"),
        ("gpt-3.5-turbo", "openai"),
        ("gpt-4o", "openai"),
        ("gpt-4-0613", "openai"),
        ("chatgpt-4o-latest", "openai"),
        ("o1", "openai"),
        ("o3-mini", "openai"),
        ("o4-mini-2025-04-16", "openai"),
        ("claude-3-5-sonnet-latest", "anthropic"),
        ("claude-3-opus-20240229", "anthropic"),
    ],
)
def test_names_apps_already_use_go_to_their_provider_as_sent(name: str, provider: str) -> None:
    resolved = configured().resolve(name, local_id=LOCAL)
    assert resolved.mode == "auto"
    assert resolved.target == CloudTarget(provider, name)


def test_a_provider_that_lists_a_name_gets_it_before_the_one_whose_api_looks_alike() -> None:
    target = configured().resolve("gpt-oss-120b", local_id=LOCAL).target
    assert target == CloudTarget("groq", "gpt-oss-120b")


@pytest.mark.parametrize("name", ["gpt4", "o2-mini", "o10", "omni", "claudette", "llama-3"])
def test_names_that_only_resemble_a_providers_are_unknown(name: str) -> None:
    with pytest.raises(ModelNotFoundError) as caught:
        configured().resolve(name, local_id=LOCAL)
    assert "does not exist here" in str(caught.value)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "gpt-4",
            "gpt-4 is an OpenAI model but no OpenAI key is set; set OPENAI_API_KEY and "
            "restart hybrid",
        ),
        (
            "claude-3-5-sonnet-latest",
            "claude-3-5-sonnet-latest is an Anthropic model but no Anthropic key is set; set "
            "ANTHROPIC_API_KEY and restart hybrid",
        ),
    ],
)
def test_without_its_providers_key_a_name_is_a_404_that_names_the_key(
    name: str, expected: str
) -> None:
    with pytest.raises(ModelNotFoundError) as caught:
        configured(openai=False, anthropic=False).resolve(name, local_id=LOCAL)
    assert str(caught.value).startswith(expected)
    assert "'hybrid' or 'local'" in str(caught.value)
    provider = "openai" if name.startswith("gpt") else "anthropic"
    assert caught.value.cause == f"{provider}:no_key"


def test_the_404_lists_only_the_models_of_providers_with_a_key() -> None:
    with pytest.raises(ModelNotFoundError) as caught:
        configured(anthropic=False).resolve("claude-3-5-sonnet-latest", local_id=LOCAL)
    available = caught.value.available
    assert "openai/gpt-4.1-mini" in available and "groq/gpt-oss-120b" in available
    assert not [name for name in available if name.startswith("anthropic/")]
    assert "anthropic/" not in str(caught.value)
