"""Turning landed values into the contract's types, strictly, one column at a time.

Nothing is inferred and nothing is cast silently: a value that does not fit its typed
column becomes null here and is reported as a failure of its row (the row is then
quarantined), never truncated, rounded or reinterpreted. The rules, for text (CSV)
and for Parquet's own types alike:

- integer: digits, with at most a zero fraction (``7`` and ``7.0`` are 7; ``1.9``
  fails, never truncated); from Parquet, integer types in range, or floats with no
  fractional part;
- number: a finite decimal (``1,5``, ``nan`` and ``inf`` fail);
- date: ``YYYY-MM-DD`` that exists (``05/01/2026`` and ``2026-13-45`` fail);
- timestamp: ISO-8601 ``YYYY-MM-DD[T ]HH:MM[:SS[.ffffff]]`` with ``Z``, an offset or
  no zone (taken as UTC), stored in UTC; from Parquet, datetimes (zoned ones converted
  to UTC). Integers (epochs) and dates fail: their unit or zone would be a guess;
  an offset may be ``+05`` (hours only);
- text: stripped and NFC-normalised; a control character (other than a quoted line
  break or tab) or an invisible one (zero-width, bidirectional marks) fails.

Lossless Parquet types are read as their values: a date written as a midnight
timestamp (pandas) is that date, a ``decimal(p,0)`` is an integer.

One list of null markers (``NULL_MARKERS``, and any whitespace-only value) means
"no value" in every column of every type, so a text column never stores ``N/A``
while a timestamp column quarantines it.
"""

from __future__ import annotations

import polars as pl

ROW = "_row"
INTEGER = r"^[+-]?\d+(\.0*)?$"
NUMBER = r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$"
DATE = r"^\d{4}-\d{2}-\d{2}$"
TIMESTAMP = r"^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2})(:\d{2}(?:\.\d{1,6})?)?(Z|[+-]\d{2}(?::?\d{2})?)?$"
NULL_MARKERS = ("NULL", "null", "N/A", "n/a", "None", "-")
# C0/C1 controls but tab and line breaks (a quoted value may span lines), zero-width and bidi marks, BOM.
INVISIBLE = "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2064\ufeff]"
EXPECTED = {
    "integer": "not an integer",
    "number": "not a finite number",
    "date": "not a date YYYY-MM-DD",
    "timestamp": "not an ISO-8601 timestamp",
    "text": "not text, or holds a control or invisible character",
}


def parse(frame: pl.DataFrame, dtypes: dict[str, pl.DataType]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Cast each column to its contract type; returns the typed frame and one failure per bad value."""
    typed = frame.with_columns(_cast(name, frame.schema[name], dtype).alias(name) for name, dtype in dtypes.items())
    lost = [
        frame.with_row_index(ROW)
        .filter(pl.col(name).is_not_null() & ~_null_marker(name, frame.schema[name]) & typed[name].is_null())
        .select(
            pl.col(ROW),
            pl.lit(name).alias("column"),
            pl.lit(_check(frame.schema[name], dtype)).alias("check"),
            _as_text(pl.col(name), frame.schema[name]).str.replace_all(INVISIBLE, "<ctrl>").alias("failure_case"),
        )
        for name, dtype in dtypes.items()
    ]
    return typed, pl.concat(lost, how="vertical") if lost else no_failures()


def no_failures() -> pl.DataFrame:
    return pl.DataFrame(schema={ROW: pl.UInt32, "column": pl.String, "check": pl.String, "failure_case": pl.String})


def _kind(dtype: pl.DataType) -> str:
    if dtype.is_integer():
        return "integer"
    if dtype.is_float():
        return "number"
    if dtype == pl.Date:
        return "date"
    if isinstance(dtype, pl.Datetime):
        return "timestamp"
    return "text"


def _check(source: pl.DataType, target: pl.DataType) -> str:
    """The failure's name: the declared type, what is wrong, and the file's type when it is not text."""
    check = f"dtype('{target}'): {EXPECTED[_kind(target)]}"
    return check if source in (pl.String, target) else f"{check} (the file's column is {source})"


def _null_marker(name: str, source: pl.DataType) -> pl.Expr:
    """A declared null marker, or a whitespace-only value, in a text column of the file."""
    if source != pl.String:
        return pl.lit(False)
    text = pl.col(name).str.strip_chars()
    return text.is_in(NULL_MARKERS) | (text == "")


def _as_text(column: pl.Expr, source: pl.DataType) -> pl.Expr:
    return column if source == pl.String else column.cast(pl.String)


def _cast(name: str, source: pl.DataType, target: pl.DataType) -> pl.Expr:
    column = pl.col(name)
    if source == pl.Null:
        return pl.lit(None, dtype=target)
    kind = _kind(target)
    if source == pl.String:
        return pl.when(~_null_marker(name, source)).then(_from_text(column.str.strip_chars(), kind, target))
    if source == target and kind != "number":
        return column
    if kind == "integer" and source.is_integer():
        return column.cast(target, strict=False)
    if kind == "integer" and source.is_decimal() and source.scale == 0:
        return column.cast(target, strict=False)
    if kind == "integer" and source.is_float():
        return pl.when(column.is_finite() & (column == column.round(0))).then(column.cast(target, strict=False))
    if kind == "number" and (source.is_integer() or source.is_float() or source.is_decimal()):
        return pl.when(column.cast(target, strict=False).is_finite()).then(column.cast(target, strict=False))
    if kind == "date" and source == pl.Date:
        return column
    if kind == "date" and isinstance(source, pl.Datetime):  # pandas writes dates as midnight timestamps
        return pl.when(column.dt.time() == pl.time(0)).then(column.dt.date())
    if kind == "timestamp" and isinstance(source, pl.Datetime):
        utc = column.dt.convert_time_zone("UTC").dt.replace_time_zone(None) if source.time_zone else column
        exact = (column.dt.nanosecond() % 1000 == 0) if source.time_unit == "ns" else pl.lit(True)
        return pl.when(exact).then(utc.cast(target, strict=False))
    if kind == "text" and isinstance(source, (pl.Categorical, pl.Enum)):
        return _from_text(column.cast(pl.String).str.strip_chars(), kind, target)
    return pl.lit(None, dtype=target)


def _from_text(text: pl.Expr, kind: str, target: pl.DataType) -> pl.Expr:
    """A stripped text value as the contract's type; null when it does not fit."""
    if kind == "integer":
        digits = text.str.replace(r"\.0*$", "")
        return pl.when(text.str.contains(INTEGER)).then(digits.cast(target, strict=False))
    if kind == "number":
        return pl.when(text.str.contains(NUMBER)).then(text.cast(target, strict=False))
    if kind == "date":
        return pl.when(text.str.contains(DATE)).then(text.str.to_date("%Y-%m-%d", strict=False))
    if kind == "timestamp":
        return _timestamp(text, target)
    return pl.when(~text.str.contains(INVISIBLE)).then(text.str.normalize("NFC"))


def _timestamp(text: pl.Expr, target: pl.DataType) -> pl.Expr:
    """ISO-8601 text to a UTC timestamp: the local time minus its offset."""
    parts = text.str.extract_groups(TIMESTAMP)
    local = pl.concat_str(
        parts.struct.field("1"), pl.lit(" "), parts.struct.field("2"), parts.struct.field("3").fill_null(":00")
    ).str.to_datetime("%Y-%m-%d %H:%M:%S%.f", time_unit=target.time_unit, strict=False)
    zone = parts.struct.field("4").str.replace(":", "", literal=True)
    hours, minutes = (
        zone.str.slice(1, 2).cast(pl.Int64, strict=False),
        zone.str.slice(3, 2).cast(pl.Int64, strict=False).fill_null(0),  # "+05": hours only
    )
    sign = pl.when(zone.str.starts_with("-")).then(-1).otherwise(1)
    offset = pl.when(zone.is_null() | (zone == "Z")).then(0).otherwise(sign * (hours * 60 + minutes))
    valid = zone.is_null() | (zone == "Z") | ((hours <= 23) & (minutes <= 59))
    return pl.when(valid).then(local - pl.duration(minutes=offset))
