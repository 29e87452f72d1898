"""The settings root and loading it with the source of every value.

Values come from five layers; a higher one wins, leaf by leaf::

    command line flags   --port 9000                      "command line --port"
    environment          HYBRID_SERVER__PORT=9000         "env HYBRID_SERVER__PORT"
    .env file            HYBRID_SERVER__PORT=9000         ".env /path/.env"
    TOML config file     [server] port = 9000             "config file /path/config.toml"
    defaults             the field defaults of each section

``Settings()`` on its own is plain pydantic-settings (defaults, then the ``HYBRID_`` environment),
and ``Settings.model_validate({...})`` works for tests.  :func:`load_settings` is what the CLI
uses: it reads each layer separately (see :mod:`hybrid.settings.sources`) so that ``hybrid
config`` can say exactly where each value came from, and it turns every invalid value into one
:class:`~hybrid.errors.ConfigError` naming the field, the value and its source (see
:mod:`hybrid.settings.explain`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

import platformdirs
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from hybrid.settings.cloud import (
    ECOSYSTEM_VARIABLES,
    CloudSettings,
    CompatibleProviderSettings,
)
from hybrid.settings.dotenv_file import read_dotenv
from hybrid.settings.explain import field_error, settings_error
from hybrid.settings.lan import LanServerSettings, LanSettings
from hybrid.settings.ledger import BudgetSettings, EnergySettings, LedgerSettings, PricingSettings
from hybrid.settings.local import LocalSettings, ProbeSettings
from hybrid.settings.routing import RoutingSettings
from hybrid.settings.server import ServerSettings
from hybrid.settings.sources import (
    Layer,
    ProvidedValue,
    find_config_file,
    leaf_sources,
    merge,
    nest,
    read_cli,
    read_env,
    read_toml,
    refuse_unknown_names,
)

LogLevel = Literal["debug", "info", "warning", "error"]

_APP_NAME = "hybrid"
_ENV_PREFIX = "HYBRID_"
_ENV_NESTED_DELIMITER = "__"
_CONFIG_VARIABLE = f"{_ENV_PREFIX}CONFIG"

NOT_SETTINGS: frozenset[str] = frozenset({_CONFIG_VARIABLE})
"""The ``HYBRID_*`` variables hybrid reads that are not settings, so that every other
``HYBRID_*`` name in the environment or a ``.env`` file can be refused as a typo.

``HYBRID_CONFIG`` names the config file (:func:`load_settings`).  ``HYBRID_HOME`` is the
``home`` setting, not an exception.  A new variable read outside the settings belongs here.
They are read from the process environment only (``HYBRID_CONFIG`` before the ``.env`` file is
read), so a ``.env`` line setting one is refused rather than silently doing nothing.
"""


def _default_home() -> Path:
    return Path(platformdirs.user_data_dir(_APP_NAME))


class Settings(BaseSettings):
    """Every setting hybrid reads, grouped by the part of hybrid that uses it.

    Environment variables use the ``HYBRID_`` prefix and ``__`` between a section and its field
    (``HYBRID_LOCAL__N_CTX=4096``); list values are JSON (``HYBRID_LOCAL__MODELS_DIRS='["~/m"]'``).
    Instances are immutable; use ``model_copy(update=...)`` for variants.
    """

    model_config = SettingsConfigDict(
        env_prefix=_ENV_PREFIX,
        env_nested_delimiter=_ENV_NESTED_DELIMITER,
        env_ignore_empty=True,
        extra="forbid",
        frozen=True,
    )

    home: Path = Field(
        default_factory=_default_home,
        description="Data folder (downloaded models, logs, state); env HYBRID_HOME.",
    )
    log_level: LogLevel = Field(
        default="info",
        description="Least severe log level printed: debug, info, warning or error.",
    )
    server: ServerSettings = Field(
        default_factory=ServerSettings,
        description="The OpenAI-compatible HTTP server.",
    )
    local: LocalSettings = Field(
        default_factory=LocalSettings,
        description="The in-process GGUF model.",
    )
    probe: ProbeSettings = Field(
        default_factory=ProbeSettings,
        description="The hardware probe.",
    )
    cloud: CloudSettings = Field(
        default_factory=CloudSettings,
        description="Cloud providers and escalation.",
    )
    lan: LanSettings = Field(
        default_factory=LanSettings,
        description="A team's inference servers, tried before the cloud.",
    )
    routing: RoutingSettings = Field(
        default_factory=RoutingSettings,
        description="How requests are routed between local and cloud.",
    )
    ledger: LedgerSettings = Field(
        default_factory=LedgerSettings,
        description="The request ledger (SQLite) and how long it keeps records.",
    )
    pricing: PricingSettings = Field(
        default_factory=PricingSettings,
        description="Cloud prices and the reference model for cost avoided.",
    )
    energy: EnergySettings = Field(
        default_factory=EnergySettings,
        description="What local answers cost in electricity.",
    )
    budget: BudgetSettings = Field(
        default_factory=BudgetSettings,
        description="Daily and monthly caps on cloud spend.",
    )

    @field_validator("home")
    @classmethod
    def _expand_home(cls, value: Path) -> Path:
        return value.expanduser()

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_log_level(cls, value: object) -> object:
        # DEBUG and debug mean the same to a user; the Literal only knows the lower-case names.
        return value.lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _caps_name_known_providers(self) -> Settings:
        # A cap under a name no provider has would never apply: refuse it rather than let a
        # misspelt or differently-cased name ("OpenAI") leave the spend uncapped.
        known = ["openai", "anthropic", *(provider.name for provider in self.cloud.providers)]
        caps = self.budget.per_provider
        unknown = [name for name in caps if name not in known]
        if not unknown:
            return self
        hints = [
            f"{name!r} (did you mean {name.lower()!r}?)" if name.lower() in known else repr(name)
            for name in unknown
        ]
        raise field_error(
            ("budget", "per_provider"),
            caps,
            f"{', '.join(hints)} {'names' if len(hints) == 1 else 'name'} no cloud provider, "
            f"so a cap there would never apply; the providers are {', '.join(known)}: write "
            f"one of them as the key, e.g. "
            f"per_provider = {{ {known[0]} = {{ daily_usd = 1.0 }} }}, or declare the "
            f"provider under [[cloud.providers]]",
        )

    @model_validator(mode="after")
    def _judge_names_a_known_provider(self) -> Settings:
        # A judge under a name nothing answers to would never be asked: the shadow answers
        # would be graded by word overlap without a word said.
        judge = self.routing.learn.judge_model
        if judge is None:
            return self
        provider, _, model = judge.partition("/")
        clouds = ["openai", "anthropic", *(entry.name for entry in self.cloud.providers)]
        servers = [server.name for server in self.lan.servers]
        if provider in clouds or provider in servers:
            return self
        known = ", ".join([*clouds, *(f"{name} (LAN)" for name in servers)])
        raise field_error(
            ("routing", "learn", "judge_model"),
            judge,
            f"{provider!r} names no cloud provider and no LAN server, so no judge would ever "
            f"be asked; write provider/model with one of {known} before the slash, e.g. "
            f'judge_model = "{clouds[0]}/{model}", or declare the provider under '
            f"[[cloud.providers]] or the server under [[lan.servers]]",
        )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Order the sources like :func:`load_settings`: init > env > .env > TOML > defaults.

        The TOML file is ``model_config["toml_file"]`` (unset here, so ``Settings()`` reads none);
        :func:`load_settings` picks and reads the config file itself.
        """
        return (
            init_settings,
            env_settings,
            dotenv_settings,
            TomlConfigSettingsSource(settings_cls),
        )


@dataclass(frozen=True)
class LoadedSettings:
    """Settings plus where each value came from.

    Attributes:
        settings: The validated settings.
        sources: Dotted leaf path (``"server.port"``) to its source: ``"default"``,
            ``"config file <path>"``, ``"env HYBRID_X__Y"``, ``".env <path>"`` or
            ``"command line --flag"``.  Has an entry for every leaf field.
        config_file: The TOML file that was read, or None when none was.
    """

    settings: Settings
    sources: Mapping[str, str]
    config_file: Path | None


def default_config_file() -> Path:
    """Return where the config file is read from when neither --config nor HYBRID_CONFIG is set.

    Returns:
        ``config.toml`` in the platform's user config folder (``~/.config/hybrid`` on Linux);
        the file may not exist.
    """
    return Path(platformdirs.user_config_dir(_APP_NAME)) / "config.toml"


def load_settings(
    *,
    config_file: Path | None = None,
    cli: Mapping[str, object] | None = None,
    environ: Mapping[str, str] | None = None,
    dotenv_file: Path | None = Path(".env"),
    cli_sources: Mapping[str, str] | None = None,
) -> LoadedSettings:
    """Read every settings layer, merge them leaf by leaf, and validate the result.

    Args:
        config_file: The TOML file named by ``--config``; it must exist.  When None, the file
            named by ``HYBRID_CONFIG`` in ``environ`` is read (it must exist too), else
            :func:`default_config_file` if it exists, else none.
        cli: Values from command-line flags keyed by dotted path (``{"server.port": 9000}``);
            they beat every other layer.
        environ: The environment to read ``HYBRID_*`` variables from; defaults to ``os.environ``.
        dotenv_file: A ``.env`` file read below the environment; skipped when it does not exist
            or is None.
        cli_sources: For each key of ``cli``, the flag that set it (``"--port"``), shown as the
            source ``"command line --port"``; a key without one shows ``"command line"``.

    Returns:
        The settings and the source of every leaf value.

    Raises:
        ConfigError: A named config file is missing or unreadable; the TOML is malformed (the
            message names the file, line and column) or holds an unknown key; the ``.env``
            file is unreadable, not UTF-8, has a ``HYBRID_`` line that is not NAME=value (a
            bare name included) or sets one of :data:`NOT_SETTINGS`; ``HYBRID_*`` variables
            of the environment or the ``.env`` file name no setting (one line per name); a JSON
            value in the environment is malformed; or a value is invalid (one line per bad
            field naming the field, the value and its source).
    """
    env = os.environ if environ is None else environ
    toml_path = find_config_file(
        config_file,
        env,
        env_name=_CONFIG_VARIABLE,
        default=default_config_file(),
    )
    layers: list[Layer] = []
    if toml_path is not None:
        layers.append(read_toml(toml_path, Settings))
    dotenv: Mapping[str, str] = {}
    dotenv_source = ""
    if dotenv_file is not None and dotenv_file.is_file():
        dotenv = read_dotenv(
            dotenv_file,
            prefix=_ENV_PREFIX,
            delimiter=_ENV_NESTED_DELIMITER,
            environment_only=NOT_SETTINGS,
        )
        dotenv_source = f".env {dotenv_file.absolute()}"
    variables: list[tuple[Mapping[str, str], Callable[[str], str]]] = [
        (dotenv, lambda _: dotenv_source),
        (env, lambda name: f"env {name}"),
    ]
    # Every misspelt name of both at once, so that one run shows all there is to fix.
    refuse_unknown_names(
        variables,
        Settings,
        prefix=_ENV_PREFIX,
        delimiter=_ENV_NESTED_DELIMITER,
        ignored=NOT_SETTINGS,
    )
    dotenv_layer, env_layer = (
        read_env(
            values,
            Settings,
            prefix=_ENV_PREFIX,
            delimiter=_ENV_NESTED_DELIMITER,
            source=source,
            ignored=NOT_SETTINGS,
        )
        for values, source in variables
    )
    layers += [dotenv_layer, _ecosystem_layer(env), env_layer]
    layers.append(read_cli(cli or {}, cli_sources or {}))
    merged = merge(layers)
    try:
        # Settings(**values) would read os.environ again; a lone init source validates exactly
        # the layers read above, so an injected environ really replaces the process's.  mypy
        # sees only the field-derived __init__, not BaseSettings' underscore options.
        only_these = (InitSettingsSource(Settings, nest(merged)),)
        settings = Settings(_build_sources=(only_these, {}))  # type: ignore[call-arg]
    except ValidationError as exc:
        raise settings_error(exc, merged, Settings) from exc
    return LoadedSettings(
        settings=_with_provider_keys(settings, env),
        sources=leaf_sources(merged, Settings),
        config_file=toml_path,
    )


def _ecosystem_layer(env: Mapping[str, str]) -> Layer:
    """``OPENAI_API_KEY`` and friends, which other tools already read, below ``HYBRID_*``."""
    return {
        path: ProvidedValue(env[name], f"env {name}")
        for name, path in ECOSYSTEM_VARIABLES.items()
        if env.get(name)
    }


def _with_provider_keys(settings: Settings, env: Mapping[str, str]) -> Settings:
    """Fill each declared provider's and LAN server's key from the variable its
    ``api_key_env`` names."""
    providers = _with_keys(settings.cloud.providers, env)
    servers = _with_keys(settings.lan.servers, env)
    if providers == settings.cloud.providers and servers == settings.lan.servers:
        return settings
    cloud = settings.cloud.model_copy(update={"providers": providers})
    lan = settings.lan.model_copy(update={"servers": servers})
    return settings.model_copy(update={"cloud": cloud, "lan": lan})


_Keyed = TypeVar("_Keyed", CompatibleProviderSettings, LanServerSettings)


def _with_keys(declared: list[_Keyed], env: Mapping[str, str]) -> list[_Keyed]:
    return [
        item.model_copy(update={"api_key": SecretStr(env[item.api_key_env])})
        if item.api_key is None and item.api_key_env and env.get(item.api_key_env)
        else item
        for item in declared
    ]


__all__ = [
    "NOT_SETTINGS",
    "LoadedSettings",
    "LogLevel",
    "Settings",
    "default_config_file",
    "load_settings",
]
