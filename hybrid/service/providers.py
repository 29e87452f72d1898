"""Building the configured cloud providers, each with its own pooled HTTP client, and the
team's LAN servers."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx2

from hybrid.cloud.anthropic_provider import AnthropicProvider
from hybrid.cloud.client import cloud_client
from hybrid.cloud.openai_provider import OpenAIProvider
from hybrid.cloud.policy import ReliabilityPolicy
from hybrid.cloud.provider import CloudProvider
from hybrid.errors import ConfigError
from hybrid.lan.pool import LanPool
from hybrid.routing.lan import LanTier
from hybrid.routing.privacy import PrivacyScanner
from hybrid.settings import CloudSettings, LanSettings


@dataclass(frozen=True)
class ProviderPool:
    """The providers by name, and the HTTP clients they own (closed together)."""

    providers: Mapping[str, CloudProvider]
    clients: tuple[httpx2.AsyncClient, ...]

    async def aclose(self) -> None:
        """Close every provider's HTTP client."""
        for client in self.clients:
            await client.aclose()


def reliability_policy(cloud: CloudSettings) -> ReliabilityPolicy:
    """The timeouts, retries and breaker thresholds the settings ask for."""
    return ReliabilityPolicy(
        connect_timeout_s=cloud.connect_timeout_s,
        first_byte_timeout_s=cloud.first_byte_timeout_s,
        whole_answer_timeout_s=cloud.whole_answer_timeout_s,
        idle_timeout_s=cloud.idle_timeout_s,
        max_attempts=cloud.max_attempts,
        max_total_s=cloud.max_total_s,
        backoff_base_s=cloud.backoff_base_s,
        backoff_max_s=cloud.backoff_max_s,
        max_retry_after_s=cloud.max_retry_after_s,
        breaker_failures=cloud.breaker_failures,
        breaker_reset_s=cloud.breaker_reset_s,
    )


def build_providers(cloud: CloudSettings) -> ProviderPool:
    """One provider per configured API: OpenAI, Anthropic, and each declared one.

    Every provider is built, with or without a key, so that ``/health`` and ``/v1/models`` can
    show it; the dispatcher skips one without its key.  Each removes from its error messages
    every key, token, password and private key the privacy scanner knows, whatever the privacy
    policy's own settings: an upstream may echo one, and the message goes to the client, the
    log, the ledger and the event stream.  Each has its own HTTP client from
    :func:`~hybrid.cloud.client.cloud_client` (pooled; the environment's proxies and CA bundle).

    Raises:
        ConfigError: A provider's base URL or key is unusable, or the CA bundle named by
            ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` cannot be loaded.
    """
    policy = reliability_policy(cloud)
    redact = _secret_scrubber()
    clients: list[httpx2.AsyncClient] = []

    def client() -> httpx2.AsyncClient:
        made = cloud_client(policy)
        clients.append(made)
        return made

    providers: dict[str, CloudProvider] = {
        "openai": OpenAIProvider(
            name="openai",
            base_url=cloud.openai.base_url,
            api_key=cloud.openai.api_key,
            models=cloud.openai.models,
            client=client(),
            policy=policy,
            redact=redact,
        ),
        "anthropic": AnthropicProvider(
            name="anthropic",
            base_url=cloud.anthropic.base_url,
            api_key=cloud.anthropic.api_key,
            models=cloud.anthropic.models,
            client=client(),
            policy=policy,
            redact=redact,
            version=cloud.anthropic.version,
            default_max_tokens=cloud.anthropic.max_tokens,
        ),
    }
    for declared in cloud.providers:
        providers[declared.name] = OpenAIProvider(
            name=declared.name,
            base_url=declared.base_url,
            api_key=declared.api_key,
            models=declared.models,
            client=client(),
            policy=policy,
            redact=redact,
        )
    return ProviderPool(providers, tuple(clients))


def build_lan(lan: LanSettings, cloud: CloudSettings, home: Path | None = None) -> LanTier | None:
    """The LAN tier of ``[[lan.servers]]``, or None when none is declared.

    The servers share one pooled HTTP client, with the cloud's reliability settings (but
    ``lan.connect_timeout_s`` and ``lan.max_attempts``); their error messages are scrubbed of
    secrets as the cloud providers' are.  Nothing is sent until the pool is started.

    Raises:
        ConfigError: A server has a cloud provider's name, or its base URL or key is unusable.
    """
    if not lan.servers:
        return None
    clouds = {"openai", "anthropic", *(p.name for p in cloud.providers)}
    clashing = sorted(s.name for s in lan.servers if s.name in clouds)
    if clashing:
        raise ConfigError(
            f"[[lan.servers]] name {', '.join(clashing)} is also a cloud provider's; give the "
            "LAN server another name (names appear in reasons and the ledger)"
        )
    return LanTier(LanPool(lan, reliability_policy(cloud), redact=_secret_scrubber()), home=home)


def _secret_scrubber() -> Callable[[str], str]:
    return PrivacyScanner(detectors=("api_key", "secret", "private_key")).redact
