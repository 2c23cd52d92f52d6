"""Reading a raw source's days: each day of a table from its landed file, else from the built-in world.

Plain logic over the ``RawSource`` resource's configuration, called by the raw ingest
asset and the landing sensor. The simulator fills only days without a landed file, and
only when the source enables it (never in production).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import date
from pathlib import Path

import polars as pl

from platform_assets.landing import Held, LandingFileError, LandingZone, Rejected, Rules
from resources.sources import LANDING_RULES, RawSource
from simulator.world import TABLES, simulate_windows

SIMULATOR = "simulator"


def landing_zone(source: RawSource, tables: list[str], known_columns: Iterable[str] = ()) -> LandingZone:
    """The source's landing zone, whose folders may be named after ``tables``; notes may show ``known_columns``."""
    rules = Rules(
        **{rule: getattr(source, rule) for rule in LANDING_RULES},
        first_day=source.simulator.start,  # the first partition, in either mode
        known_columns=frozenset(known_columns),
    )
    return LandingZone(Path(source.landing_root), tuple(tables), rules)


def load_days(
    source: RawSource,
    columns: dict[str, list[str]],
    windows: list[tuple[date, date]],
    known_tables: list[str],
    known_columns: Iterable[str] = (),
    may_empty: Callable[[str, date], bool] = lambda table, day: True,
) -> Iterator[tuple[dict[str, list[pl.DataFrame]], list[Rejected | Held]]]:
    """Load each window ``(first, last)`` of days of each table in ``columns`` (table -> expected columns).

    Yields, window by window, frames per table with ``ds``, ``_source_file`` and
    ``_source_row`` (landed files as landed, simulated ones typed), and what was moved
    aside: files of these days that could not be read, and (with the first window)
    anything in the zone's root or these tables' folders that is not one day of one
    table (``known_tables`` name the folders). They are moved before they are yielded,
    so the caller can fail loudly while nothing is lost. The simulator replays the
    world once for all windows, so a long range costs one pass and one window's memory.

    A day is replaced only by a complete delivery: a file still being written (not
    quiet yet, changed while read, a cut last line when so configured) is ``Held``,
    left in place and yielded like a rejection, so the caller keeps the day's rows;
    a 0-row file for a day where ``may_empty`` says no is moved aside.
    """
    zone = landing_zone(source, known_tables, known_columns)
    inventory = zone.inventory()
    swept: list[Rejected | Held] = list(
        zone.sweep([s for s in inventory.strays if s.table in columns or s.path.parent == zone.root])
    )
    swept += [Held(w.path, w.problem, w.table, w.day) for w in inventory.waiting if w.table in columns and w.day]
    found = {(f.table, f.day): f for f in inventory.files}
    simulated = _simulated(source, columns, windows, found)
    for first, last in windows:
        rejected, swept = swept, []
        frames: dict[str, list[pl.DataFrame]] = {table: [] for table in columns}
        days = pl.date_range(first, last, eager=True).to_list()
        landed = {table: {d: found.get((table, d)) for d in days} for table in columns}
        for table, files in landed.items():
            for day, landed_file in files.items():
                if landed_file is None:
                    continue
                path = landed_file.path
                try:
                    frame = zone.read(path, columns[table], landed_file)
                    if frame.height == 0 and not may_empty(table, day):
                        raise LandingFileError(
                            path,
                            None,
                            f"no rows, but {day} already holds stored rows of {table}, and its contract does "
                            "not allow emptying a day (an empty delivery is more often a failed export)",
                        )
                    frames[table].append(frame.with_columns(ds=pl.lit(day)))
                except LandingFileError as error:
                    if error.hold:
                        rejected.append(Held(path, error.located, table, day))
                    else:
                        rejected.append(zone.reject(path, error.located, table, day))
        if (first, last) in simulated:
            # Days whose files were moved aside are not filled: their delivery failed.
            events = next(simulated[(first, last)])
            for table in frames:
                if table not in TABLES:  # a newly added source comes from landed files only
                    continue
                missing = [d for d, p in landed[table].items() if p is None and d >= source.simulator.start]
                frame = events[table].filter(pl.col("ds").is_in(missing))
                frames[table].append(
                    frame.with_columns(
                        pl.lit(SIMULATOR).alias("_source_file"),
                        pl.int_range(1, pl.len() + 1, dtype=pl.Int64).over("ds").alias("_source_row"),
                    )
                )
        yield frames, rejected


def _simulated(
    source: RawSource, columns: dict[str, list[str]], windows: list[tuple[date, date]], found: dict
) -> dict[tuple[date, date], Iterator[dict[str, pl.DataFrame]]]:
    """One simulation over the windows that have a day without a landed file, by window."""
    if not source.simulator_enabled:
        return {}
    start = source.simulator.start
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
    events = simulate_windows(source.simulator, list(wanted.values()))
    return dict.fromkeys(wanted, events)
