"""The ``[lan]`` settings: a team's inference servers, tried before the cloud.

Any OpenAI-compatible server on the network (llama.cpp's ``llama-server``, vLLM, Ollama's
``/v1``, llama-cpp-python's server, another hybrid) is declared in the config file::

    [lan]
    usd_per_1m_tokens = 0.0

    [[lan.servers]]
    name = "gpu-box"
    base_url = "http://gpu-box:8080/v1"
    models = ["qwen2.5-32b-instruct"]
    max_concurrency = 8
    privacy = "trusted"
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from hybrid.settings.cloud import RESERVED_PROVIDER_NAMES, http_url

ServerKindSetting = Literal["auto", "llama-server", "vllm", "ollama", "hybrid"]
Strategy = Literal["least_loaded", "round_robin"]


class LanServerSettings(BaseModel):
    """One inference server on the network (``[[lan.servers]]``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(
        pattern=r"^[a-z0-9][a-z0-9_.-]*$",
        description="Name in reasons (lan:<name>/<model>), /health and the ledger.",
    )
    base_url: str = Field(
        description="Its OpenAI base URL, ending before /chat/completions (http://host:8080/v1)."
    )
    api_key_env: str | None = Field(
        default=None, description="Environment variable holding its key (none: no key sent)."
    )
    api_key: SecretStr | None = Field(
        default=None, description="The key itself (prefer api_key_env; filled from it)."
    )
    models: list[str] = Field(
        default_factory=list,
        description="Models it serves, as its API names them (empty: those /v1/models lists).",
    )
    max_concurrency: int = Field(
        default=4, ge=1, description="Requests hybrid sends it at once; more go elsewhere."
    )
    privacy: Literal["trusted", "untrusted"] = Field(
        default="untrusted",
        description=(
            "trusted: requests with private data may go to it when routing.privacy.allow_lan is on."
        ),
    )
    kind: ServerKindSetting = Field(
        default="auto",
        description="What it is, for its load report (auto: found by asking it).",
    )

    _check_url = field_validator("base_url")(http_url)

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value in RESERVED_PROVIDER_NAMES or value == "lan":
            raise ValueError(f"{value!r} is reserved; choose another server name")
        return value


class LanSettings(BaseModel):
    """A team's inference servers, tried after the local model and before the cloud."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    servers: list[LanServerSettings] = Field(
        default_factory=list, description="The servers ([[lan.servers]])."
    )
    strategy: Strategy = Field(
        default="least_loaded",
        description=(
            "least_loaded: the server with the most room, from its load report or hybrid's "
            "own count; round_robin: each server in turn."
        ),
    )
    usd_per_1m_tokens: float = Field(
        default=0.0,
        ge=0,
        description="What a LAN answer costs per million tokens (prompt and answer).",
    )
    load_interval_s: float = Field(
        default=2.0, gt=0, description="Seconds between two load reports asked of a server."
    )
    connect_timeout_s: float = Field(
        default=2.0, gt=0, description="TCP connect timeout for a LAN server."
    )
    max_attempts: int = Field(
        default=2,
        ge=1,
        description=(
            "Attempts per server on 429, 5xx and connection errors before the next server "
            "(timeouts, backoff and breaker as under [cloud])."
        ),
    )

    @field_validator("servers")
    @classmethod
    def _unique_names(cls, value: list[LanServerSettings]) -> list[LanServerSettings]:
        names = [s.name for s in value]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"server names must be unique; repeated: {', '.join(duplicates)}")
        return value
