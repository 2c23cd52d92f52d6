"""A dbt-duckdb plugin: a raw Delta table as a dbt source, the landing days a build adds.

dbt-duckdb's own ``delta`` plugin copies the whole table into the warehouse on every
run, which grows with the history; a view over the scan instead is readable only in
the dbt process (other processes see neither its rows nor its columns, so Dagster
loses the staging models' column lineage). For a source whose meta says
``by_landing_day``, this plugin copies the landing days the build adds (``build_days``),
and the whole table on a build without days. The filter is on the ``ds`` partition, so
only those days' files are read. Written by hand because the built-in plugin has no
filter; it reuses that plugin's table loading (storage options, time travel).

A table that a later stage of the platform writes (the campaign log, written by the
first campaign) may not exist yet. A source that declares ``missing_table_columns``
(``{column: arrow type}``, e.g. ``int64``, ``string``, ``bool``, ``date32``) then
loads as an empty table of those columns, so the models reading it build as if
nothing had been logged; a source without it fails on a missing table, as before.
"""

from __future__ import annotations

import os
from datetime import date

import pyarrow as pa
import pyarrow.dataset as pads
from dbt.adapters.duckdb.plugins.delta import Plugin as DeltaPlugin
from deltalake import DeltaTable

FIRST_DAY, LAST_DAY, FIRST_LANDED_DAY = (
    "PLATFORM_BUILD_FIRST_DAY",
    "PLATFORM_BUILD_LAST_DAY",
    "PLATFORM_BUILD_FIRST_LANDED_DAY",
)


def build_days(first_day: str = "", last_day: str = "", first_landed_day: str = "") -> dict[str, str]:
    """The environment that tells dbt which days a build makes (ISO dates, inclusive): read by
    ``build_day`` in ``macros/snapshot_days.sql`` and by this plugin. ``first_landed_day``, when
    earlier landed days are missing from staging, widens the landing days staged. Without days,
    every variable is empty: a whole build, whatever the calling process had set."""
    return {FIRST_DAY: first_day, LAST_DAY: last_day, FIRST_LANDED_DAY: first_landed_day or first_day}


class Plugin(DeltaPlugin):
    def load(self, source_config):
        columns = source_config.get("missing_table_columns")
        if columns and not DeltaTable.is_deltatable(
            source_config["delta_table_path"], storage_options=source_config.get("storage_options") or None
        ):
            return pa.table({name: pa.array([], type=pa.type_for_alias(kind)) for name, kind in columns.items()})
        dataset = super().load(source_config)
        first = os.environ.get(FIRST_LANDED_DAY) or os.environ.get(FIRST_DAY)  # dbt run by hand: the two days
        last = os.environ.get(LAST_DAY)
        if not (source_config.get("by_landing_day") and first and last):
            return dataset
        day = pads.field("ds")
        return dataset.filter((day >= date.fromisoformat(first)) & (day <= date.fromisoformat(last)))
