"""Metadata helpers: what a reader of the catalog sees instead of reading code."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

import dagster as dg
import polars as pl

if TYPE_CHECKING:
    from platform_assets.tables import Table

OWNER = "data-platform@example.com"


class KeepsTables(Protocol):
    """A declared dataset, as far as where its tables live goes (``Dataset.lake_table``)."""

    def lake_table(self, table: str) -> str: ...


def layer(name: str) -> dict[str, object]:
    """An asset's group, owner and ``layer`` tag: the catalog groups by one and filters by the other, so they agree."""
    return {"group_name": name, "owners": [OWNER], "tags": {"layer": name}}


def stored_in(
    table: Table, dataset: KeepsTables | None = None, key_columns: Mapping | None = None
) -> dict[str, object]:
    """An asset's metadata: the lake table it writes (a dataset's own, given one) and the documented
    columns the catalog shows (a dataset's key columns first)."""
    path = dataset.lake_table(table) if dataset is not None else str(table)
    return {"lake_table": path, "dagster/column_schema": table.catalog(key_columns)}


def markdown_table(frame: pl.DataFrame, max_rows: int = 10, digits: int = 4) -> str:
    """A Markdown table of the first rows (a preview, so a short loop over rows is fine)."""
    shown = frame.head(max_rows).with_columns(pl.col(pl.Float32, pl.Float64).round(digits))
    header = "| " + " | ".join(shown.columns) + " |"
    rule = "|" + "|".join("---" for _ in shown.columns) + "|"
    rows = ["| " + " | ".join(_cell(v) for v in row) + " |" for row in shown.iter_rows()]
    more = [f"\n_{frame.height - max_rows} more rows_"] if frame.height > max_rows else []
    return "\n".join([header, rule, *rows, *more])


def _cell(value: object) -> str:
    """A value as one Markdown table cell: a pipe or a line break in it would break the table."""
    if value is None:
        return ""
    return str(value).replace("|", "\\|").replace("\r", "\\r").replace("\n", "\\n")


def table_schema(columns: Mapping[str, tuple[object, str]]) -> dg.TableSchema:
    """The catalog's column schema from ``name -> (type, description)``."""
    return dg.TableSchema(
        columns=[
            dg.TableColumn(name=name, type=str(dtype), description=text) for name, (dtype, text) in columns.items()
        ]
    )
