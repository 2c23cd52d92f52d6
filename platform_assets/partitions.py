"""Every partitions definition of the graph: the days of raw data, predictions and monitoring,
the days of matured outcomes, the serving days and the review weeks.

Each is made from ``PLATFORM_START_DATE`` when asked for, not on import; two calls give
equal definitions, which is what Dagster compares.
"""

from __future__ import annotations

from datetime import date
from functools import cache

import dagster as dg

from resources.settings import settings


def daily_partitions() -> dg.DailyPartitionsDefinition:
    """The days of raw data, features, predictions and monitoring, from ``PLATFORM_START_DATE`` through yesterday."""
    return dg.DailyPartitionsDefinition(start_date=settings().start_date.isoformat())


def serving_days() -> dg.DailyPartitionsDefinition:
    """The days of online traffic: through today, whose requests are already being served."""
    return dg.DailyPartitionsDefinition(start_date=settings().start_date.isoformat(), end_offset=1)


def weekly_partitions() -> dg.WeeklyPartitionsDefinition:
    """The weeks of the review report."""
    return dg.WeeklyPartitionsDefinition(start_date=settings().start_date.isoformat())


@cache
def matured_partitions(horizon_days: int) -> dg.DailyPartitionsDefinition:
    """Daily partitions from ``PLATFORM_START_DATE`` through today plus ``horizon_days``.

    The day a prediction's outcome matures is its snapshot day plus the label horizon.
    For data whose days pass with the clock that day is a partition once it comes; an
    extract whose outcomes are already known (a one-off snapshot, ``horizon_days: 365``)
    is judged on a day up to a horizon after today, which must be a partition now.
    """
    return dg.DailyPartitionsDefinition(start_date=settings().start_date.isoformat(), end_offset=horizon_days)


def partition_hint(first: date, last: date) -> str | None:
    """Why snapshot days ``first..last`` cannot all be scored as daily partitions, and what to set; None if they can.

    Predictions and monitoring are partitioned by day from ``PLATFORM_START_DATE``, so an
    earlier snapshot day could never be scored; saying so at training beats an
    unknown-partition error at the first scoring. (Days after today become partitions
    as time passes.)
    """
    start = daily_partitions().start.date()
    if first < start:
        return (
            f"snapshot dates {first}..{last} begin before the first daily partition {start}; predictions and "
            f"monitoring are daily partitions, so set PLATFORM_START_DATE={first} (or earlier) and reload"
        )
    return None
