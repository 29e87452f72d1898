"""The ``[ledger]``, ``[pricing]``, ``[energy]`` and ``[budget]`` settings: what hybrid records
about each request, how it prices it, and how much cloud spend it allows::

    [ledger]
    retention_days = 30
    url = "postgresql://hybrid:password@db.lan:5432/hybrid"   # shared by a fleet; unset: SQLite

    [[pricing.overrides]]
    provider = "openai"
    model = "gpt-4.1-mini"
    input = 0.40
    output = 1.60
    cached_input = 0.10

    [budget]
    daily_usd = 1.0
    per_provider = { anthropic = { monthly_usd = 5.0 } }
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from typing_extensions import TypedDict

LEDGER_FILE_NAME = "ledger.sqlite3"
"""The ledger's file name in the data folder when ``ledger.path`` is unset."""

Usd = Annotated[float, Field(ge=0)]


def _qualified(value: str) -> str:
    provider, _, model = value.partition("/")
    if not provider or not model:
        raise ValueError("must be provider/model, e.g. openai/gpt-4.1-mini")
    return value


class LedgerSettings(BaseModel):
    """Where the ledger records one row per request: a SQLite file, or a shared PostgreSQL
    database."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: Path | None = Field(
        default=None,
        description=f"The ledger file; unset: {LEDGER_FILE_NAME} in the data folder (home).",
    )
    retention_days: int = Field(
        default=90,
        ge=0,
        description="Records older than this many days are deleted; 0 keeps them forever.",
    )

    url: SecretStr | None = Field(
        default=None,
        description=(
            "A PostgreSQL database shared by several daemons (postgresql://user:password@host:"
            "5432/database), holding the records and the budget; unset: the SQLite file. "
            "Shown masked."
        ),
    )
    instance: str = Field(
        default_factory=lambda: socket.gethostname() or "localhost",
        description=(
            "This daemon's name in a shared ledger: each record names it, stats --by instance "
            "groups by it; default: the host name."
        ),
    )

    @field_validator("path")
    @classmethod
    def _expand_path(cls, value: Path | None) -> Path | None:
        return value.expanduser() if value is not None else None

    @field_validator("url")
    @classmethod
    def _postgresql_url(cls, value: SecretStr | None) -> SecretStr | None:
        # The message never repeats the value: it may hold a password.
        if value is None:
            return None
        scheme, sep, _ = value.get_secret_value().partition("://")
        if not sep or scheme.lower() not in ("postgresql", "postgres"):
            raise ValueError(
                "must be a PostgreSQL URL, postgresql://user:password@host:5432/database "
                "(unset it to keep the ledger in the SQLite file)"
            )
        return value

    @field_validator("instance")
    @classmethod
    def _one_word(cls, value: str) -> str:
        if not value or len(value) > 64 or any(char.isspace() for char in value):
            raise ValueError(
                "must be 1 to 64 characters without spaces, naming this daemon, e.g. edge-box-7"
            )
        return value

    def resolved_path(self, home: Path) -> Path:
        """Return the ledger file to use.

        Args:
            home: The data folder (``Settings.home``).

        Returns:
            ``path`` when set, else ``home / "ledger.sqlite3"``.
        """
        return self.path if self.path is not None else home / LEDGER_FILE_NAME

    def source(self, home: Path) -> Path | str:
        """The ledger to read: the shared database's URL when ``url`` is set, else the file
        (:meth:`resolved_path`)."""
        return self.url.get_secret_value() if self.url is not None else self.resolved_path(home)


class PriceOverride(BaseModel):
    """One model's price, replacing (or adding to) the shipped table."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: str = Field(min_length=1, description="Provider name: openai, anthropic, or yours.")
    model: str = Field(min_length=1, description="Model name as sent to the provider.")
    input: Usd = Field(description="USD per 1M input (prompt) tokens.")
    output: Usd = Field(description="USD per 1M output (completion) tokens.")
    cached_input: Usd | None = Field(
        default=None,
        description=(
            "USD per 1M input tokens read from the provider's prompt cache; unset: a request "
            "that read cached tokens is recorded as unpriced."
        ),
    )
    cache_write: Usd | None = Field(
        default=None,
        description=(
            "USD per 1M input tokens written to the provider's prompt cache (Anthropic); "
            "unset: a request that wrote to the cache is recorded as unpriced."
        ),
    )


class PricingSettings(BaseModel):
    """Cloud prices, used for spend and for what a local answer saved."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    overrides: list[PriceOverride] = Field(
        default_factory=list,
        description="Prices that win over the shipped table ([[pricing.overrides]]).",
    )
    reference_model: str = Field(
        default="openai/gpt-4.1-mini",
        description=(
            "With no cloud configured, the cloud model (provider/model) a local answer is "
            "compared with to count the cost it avoided."
        ),
    )

    _check_reference = field_validator("reference_model")(_qualified)


class EnergySettings(BaseModel):
    """What a local answer costs in electricity."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cpu_watts: float = Field(
        default=15.0,
        ge=0,
        description="Watts drawn per busy CPU second (a laptop's package power under load).",
    )
    gpu_watts: float | None = Field(
        default=None,
        ge=0,
        description=(
            "Watts per busy GPU second when the GPU's own energy counter cannot be read; "
            "unset: GPU energy counts only when measured."
        ),
    )
    usd_per_kwh: float = Field(default=0.17, ge=0, description="Electricity price, USD per kWh.")


class ProviderBudget(TypedDict, total=False):
    """One provider's caps.  A plain mapping, so ``hybrid config`` can print it as JSON."""

    __pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[misc]

    daily_usd: Usd | None
    monthly_usd: Usd | None


class BudgetSettings(BaseModel):
    """Caps on cloud spend; days and months are UTC."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    daily_usd: Usd | None = Field(
        default=None, description="Cloud spend allowed per day; unset: no cap."
    )
    monthly_usd: Usd | None = Field(
        default=None, description="Cloud spend allowed per month; unset: no cap."
    )
    per_provider: dict[str, ProviderBudget] = Field(
        default_factory=dict,
        description='Caps for one provider: {"openai": {"daily_usd": 0.5, "monthly_usd": 5}}.',
    )
    warn_percent: float = Field(
        default=80.0,
        gt=0,
        le=100,
        description="Spend past this percentage of a cap puts the budget in the warning state.",
    )
