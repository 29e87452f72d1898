"""What a model name means: the drop-in contract for the ``model`` field.

=====================================  ===================================================
``hybrid``, empty or omitted           hybrid decides; escalation goes to the default cloud model
``local`` or the local model's id      the local model only
``cloud``                              the default cloud model, no routing
a cloud model (``gpt-4.1-mini``,       hybrid decides between local and *that* model
``openai/gpt-4.1-mini``,
``<provider>/<model>``)
anything else                          404 ``model_not_found``, listing what is available
=====================================  ===================================================
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from hybrid.errors import ConfigError, ModelNotFoundError
from hybrid.settings_cloud import CloudSettings

Mode = Literal["auto", "local", "cloud"]
ALIASES = ("hybrid", "local", "cloud")


@dataclass(frozen=True)
class CloudTarget:
    """One cloud model at one provider."""

    provider: str
    model: str

    @property
    def qualified(self) -> str:
        """``provider/model``, as hybrid names it in headers and reasons."""
        return f"{self.provider}/{self.model}"


@dataclass(frozen=True)
class Resolved:
    """A model name, resolved.

    Attributes:
        mode: ``auto`` (hybrid decides), ``local`` or ``cloud``.
        target: The cloud model to escalate to; None when no cloud model is configured.
        explicit: The name itself fixed the route (``local``, ``cloud``, the local id).
    """

    mode: Mode
    target: CloudTarget | None
    explicit: bool


@dataclass(frozen=True)
class ProviderModels:
    """The models one provider serves, and whether it can be called at all."""

    name: str
    models: tuple[str, ...]
    usable: bool


class ModelNames:
    """Resolves model names against the local model and the configured providers.

    Args:
        providers: Every provider in preference order (openai, anthropic, then declared ones).
        default_model: ``cloud.default_model`` as configured, or None.

    Raises:
        ConfigError: ``default_model`` names a provider that is not configured.
    """

    def __init__(self, providers: Sequence[ProviderModels], default_model: str | None) -> None:
        self._providers = {p.name: p for p in providers}
        self._order = tuple(providers)
        self.default_target = self._default(default_model)

    @classmethod
    def from_settings(cls, cloud: CloudSettings) -> ModelNames:
        """Build from the ``[cloud]`` settings; a provider is usable when it has its key."""
        providers = [
            ProviderModels("openai", tuple(cloud.openai.models), cloud.openai.api_key is not None),
            ProviderModels(
                "anthropic", tuple(cloud.anthropic.models), cloud.anthropic.api_key is not None
            ),
            *(
                ProviderModels(
                    p.name, tuple(p.models), p.api_key_env is None or p.api_key is not None
                )
                for p in cloud.providers
            ),
        ]
        return cls(providers, cloud.default_model)

    def usable(self, provider: str) -> bool:
        """Whether the provider can be called: it has its key, or needs none."""
        known = self._providers.get(provider)
        return known is not None and known.usable

    def targets(self, names: Sequence[str], *, setting: str) -> list[CloudTarget]:
        """Resolve configured cloud model names (``cloud.failover``).

        Raises:
            ConfigError: A name matches no provider or model.
        """
        resolved = []
        for name in names:
            target = self.target(name)
            if target is None:
                raise ConfigError(
                    f"{setting} names {name!r}, which no configured provider serves; use "
                    f"provider/model with one of: {', '.join(self._providers)}"
                )
            resolved.append(target)
        return resolved

    def cloud_models(self) -> list[str]:
        """Every configured cloud model, qualified, usable providers first."""
        ordered = sorted(self._order, key=lambda p: not p.usable)
        return [f"{p.name}/{m}" for p in ordered for m in p.models]

    def target(self, name: str) -> CloudTarget | None:
        """The cloud target a (possibly qualified) cloud model name means, if any."""
        provider, _, model = name.partition("/")
        if model and provider in self._providers:
            return CloudTarget(provider, model)
        for candidate in self._order:
            if name in candidate.models:
                return CloudTarget(candidate.name, name)
        return None

    def resolve(self, name: str | None, *, local_id: str) -> Resolved:
        """Resolve the ``model`` field of a request.

        Args:
            name: The model name the client sent (None or empty: hybrid decides).
            local_id: The local model's id.

        Returns:
            The mode and the cloud target.

        Raises:
            ModelNotFoundError: No provider knows the name.
        """
        if not name or name == "hybrid":
            return Resolved("auto", self.default_target, explicit=False)
        if name in ("local", local_id):
            return Resolved("local", None, explicit=True)
        if name == "cloud":
            return Resolved("cloud", self.default_target, explicit=True)
        target = self.target(name)
        if target is None:
            raise ModelNotFoundError(name, [local_id, *ALIASES, *self.cloud_models()])
        return Resolved("auto", target, explicit=False)

    def _default(self, default_model: str | None) -> CloudTarget | None:
        if default_model:
            target = self.target(default_model)
            if target is None:
                raise ConfigError(
                    f"cloud.default_model = {default_model!r} names no configured provider or "
                    f"model; use provider/model with one of: {', '.join(self._providers)}"
                )
            return target
        for provider in self._order:
            if provider.usable and provider.models:
                return CloudTarget(provider.name, provider.models[0])
        return None
