"""The simulated business's configuration: its size, seed, start and the drift injected into it.

Apart from the world itself, so that the platform's settings can validate a simulator
setting at start (``PLATFORM_SIM_DRIFT``) without importing the world they configure.
"""

from __future__ import annotations

from datetime import date, timedelta

import dagster as dg
from pydantic import Field


class DriftSpec(dg.Config):
    """A change of behaviour from ``start_date`` on, to test monitoring against known truth."""

    start_date: str = Field(description="Day (ISO) from which the drift applies.")
    session_minutes_factor: float = Field(default=1.0, description="Multiplies session durations.")
    session_rate_factor: float = Field(default=1.0, description="Multiplies how often customers use the product.")
    ticket_rate_factor: float = Field(default=1.0, description="Multiplies support ticket volume.")
    price_factor: float = Field(default=1.0, description="Multiplies prices of plan changes.")
    new_channel: str | None = Field(default=None, description="A new acquisition channel for new signups.")
    new_channel_share: float = Field(default=0.0, description="Share of new signups from the new channel.")

    @property
    def start(self) -> date:
        return date.fromisoformat(self.start_date)


class SimulatorConfig(dg.Config):
    """Size and seed of the simulated business, and the drift injected into it.

    ``customers`` is about how many distinct customers appear within ``days`` days:
    70% are on the books at ``start`` and the rest sign up evenly over the days.
    Dagster run config, a resource field and the platform settings all use this one
    class, so a drift scenario is a configuration change, not a code change.
    """

    start_date: str = Field(default="2026-01-01", description="First day (ISO) of the simulated business.")
    customers: int = Field(default=20_000, description="About how many customers appear within `days` days.")
    days: int = Field(default=180, description="Days over which `customers` appear.")
    seed: int = Field(default=42, description="Random seed; the same seed gives the same data.")
    drift: DriftSpec | None = Field(default=None, description="Drift injected from a given day.")
    contacts_dir: str | None = Field(
        default=None,
        description="Folder of the platform's exported retention contacts (Parquet); the world reacts to them.",
    )

    @property
    def start(self) -> date:
        return date.fromisoformat(self.start_date)

    @property
    def end(self) -> date:
        return self.start + timedelta(days=self.days - 1)
