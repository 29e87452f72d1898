from __future__ import annotations

import pytest

from hybrid.errors import ConfigError, ModelNotFoundError
from hybrid.routing.names import CloudTarget, ModelNames, ProviderModels

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
        names().resolve("gpt-9-ultra", local_id=LOCAL)
    assert caught.value.available[:4] == [LOCAL, "hybrid", "local", "cloud"]
    assert "openai/gpt-4.1-mini" in caught.value.available
    assert "gpt-9-ultra" in str(caught.value)


def test_default_is_the_first_provider_that_has_a_key() -> None:
    assert names(openai_key=False).default_target == CloudTarget("anthropic", "claude-sonnet-4-5")
    none_usable = ModelNames([ProviderModels("openai", ("gpt-4.1",), usable=False)], None)
    assert none_usable.default_target is None


def test_a_configured_default_must_name_a_provider() -> None:
    with pytest.raises(ConfigError, match=r"cloud\.default_model"):
        names("nowhere/model")
    with pytest.raises(ConfigError, match=r"cloud\.failover"):
        names().targets(["mystery-model"], setting="cloud.failover")
