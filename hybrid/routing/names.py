"""What a model name means: the drop-in contract for the ``model`` field.

======================================  ==========================================================
``hybrid``, empty or omitted            hybrid decides; escalation goes to the default cloud model
``local`` or the local model's id       the local model only
``cloud``                               the default cloud model, no routing
a configured cloud model                hybrid decides between local and *that* model (without
(``gpt-4.1-mini``, ``<provider>/<m>``)  the provider's key, the local model answers and the
                                        reason says ``cloud_unavailable:<provider>:no_key``)
another name OpenAI's or Anthropic's    the same once that provider has its key; without it,
API takes (``gpt-4``, ``o3-mini``,      404 ``model_not_found`` naming the key to set
``claude-3-5-sonnet-latest``)
another local model (``/v1/models``     the server switches to it first, then it answers
lists it)                               locally (:mod:`hybrid.service.answering`)
anything else                           404 ``model_not_found``, listing what is available
======================================  ==========================================================

A cloud model name reaches its provider exactly as the client sent it, and is priced from the
price table like any other: a name the table lacks is recorded as unpriced, never as free.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from hybrid.errors import ConfigError, ModelNotFoundError
from hybrid.settings.cloud import CloudSettings

Mode = Literal["auto", "local", "cloud"]
ALIASES = ("hybrid", "local", "cloud")

# The model names OpenAI's and Anthropic's APIs take beyond the configured lists: apps written
# against them name gpt-4, o3-mini or claude-3-5-sonnet-latest, and keep doing so here.
OPENAI_NAMES = re.compile(r"gpt-|chatgpt-|o[134](?:-|$)")
ANTHROPIC_NAMES = re.compile(r"claude-")


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
    """The models one provider serves, and whether it can be called at all.

    Attributes:
        name: The provider's name in qualified model names (``openai``).
        models: The configured model names.
        usable: Whether it has its key, or needs none.
        accepts: Further names its API takes (matched at the start of a name), if any.
        label: The provider's name as people write it (``OpenAI``); None: ``name``.
        key_variable: The environment variable its key comes from, when it needs one.
    """

    name: str
    models: tuple[str, ...]
    usable: bool
    accepts: re.Pattern[str] | None = None
    label: str | None = None
    key_variable: str | None = None


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
            ProviderModels(
                "openai",
                tuple(cloud.openai.models),
                cloud.openai.api_key is not None,
                accepts=OPENAI_NAMES,
                label="OpenAI",
                key_variable="OPENAI_API_KEY",
            ),
            ProviderModels(
                "anthropic",
                tuple(cloud.anthropic.models),
                cloud.anthropic.api_key is not None,
                accepts=ANTHROPIC_NAMES,
                label="Anthropic",
                key_variable="ANTHROPIC_API_KEY",
            ),
            *(
                ProviderModels(
                    p.name,
                    tuple(p.models),
                    p.api_key_env is None or p.api_key is not None,
                    key_variable=p.api_key_env,
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
        """Every configured cloud model of a usable provider, qualified, in preference order."""
        return [f"{p.name}/{m}" for p in self._order if p.usable for m in p.models]

    def target(self, name: str) -> CloudTarget | None:
        """The cloud target a (possibly qualified) cloud model name means, if any.

        A qualified name goes to its provider; a bare one to the first provider that lists
        it, else to the first whose API accepts it (``gpt-4`` to OpenAI), with the name as
        sent.  Whether the provider has its key is not considered here.
        """
        return self._configured(name) or self._accepted(name)

    def resolve(self, name: str | None, *, local_id: str) -> Resolved:
        """Resolve the ``model`` field of a request.

        Args:
            name: The model name the client sent (None or empty: hybrid decides).
            local_id: The local model's id.

        Returns:
            The mode and the cloud target.

        Raises:
            ModelNotFoundError: No provider knows the name, or the name is one only a
                provider's API accepts (not a configured one) and that provider has no key
                (the error names the variable to set).
        """
        if not name or name == "hybrid":
            return Resolved("auto", self.default_target, explicit=False)
        if name in ("local", local_id):
            return Resolved("local", None, explicit=True)
        if name == "cloud":
            return Resolved("cloud", self.default_target, explicit=True)
        target = self._configured(name)
        if target is not None:
            # A configured name stays usable without its key: hybrid decides, and the local
            # model answers what it can (the reason names the missing key on escalation).
            return Resolved("auto", target, explicit=False)
        target = self._accepted(name)
        available = [local_id, *ALIASES, *self.cloud_models()]
        if target is None:
            raise ModelNotFoundError(name, available)
        provider = self._providers[target.provider]
        if not provider.usable:
            raise ModelNotFoundError(
                name,
                available,
                provider=provider.name,
                label=provider.label or provider.name,
                key_variable=provider.key_variable,
            )
        return Resolved("auto", target, explicit=False)

    def _configured(self, name: str) -> CloudTarget | None:
        """A qualified name of a known provider, or a name a provider lists."""
        provider, _, model = name.partition("/")
        if model and provider in self._providers:
            return CloudTarget(provider, model)
        for candidate in self._order:
            if name in candidate.models:
                return CloudTarget(candidate.name, name)
        return None

    def _accepted(self, name: str) -> CloudTarget | None:
        """The first provider whose API takes the name, though it does not list it."""
        for candidate in self._order:
            if candidate.accepts is not None and candidate.accepts.match(name):
                return CloudTarget(candidate.name, name)
        return None

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
