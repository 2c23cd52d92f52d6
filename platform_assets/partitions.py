"""The daily partitions shared by raw data, predictions and monitoring."""

import dagster as dg

from resources.settings import start_date

daily_partitions = dg.DailyPartitionsDefinition(start_date=start_date())
