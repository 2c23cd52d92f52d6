"""Where raw data comes from: files in the landing zone, and the built-in simulator."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import dagster as dg
import polars as pl
from pydantic import Field

from resources.landing import LandingFileError, LandingZone, Rejected
from resources.simulator import TABLES, SimulatorConfig, simulate

SIMULATOR = "simulator"


class RawSource(dg.ConfigurableResource):
    """A day of a raw table comes from its landed file when there is one, else the simulator.

    With ``simulator_enabled`` off (production), a day without a file has no rows.
    """

    landing_root: str = Field(
        description="Folder of the landing zone: <root>/<table>/<YYYY-MM-DD>.<csv|csv.gz|parquet>."
    )
    simulator_enabled: bool = Field(default=True, description="Fill days without a landed file from the simulator.")
    simulator: SimulatorConfig = Field(default_factory=SimulatorConfig, description="The simulated business.")

    def landing(self, tables: list[str]) -> LandingZone:
        """The landing zone, whose folders may be named after ``tables``."""
        return LandingZone(Path(self.landing_root), tuple(tables))

    def load(
        self, columns: dict[str, list[str]], first: date, last: date, known_tables: list[str]
    ) -> tuple[dict[str, list[pl.DataFrame]], list[Rejected]]:
        """Load days ``first..last`` of each table in ``columns`` (table -> expected columns).

        Returns, per table, frames with ``ds``, ``_source_file`` and ``_source_row``
        (landed files as landed, simulated ones typed), and what was moved aside: files
        of these days that could not be read, and anything in the zone's root or these
        tables' folders that is not one day of one table (``known_tables`` name the
        folders). They are moved before returning, so the caller can fail loudly while
        nothing is lost.
        """
        zone = self.landing(known_tables)
        inventory = zone.inventory()
        rejected = zone.sweep([s for s in inventory.strays if s.table in columns or s.path.parent == zone.root])
        frames: dict[str, list[pl.DataFrame]] = {table: [] for table in columns}
        days = pl.date_range(first, last, eager=True).to_list()
        found = {(f.table, f.day): f.path for f in inventory.files}
        landed = {table: {d: found.get((table, d)) for d in days} for table in columns}
        for table, files in landed.items():
            for day, path in files.items():
                if path is None:
                    continue
                try:
                    frames[table].append(zone.read(path, columns[table]).with_columns(ds=pl.lit(day)))
                except LandingFileError as error:
                    rejected.append(zone.reject(path, error.located, table, day))
        # A day whose files were moved aside is not filled by the simulator: its delivery failed.
        for item in rejected:
            if item.table in landed and item.day in landed[item.table]:
                landed[item.table][item.day] = item.moved_to

        if self.simulator_enabled:
            config = self.simulator
            # Tables the simulator does not know (a newly added source) come from landed files only.
            gaps = {
                t: [d for d, p in files.items() if p is None and d >= config.start]
                for t, files in landed.items()
                if t in TABLES
            }
            wanted = [d for ds in gaps.values() for d in ds]
            if wanted:
                simulated = simulate(config, min(wanted), max(wanted))
                for table, missing in gaps.items():
                    frame = simulated[table].filter(pl.col("ds").is_in(missing))
                    frames[table].append(
                        frame.with_columns(
                            pl.lit(SIMULATOR).alias("_source_file"),
                            pl.int_range(1, pl.len() + 1, dtype=pl.Int64).over("ds").alias("_source_row"),
                        )
                    )
        return frames, rejected
