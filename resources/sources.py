"""Where raw data comes from: the landing zone's folder and rules, and the built-in simulator's configuration.

The resource is configuration only; reading the days from it is plain logic in
``platform_assets.raw_source``.
"""

from __future__ import annotations

from typing import Literal

import dagster as dg
from pydantic import Field

from simulator.config import SimulatorConfig


class RawSource(dg.ConfigurableResource):
    """A day of a raw table comes from its landed file when there is one, else the simulator.

    With ``simulator_enabled`` off (production), a day without a file has no rows.
    """

    landing_root: str = Field(
        description="Folder of the landing zone: <root>/<table>/<YYYY-MM-DD>.<csv|csv.gz|parquet>."
    )
    simulator_enabled: bool = Field(default=True, description="Fill days without a landed file from the simulator.")
    simulator: SimulatorConfig = Field(default_factory=SimulatorConfig, description="The simulated business.")
    follow_symlinks: bool = Field(default=False, description="Follow symlinks to regular files inside the zone.")
    quiet_seconds: float = Field(default=5.0, ge=0, description="A file is taken once unchanged this long.")
    temporary_max_age_seconds: float = Field(
        default=86_400.0, ge=0, description="A temporary upload name waits this long, then is moved aside."
    )
    unterminated_last_line: Literal["reject", "hold"] = Field(
        default="reject", description="A CSV whose last line lacks its line break: moved aside, or left to finish."
    )
    max_file_bytes: int = Field(default=128 * 2**20, gt=0, description="Largest file (decompressed) read.")
    max_line_bytes: int = Field(default=8 * 2**20, gt=0, description="Longest CSV line read.")
    future_days: int = Field(default=7, ge=0, description="Files dated further ahead than this are moved aside.")
    require_marker: bool = Field(default=False, description="Take a file only with a _SUCCESS or <day>.done marker.")


# The landing zone's rules RawSource holds, each set by the setting of its name (PLATFORM_LANDING_<RULE>).
LANDING_RULES = tuple(
    name for name in RawSource.model_fields if name not in ("landing_root", "simulator_enabled", "simulator")
)
