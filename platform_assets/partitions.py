"""The daily partitions shared by raw data, predictions and monitoring."""

import dagster as dg

from resources.settings import settings

daily_partitions = dg.DailyPartitionsDefinition(start_date=settings().start_date.isoformat())
