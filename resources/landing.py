"""The landing zone: files dropped at ``<root>/<table>/<YYYY-MM-DD>.<csv|csv.gz|parquet>``.

A file is one day of one raw table. Files stay where they land (re-running a day
re-reads its file). Nothing in the zone is ignored: anything that is not one day of
one known table (an unknown folder, a ``.txt``, a name that is not a day, two files
for the same day) and any file that cannot be read is moved to ``<root>/_rejected/``
with a note saying why, so a bad delivery is never lost, never silently skipped and
never retried in a loop.

Messages never quote a file's content: they name the file, the line and the problem,
so personal data in a broken row cannot leak into logs or notes.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
import shutil
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import polars as pl
import pyarrow.parquet as pq

SUFFIXES = (".csv", ".csv.gz", ".parquet")  # matched case-insensitively
REJECTED = "_rejected"
_DAY = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})$")
_COLUMN_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,40}$")  # shown in errors; anything else may be data
_BOM = b"\xef\xbb\xbf"
csv.field_size_limit(2**31 - 1)  # a long value is the contract's to judge, not the reader's


class LandingFileError(ValueError):
    """A landed file that cannot be read as its table; names the file and the line."""

    def __init__(self, path: Path, line: int | None, problem: str):
        self.path, self.line, self.problem = path, line, problem
        super().__init__(f"{path}: {self.located}")

    @property
    def located(self) -> str:
        """The problem with its line, without the file's name."""
        return f"line {self.line}: {self.problem}" if self.line else self.problem


@dataclass(frozen=True)
class LandedFile:
    table: str
    day: date
    path: Path

    @property
    def fingerprint(self) -> str:
        """Changes when the file is replaced, so a re-delivered day is ingested again."""
        stat = self.path.stat()
        return f"{self.table}/{self.path.name}@{stat.st_mtime_ns}:{stat.st_size}"


@dataclass(frozen=True)
class Stray:
    """Something in the zone that is not one day of one known table, and why."""

    path: Path
    problem: str
    table: str | None = None  # the folder's table, when it is a known one
    day: date | None = None  # the day its name gives, when it gives one


@dataclass(frozen=True)
class Rejected:
    """A file or folder moved aside: where it was, where it is, why, and its rows."""

    path: Path
    moved_to: Path
    problem: str
    table: str | None
    day: date | None
    rows: int  # data rows it held (lines after the header for CSV), 0 when unknown

    def __str__(self) -> str:
        return f"{self.path}: {self.problem} (moved to {self.moved_to})"


@dataclass(frozen=True)
class Inventory:
    files: list[LandedFile]
    strays: list[Stray]


@dataclass(frozen=True)
class LandingZone:
    root: Path
    tables: tuple[str, ...]  # the tables a folder may be named after

    def inventory(self) -> Inventory:
        """Every entry of the zone: ingestible files (oldest day first), and the rest."""
        files: dict[tuple[str, date], list[Path]] = defaultdict(list)
        strays: list[Stray] = []
        entries = sorted(self.root.iterdir()) if self.root.is_dir() else []
        for entry in entries:
            if entry.name == REJECTED:
                continue
            if not entry.is_dir():
                strays.append(Stray(entry, "a file outside any table folder; expected <table>/<YYYY-MM-DD>.csv"))
            elif entry.name not in self.tables:
                strays.append(Stray(entry, f"no raw table is named {entry.name!r}; known tables: {list(self.tables)}"))
            else:
                for path in sorted(entry.iterdir()):
                    day, problem = _day_of(path)
                    if problem:
                        strays.append(Stray(path, problem, entry.name, day))
                    else:
                        files[(entry.name, day)].append(path)
        landed = []
        for (table, day), paths in files.items():
            if len(paths) == 1:
                landed.append(LandedFile(table, day, paths[0]))
                continue
            names = " and ".join(p.name for p in paths)
            problem = f"{len(paths)} files for {table} on {day}: {names}; land exactly one per day"
            strays.extend(Stray(p, problem, table, day) for p in paths)
        return Inventory(sorted(landed, key=lambda f: (f.day, f.table)), strays)

    def read(self, path: Path, columns: list[str]) -> pl.DataFrame:
        """Read a landed file as strings (CSV) or its own types (Parquet), with lineage.

        Adds ``_source_file`` and ``_source_row`` (the file's true line for CSV, counting
        quoted newlines and any line ending; the row number for Parquet). Turning values
        into the contract's types is the contract's job, row by row, so one bad value
        quarantines one row, not the file. A file whose structure is broken raises
        ``LandingFileError``, and so does any other failure to parse it.
        """
        try:
            reader = _read_parquet if path.name.lower().endswith(".parquet") else _read_csv
            frame = reader(path, columns)
        except LandingFileError:
            raise
        except Exception as error:  # a parser crash is a bad file, moved aside like any other
            raise LandingFileError(path, None, f"could not be parsed ({type(error).__name__})") from error
        return frame.with_columns(pl.lit(str(path)).alias("_source_file"))

    def sweep(self, strays: list[Stray]) -> list[Rejected]:
        """Move strays aside; one already moved by another process (the sensor, a run) is skipped."""
        moved = []
        for stray in strays:
            try:
                moved.append(self.reject(stray.path, stray.problem, stray.table, stray.day))
            except FileNotFoundError:
                continue
        return moved

    def reject(self, path: Path, problem: str, table: str | None = None, day: date | None = None) -> Rejected:
        """Move a file or folder aside with a note of what is wrong; nothing is deleted."""
        relative = path.parent.relative_to(self.root)
        target_dir = self.root / REJECTED / relative
        target_dir.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        name, suffix = _split_suffix(path.name)
        target = target_dir / f"{name}.{stamp}{suffix}"
        rows = _count_rows(path)
        shutil.move(path, target)
        (target_dir / f"{target.name}.error.txt").write_text(
            f"{path}: {problem}\nMoved here from {path} at {stamp}.\n", encoding="utf-8"
        )
        return Rejected(path, target, problem, table, day, rows)


def _split_suffix(name: str) -> tuple[str, str]:
    lower = name.lower()
    for suffix in sorted(SUFFIXES, key=len, reverse=True):
        if lower.endswith(suffix):
            return name[: -len(suffix)], name[-len(suffix) :]
    stem, dot, ext = name.rpartition(".")
    return (stem, f".{ext}") if dot and stem else (name, "")


def _day_of(path: Path) -> tuple[date | None, str | None]:
    """The day a file's name gives, or why it gives none."""
    if not path.is_file():
        return None, "not a file; a table folder holds one file per day"
    name, suffix = _split_suffix(path.name)
    if suffix.lower() not in SUFFIXES:
        return None, f"unsupported file type {suffix or '(none)'!r}; expected one of {list(SUFFIXES)}"
    match = _DAY.match(name)
    if not match:
        return None, f"the name {name!r} is not a day (YYYY-MM-DD)"
    try:
        return date(*map(int, match.groups())), None
    except ValueError as error:
        return None, f"the name {name!r} is not a day ({error})"


def _count_rows(path: Path) -> int:
    """Data rows of a file about to be rejected, for the run's accounting."""
    try:
        if path.is_dir():
            return 0
        if path.name.lower().endswith(".parquet"):
            return pq.read_metadata(path).num_rows
        data = _file_bytes(path)
        return max(sum(1 for line in data.splitlines() if line.strip()) - 1, 0)
    except Exception:  # an unreadable file's rows are unknown
        return 0


def _file_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    if path.name.lower().endswith(".gz"):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as error:
            raise LandingFileError(path, None, f"not a readable gzip file ({error})") from error
    return data.removeprefix(_BOM)


def _read_parquet(path: Path, columns: list[str]) -> pl.DataFrame:
    try:
        frame = pl.read_parquet(path)
    except Exception as error:  # polars raises several types for corrupt files
        raise LandingFileError(path, None, f"not a readable Parquet file ({type(error).__name__})") from error
    _check_columns(path, None, list(frame.columns), columns)
    for name in columns:
        dtype = frame.schema[name]
        if dtype.is_nested() or dtype in (pl.Binary, pl.Object):
            raise LandingFileError(path, None, f"column {name} holds {dtype}, which no contract type is read from")
    return frame.select(columns).with_columns(pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias("_source_row"))


def _read_csv(path: Path, columns: list[str]) -> pl.DataFrame:
    data = _file_bytes(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = _line_at(data, error.start)
        raise LandingFileError(path, line, f"not UTF-8 encoded (byte 0x{data[error.start]:02X})") from error
    if "\x00" in text:
        raise LandingFileError(
            path, _line_at(data, data.index(b"\x00")), "contains a NUL byte (binary data, or not UTF-8)"
        )
    if not text.strip():
        raise LandingFileError(path, 1, "empty file: no header")
    header = _csv_header(path, text)
    _check_columns(path, 1, header, columns)
    frame = _fast_csv(data, header)
    if frame is None:
        frame = _exact_csv(path, text, header)
    strings = [pl.when(pl.col(c) != "").then(pl.col(c)).alias(c) for c in columns]  # empty is null
    return frame.select(*strings, "_source_row")


def _csv_header(path: Path, text: str) -> list[str]:
    try:
        header = next(csv.reader(io.StringIO(text, newline=""), strict=True))
    except csv.Error as error:
        raise LandingFileError(path, 1, f"the header is not valid CSV ({error})") from error
    duplicated = sorted({c for c in header if header.count(c) > 1})
    if duplicated:
        raise LandingFileError(path, 1, f"the header repeats columns {_shown(duplicated)}")
    return header


def _fast_csv(data: bytes, header: list[str]) -> pl.DataFrame | None:
    """DuckDB's parser, when its records map to lines without doubt; else None.

    DuckDB skips blank lines and refuses mixed line endings, so those files go to the
    exact parser. Each record's line is the header's line count plus the lines of the
    records before it (one, plus the newlines inside their quoted values); the total
    must come out at the file's line count, or the exact parser decides.
    """
    body = data.rstrip(b"\r\n")
    cr, lf = body.count(b"\r"), body.count(b"\n")
    if (cr and not cr == lf == body.count(b"\r\n")) or b"\n\n" in body or b"\n\r\n" in body:
        return None
    try:
        frame = duckdb.read_csv(
            io.BytesIO(data),
            header=True,
            sep=",",
            quotechar='"',
            escapechar='"',
            auto_detect=False,
            max_line_size=max(len(data), 2_097_152),
            columns={name: "VARCHAR" for name in header},
        ).pl()
    except duckdb.Error:
        return None
    header_lines = 1 + sum(name.count("\n") for name in header)
    spans = pl.sum_horizontal(pl.col(c).str.count_matches("\n").fill_null(0) for c in header) + 1
    lines = frame.select(
        (pl.lit(header_lines + 1) + spans.cum_sum() - spans).cast(pl.Int64).alias("_source_row"),
        spans.alias("_span"),
    )
    last = (lines["_source_row"][-1] + lines["_span"][-1] - 1) if frame.height else header_lines
    if last != lf + 1:
        return None
    return frame.with_columns(lines["_source_row"])


def _exact_csv(path: Path, text: str, header: list[str]) -> pl.DataFrame:
    """Python's csv reader: slower, but it knows every record's first line and every error's."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    next(reader)
    rows, lines = [], []
    start = reader.line_num + 1
    try:
        for row in reader:
            if row:
                if len(row) != len(header):
                    raise LandingFileError(path, start, f"expected {len(header)} fields, found {len(row)}")
                rows.append(row)
                lines.append(start)
            start = reader.line_num + 1
    except csv.Error as error:  # its messages describe the quoting, never the content
        raise LandingFileError(path, start, f"malformed CSV ({error})") from error
    values = list(zip(*rows, strict=True)) if rows else [[] for _ in header]
    frame = pl.DataFrame(
        {name: list(column) for name, column in zip(header, values, strict=True)},
        schema={name: pl.String for name in header},
    )
    return frame.with_columns(pl.Series("_source_row", lines, dtype=pl.Int64))


def _line_at(data: bytes, offset: int) -> int:
    """The line of a byte offset, counting LF, CRLF and lone CR as line ends."""
    before = data[:offset]
    return before.count(b"\n") + before.count(b"\r") - before.count(b"\r\n") + 1


def _shown(names: list[str]) -> str:
    """Column names for a message; names that may be data (a headerless file) are not shown."""
    shown = [n for n in names if _COLUMN_NAME.match(n)]
    hidden = len(names) - len(shown)
    return f"{shown}" + (f" and {hidden} not shown (they may be data)" if hidden else "")


def _check_columns(path: Path, line: int | None, found: list[str], expected: list[str]) -> None:
    missing = [c for c in expected if c not in found]
    unexpected = [c for c in found if c not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing columns {missing}")
        if unexpected:
            parts.append(f"unexpected columns {_shown(unexpected)}")
        raise LandingFileError(path, line, f"{' and '.join(parts)}; expected {expected}")
