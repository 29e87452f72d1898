"""hybrid's settings: one :class:`Settings` tree, and loading it with the source of every value.

The tree is split by the part of hybrid that reads it; each section lives in its own module:

- :mod:`hybrid.settings.core`: the :class:`Settings` root and :func:`load_settings`;
- :mod:`hybrid.settings.local`: ``[local]`` (the in-process model) and ``[probe]``;
- :mod:`hybrid.settings.server`: ``[server]``;
- :mod:`hybrid.settings.cloud`: ``[cloud]`` (providers, failover, reliability);
- :mod:`hybrid.settings.lan`: ``[lan]`` (a team's inference servers);
- :mod:`hybrid.settings.routing`: ``[routing]`` (each policy of the router);
- :mod:`hybrid.settings.ledger`: ``[ledger]``, ``[pricing]``, ``[energy]`` and ``[budget]``;
- :mod:`hybrid.settings.sources`: reading each layer (TOML, ``.env``, environment, command
  line) and merging them;
- :mod:`hybrid.settings.explain`: explaining invalid values, each with its source;
- :mod:`hybrid.settings.dotenv_file`: reading a ``.env`` file.
"""

from __future__ import annotations

from hybrid.settings.cloud import CloudSettings
from hybrid.settings.core import (
    LoadedSettings,
    LogLevel,
    Settings,
    default_config_file,
    load_settings,
)
from hybrid.settings.lan import LanServerSettings, LanSettings
from hybrid.settings.ledger import BudgetSettings, EnergySettings, LedgerSettings, PricingSettings
from hybrid.settings.local import MAX_CONTEXT_TOKENS, LocalSettings, ProbeSettings
from hybrid.settings.routing import RoutingSettings
from hybrid.settings.server import ServerSettings

__all__ = [
    "MAX_CONTEXT_TOKENS",
    "BudgetSettings",
    "CloudSettings",
    "EnergySettings",
    "LanServerSettings",
    "LanSettings",
    "LedgerSettings",
    "LoadedSettings",
    "LocalSettings",
    "LogLevel",
    "PricingSettings",
    "ProbeSettings",
    "RoutingSettings",
    "ServerSettings",
    "Settings",
    "default_config_file",
    "load_settings",
]
