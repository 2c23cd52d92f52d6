"""The daily partitions shared by raw data, predictions and monitoring."""

from __future__ import annotations

from datetime import date

import dagster as dg

from resources.settings import settings

daily_partitions = dg.DailyPartitionsDefinition(start_date=settings().start_date.isoformat())


def partition_hint(first: date, last: date) -> str | None:
    """Why snapshot days ``first..last`` cannot all be scored as daily partitions, and what to set; None if they can.

    Predictions and monitoring are partitioned by day, so a snapshot day outside the
    partitions could never be scored; saying so at training beats an unknown-partition
    error at the first scoring.
    """
    start = daily_partitions.start.date()
    if first < start:
        return (
            f"snapshot dates {first}..{last} begin before the first daily partition {start}; predictions and "
            f"monitoring are daily partitions, so set PLATFORM_START_DATE={first} (or earlier) and reload"
        )
    end = daily_partitions.get_last_partition_key()
    if end is None or last > date.fromisoformat(end):
        return (
            f"snapshot dates {first}..{last} reach past the last daily partition {end} (Dagster's daily partitions "
            "end with the last complete day), so those days cannot be scored yet"
        )
    return None
