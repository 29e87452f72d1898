"""The ``[cloud]`` settings: providers, the default cloud model, failover and reliability.

OpenAI and Anthropic are built in and read the ecosystem's own variables (``OPENAI_API_KEY``,
``OPENAI_BASE_URL``, ``ANTHROPIC_API_KEY``, ``ANTHROPIC_BASE_URL``); any OpenAI-compatible
provider is declared in the config file::

    [[cloud.providers]]
    name = "groq"
    base_url = "https://api.groq.com/openai/v1"
    api_key_env = "GROQ_API_KEY"
    models = ["llama-3.3-70b-versatile"]
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

# Names with a meaning of their own in model names (``local``, ``cloud/...``) or built in.
RESERVED_PROVIDER_NAMES = frozenset({"openai", "anthropic", "local", "hybrid", "cloud"})

ECOSYSTEM_VARIABLES = {
    "OPENAI_API_KEY": ("cloud", "openai", "api_key"),
    "OPENAI_BASE_URL": ("cloud", "openai", "base_url"),
    "ANTHROPIC_API_KEY": ("cloud", "anthropic", "api_key"),
    "ANTHROPIC_BASE_URL": ("cloud", "anthropic", "base_url"),
}
"""Variables other tools already use, and the setting each one fills (below ``HYBRID_*``)."""


def http_url(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://")
    return value.rstrip("/")


class OpenAISettings(BaseModel):
    """OpenAI's API."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    api_key: SecretStr | None = Field(
        default=None, description="API key; env OPENAI_API_KEY is honoured."
    )
    base_url: str = Field(
        default="https://api.openai.com/v1",
        description="API base URL; env OPENAI_BASE_URL is honoured.",
    )
    models: list[str] = Field(
        default_factory=lambda: [
            "gpt-5.4-mini",
            "gpt-5.4",
            "gpt-5.4-nano",
            "gpt-5.5",
            "gpt-4.1-mini",
            "gpt-4.1",
            "gpt-4.1-nano",
            "gpt-4o-mini",
            "gpt-4o",
        ],
        description="Model names routed to OpenAI when asked for without a provider prefix.",
    )

    _check_url = field_validator("base_url")(http_url)


class AnthropicSettings(BaseModel):
    """Anthropic's Messages API."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    api_key: SecretStr | None = Field(
        default=None, description="API key; env ANTHROPIC_API_KEY is honoured."
    )
    base_url: str = Field(
        default="https://api.anthropic.com",
        description="API base URL; env ANTHROPIC_BASE_URL is honoured.",
    )
    version: str = Field(default="2023-06-01", description="The anthropic-version header.")
    max_tokens: int = Field(
        default=4096,
        ge=1,
        description="max_tokens sent when a request sets none (Anthropic requires one).",
    )
    models: list[str] = Field(
        default_factory=lambda: [
            "claude-sonnet-5-5",
            "claude-haiku-5-5",
            "claude-opus-5-5",
            "claude-sonnet-4-6",
            "claude-haiku-4-5",
            "claude-sonnet-4-5",
        ],
        description="Model names routed to Anthropic when asked for without a provider prefix.",
    )

    _check_url = field_validator("base_url")(http_url)


class CompatibleProviderSettings(BaseModel):
    """An OpenAI-compatible provider declared in the config file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(
        pattern=r"^[a-z0-9][a-z0-9_.-]*$",
        description="Name used in qualified model names (<name>/<model>) and reasons.",
    )
    base_url: str = Field(description="Base URL, ending before /chat/completions.")
    api_key_env: str | None = Field(
        default=None, description="Environment variable holding the key (none: no key sent)."
    )
    api_key: SecretStr | None = Field(
        default=None, description="The key itself (prefer api_key_env; filled from it)."
    )
    models: list[str] = Field(min_length=1, description="Model names this provider serves.")

    _check_url = field_validator("base_url")(http_url)

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value in RESERVED_PROVIDER_NAMES:
            raise ValueError(f"{value!r} is reserved; choose another provider name")
        return value


class CloudSettings(BaseModel):
    """Cloud providers and how hybrid escalates to them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    default_model: str | None = Field(
        default=None,
        description=(
            "Cloud model for `hybrid` and `cloud` requests, as provider/model; unset: the "
            "first model of the first provider with a key (openai, anthropic, then declared)."
        ),
    )
    failover: list[str] = Field(
        default_factory=list,
        description="Cloud models (provider/model) tried in order when the chosen one fails.",
    )
    local_fallback: bool = Field(
        default=True,
        description="Answer locally when every cloud target failed and the request fits.",
    )
    openai: OpenAISettings = Field(default_factory=OpenAISettings, description="OpenAI.")
    anthropic: AnthropicSettings = Field(
        default_factory=AnthropicSettings, description="Anthropic."
    )
    providers: list[CompatibleProviderSettings] = Field(
        default_factory=list, description="OpenAI-compatible providers ([[cloud.providers]])."
    )
    connect_timeout_s: float = Field(default=5.0, gt=0, description="TCP/TLS connect timeout.")
    first_byte_timeout_s: float = Field(
        default=60.0,
        gt=0,
        description="A streamed request sent to its first output (text, or the answer's end).",
    )
    whole_answer_timeout_s: float = Field(
        default=600.0,
        gt=0,
        description=(
            "A request that is not streamed, sent to its answer's headers: a provider sends "
            "them only once the whole answer is generated, so this bounds the generation "
            "(600 s, as the OpenAI and Anthropic SDKs). max_total_s does not cut it short."
        ),
    )
    idle_timeout_s: float = Field(
        default=30.0, gt=0, description="Longest silence between two chunks of a response."
    )
    max_attempts: int = Field(
        default=3, ge=1, description="Attempts per provider on 429, 5xx and connection errors."
    )
    max_total_s: float = Field(
        default=30.0,
        gt=0,
        description=(
            "Longest time one cloud target may take to start a streamed answer, over all its "
            "attempts and retry waits; then the next target or the local model answers. An "
            "answer that is not streamed gets no retry after it, but each attempt may take up "
            "to whole_answer_timeout_s."
        ),
    )
    stream_keep_alive_s: float = Field(
        default=5.0,
        gt=0,
        description=(
            "Seconds between ': keep-alive' SSE comments sent while a streamed answer waits "
            "to start (a provider's first byte, failover, local fallback)."
        ),
    )
    backoff_base_s: float = Field(
        default=0.5, ge=0, description="First retry delay; doubles per attempt, with jitter."
    )
    backoff_max_s: float = Field(default=8.0, ge=0, description="Longest retry delay.")
    max_retry_after_s: float = Field(
        default=20.0,
        ge=0,
        description="A longer Retry-After fails over at once instead of waiting.",
    )
    breaker_failures: int = Field(
        default=5, ge=1, description="Consecutive failures that open a provider's circuit."
    )
    breaker_reset_s: float = Field(
        default=30.0,
        gt=0,
        description=(
            "Seconds an open circuit waits before a probe (longer when the provider's "
            "Retry-After asked for longer)."
        ),
    )

    @field_validator("providers")
    @classmethod
    def _unique_names(
        cls, value: list[CompatibleProviderSettings]
    ) -> list[CompatibleProviderSettings]:
        names = [p.name for p in value]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"provider names must be unique; repeated: {', '.join(duplicates)}")
        return value
