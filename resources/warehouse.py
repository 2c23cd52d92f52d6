"""The warehouse dbt builds: read from Python as Arrow, never through pandas."""

from __future__ import annotations

import logging
import time
from contextlib import AbstractContextManager
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
from pydantic import Field

from resources.locks import hold


class Warehouse(dg.ConfigurableResource):
    """Read access to the DuckDB file that dbt builds (the default ``duckdb`` target).

    Reads open the file read-only, which DuckDB refuses while another process holds
    its write lock (a dbt build); they retry for ``lock_timeout_seconds`` before failing.
    Writers take turns through ``writing()``, an OS file lock beside the file that is
    released when its process dies, so a killed build never blocks the next one.
    """

    path: str = Field(description="DuckDB database file built by dbt.")
    lock_timeout_seconds: float = Field(default=120.0, description="How long a read waits for a dbt build.")
    write_lock_timeout_seconds: float = Field(
        default=3600.0, description="How long a writer waits for another writer to finish."
    )

    @property
    def write_lock_path(self) -> Path:
        return Path(self.path).parent / ".write.lock"

    def writing(self, purpose: str, log: logging.Logger | logging.LoggerAdapter) -> AbstractContextManager[None]:
        """Hold the warehouse's write lock for the block (every dbt invocation that writes it)."""
        return hold(self.write_lock_path, purpose, self.write_lock_timeout_seconds, log)

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
