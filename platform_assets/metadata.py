"""Metadata helpers: what a reader of the catalog sees instead of reading code."""

from __future__ import annotations

from collections.abc import Mapping

import dagster as dg
import polars as pl

OWNER = "data-platform@example.com"


def layer(name: str) -> dict[str, object]:
    """An asset's group, owner and ``layer`` tag: the catalog groups by one and filters by the other, so they agree."""
    return {"group_name": name, "owners": [OWNER], "tags": {"layer": name}}


def stored_in(table: str, columns: Mapping[str, tuple[object, str]]) -> dict[str, object]:
    """An asset's metadata: the lake table it writes and the documented columns the catalog shows."""
    return {"lake_table": table, "dagster/column_schema": table_schema(columns)}


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
