"""Where raw data comes from: files in the landing zone, and the built-in simulator."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import dagster as dg
import polars as pl
from pydantic import Field

from resources.landing import LandingFileError, LandingZone, Rejected
from resources.simulator import TABLES, SimulatorConfig, simulate_windows

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
        self, columns: dict[str, list[str]], windows: list[tuple[date, date]], known_tables: list[str]
    ) -> Iterator[tuple[dict[str, list[pl.DataFrame]], list[Rejected]]]:
        """Load each window ``(first, last)`` of days of each table in ``columns`` (table -> expected columns).

        Yields, window by window, frames per table with ``ds``, ``_source_file`` and
        ``_source_row`` (landed files as landed, simulated ones typed), and what was moved
        aside: files of these days that could not be read, and (with the first window)
        anything in the zone's root or these tables' folders that is not one day of one
        table (``known_tables`` name the folders). They are moved before they are yielded,
        so the caller can fail loudly while nothing is lost. The simulator replays the
        world once for all windows, so a long range costs one pass and one window's memory.
        """
        zone = self.landing(known_tables)
        inventory = zone.inventory()
        swept = zone.sweep([s for s in inventory.strays if s.table in columns or s.path.parent == zone.root])
        found = {(f.table, f.day): f.path for f in inventory.files}
        simulated = self._simulated(columns, windows, found)
        for first, last in windows:
            rejected, swept = swept, []
            frames: dict[str, list[pl.DataFrame]] = {table: [] for table in columns}
            days = pl.date_range(first, last, eager=True).to_list()
            landed = {table: {d: found.get((table, d)) for d in days} for table in columns}
            for table, files in landed.items():
                for day, path in files.items():
                    if path is None:
                        continue
                    try:
                        frames[table].append(zone.read(path, columns[table]).with_columns(ds=pl.lit(day)))
                    except LandingFileError as error:
                        rejected.append(zone.reject(path, error.located, table, day))
            if (first, last) in simulated:
                # Days whose files were moved aside are not filled: their delivery failed.
                events = next(simulated[(first, last)])
                for table in frames:
                    if table not in TABLES:  # a newly added source comes from landed files only
                        continue
                    missing = [d for d, p in landed[table].items() if p is None and d >= self.simulator.start]
                    frame = events[table].filter(pl.col("ds").is_in(missing))
                    frames[table].append(
                        frame.with_columns(
                            pl.lit(SIMULATOR).alias("_source_file"),
                            pl.int_range(1, pl.len() + 1, dtype=pl.Int64).over("ds").alias("_source_row"),
                        )
                    )
            yield frames, rejected

    def _simulated(
        self, columns: dict[str, list[str]], windows: list[tuple[date, date]], found: dict
    ) -> dict[tuple[date, date], Iterator[dict[str, pl.DataFrame]]]:
        """One simulation over the windows that have a day without a landed file, by window."""
        if not self.simulator_enabled:
            return {}
        start = self.simulator.start
        wanted = {}
        for first, last in windows:
            gaps = [
                d
                for d in pl.date_range(max(first, start), last, eager=True).to_list()
                if any(t in TABLES and (t, d) not in found for t in columns)
            ]
            if gaps:
                wanted[(first, last)] = (gaps[0], gaps[-1])
        if not wanted:
            return {}
        events = simulate_windows(self.simulator, list(wanted.values()))
        return dict.fromkeys(wanted, events)
