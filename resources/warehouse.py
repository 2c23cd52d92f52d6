"""The warehouse dbt builds: read from Python as Arrow, never through pandas."""

from __future__ import annotations

import time

import dagster as dg
import duckdb
import polars as pl
from pydantic import Field


class Warehouse(dg.ConfigurableResource):
    """Read access to the DuckDB file that dbt builds (the default ``duckdb`` target).

    Reads open the file read-only, which DuckDB refuses while another process holds
    its write lock (a dbt build); they retry for ``lock_timeout_seconds`` before failing.
    """

    path: str = Field(description="DuckDB database file built by dbt.")
    lock_timeout_seconds: float = Field(default=120.0, description="How long a read waits for a dbt build.")

    def query(self, sql: str, params: list | None = None) -> pl.DataFrame:
        deadline = time.monotonic() + self.lock_timeout_seconds
        while True:
            try:
                with duckdb.connect(self.path, read_only=True) as con:
                    return con.sql(sql, params=params).pl()
            except duckdb.IOException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1.0)

    def table(self, relation: str, where: str = "", params: list | None = None) -> pl.DataFrame:
        return self.query(f"select * from {relation}" + (f" where {where}" if where else ""), params)
