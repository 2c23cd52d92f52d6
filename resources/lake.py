"""The lake: Delta tables under one root, a local folder by default or an object store."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date
from typing import Literal

import dagster as dg
import polars as pl
import pyarrow as pa
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError, TableNotFoundError
from pydantic import Field
from tenacity import before_sleep_log, retry, retry_if_exception_type, stop_after_attempt, wait_random_exponential

# Two runs writing one table at once: delta-rs refuses the later commit ("a concurrent
# transaction added new data"). Each write here is a whole-day overwrite or a create
# that ignores an existing table, so writing again on the new version is exact and
# idempotent; jittered backoff keeps the writers from colliding again.
retry_on_commit_conflict = retry(
    retry=retry_if_exception_type(CommitFailedError),
    wait=wait_random_exponential(multiplier=0.2, max=10),
    stop=stop_after_attempt(12),
    before_sleep=before_sleep_log(logging.getLogger("churn_platform"), logging.INFO),
    reraise=True,
)


class Lake(dg.ConfigurableResource):
    """Delta Lake tables addressed by name (``raw/sessions``, ``predictions/churn``).

    ``root`` is a folder or a URI (``s3://bucket/lake``); ``storage_options`` go to
    delta-rs unchanged (credentials, endpoint, region), so production needs no code.
    """

    root: str = Field(description="Folder or object-store URI holding every Delta table.")
    storage_options: dict[str, str] = Field(default_factory=dict, description="delta-rs storage options.")

    def uri(self, name: str) -> str:
        return f"{self.root.rstrip('/')}/{name}"

    def _options(self) -> dict[str, str] | None:
        return self.storage_options or None

    def replace_days(
        self,
        name: str,
        data: pl.DataFrame | Callable[[], pa.RecordBatchReader],
        first: date,
        last: date,
        extra: str = "",
        add_columns: bool = False,
    ) -> int:
        """Replace the days ``first..last`` of a table partitioned by ``ds`` with ``data``.

        A predicate overwrite: re-running a day replaces its rows, never duplicates
        them, and rows outside the predicate are refused by delta-rs. ``extra`` narrows
        the predicate further (one table's rows in a shared table). ``data`` is a frame,
        or a function returning a fresh stream of record batches: delta-rs writes the
        stream's files as the batches come and commits them once at the end, so the
        rows are never held whole and a crash before the commit leaves the old days
        visible (its files are unreferenced, for vacuum). On a commit conflict the
        function is called again. ``add_columns`` merges columns the table lacks into its
        schema (older rows read null), so an output table gains a column without a
        migration. Returns the version.
        """
        predicate = f"ds >= '{first.isoformat()}' AND ds <= '{last.isoformat()}'"
        if extra:
            predicate = f"{predicate} AND {extra}"
        source = data.to_arrow if isinstance(data, pl.DataFrame) else data
        self._write(name, source, predicate, "merge" if add_columns else None)
        return self.version(name)

    @retry_on_commit_conflict
    def _write(
        self,
        name: str,
        data: Callable[[], pa.Table | pa.RecordBatchReader],
        predicate: str,
        schema_mode: Literal["merge"] | None,
    ) -> None:
        write_deltalake(
            self.uri(name),
            data(),
            mode="overwrite",
            partition_by=["ds"],
            predicate=predicate,
            schema_mode=schema_mode,
            storage_options=self._options(),
        )

    def version(self, name: str) -> int | None:
        """The table's current version, or None when it does not exist yet."""
        try:
            return DeltaTable(self.uri(name), storage_options=self._options()).version()
        except TableNotFoundError:
            return None

    def create(self, name: str, schema: dict[str, pl.DataType]) -> bool:
        """Create an empty table partitioned by ``ds`` unless it exists; True if created.

        An empty table lets dbt compile and document its sources on a fresh home.
        """
        if self.exists(name):
            return False
        self._create(name, schema)
        return True

    @retry_on_commit_conflict
    def _create(self, name: str, schema: dict[str, pl.DataType]) -> None:
        write_deltalake(
            self.uri(name),
            pl.DataFrame(schema=schema).to_arrow(),
            mode="ignore",
            partition_by=["ds"],
            storage_options=self._options(),
        )

    def exists(self, name: str) -> bool:
        return self.version(name) is not None

    def days(self, name: str, last: date) -> set[date]:
        """The days up to ``last`` that hold rows (read from the Delta log, not the data)."""
        try:
            table = DeltaTable(self.uri(name), storage_options=self._options())
        except TableNotFoundError:
            return set()
        found = {date.fromisoformat(p["ds"]) for p in table.partitions()}
        return {d for d in found if d <= last}

    def scan(self, name: str) -> pl.LazyFrame:
        return pl.scan_delta(self.uri(name), storage_options=self._options())

    def read_days(self, name: str, first: date, last: date | None = None) -> pl.DataFrame:
        """The rows of days ``first..last`` (one day when ``last`` is omitted)."""
        last = last or first
        return self.scan(name).filter(pl.col("ds").is_between(first, last)).collect()

    @retry_on_commit_conflict
    def overwrite(self, name: str, data: pl.DataFrame) -> int:
        """Replace a whole unpartitioned table (a published snapshot) in one commit; returns the version."""
        write_deltalake(
            self.uri(name), data.to_arrow(), mode="overwrite", schema_mode="overwrite", storage_options=self._options()
        )
        return self.version(name)

    @retry_on_commit_conflict
    def append(self, name: str, data: pa.Table) -> None:
        """Append rows to a table partitioned by ``ds`` (a log), creating it and merging new columns."""
        write_deltalake(
            self.uri(name),
            data,
            mode="append",
            partition_by=["ds"],
            schema_mode="merge",
            storage_options=self._options(),
        )

    def table(self, name: str) -> DeltaTable:
        return DeltaTable(self.uri(name), storage_options=self._options())

    @retry_on_commit_conflict
    def compact(self, name: str, day: date) -> int:
        """Rewrite a day's small files (a log's micro-batches) into few; returns the files removed."""
        metrics = self.table(name).optimize.compact(partition_filters=[("ds", "=", day.isoformat())])
        return int(metrics.get("numFilesRemoved", 0))
