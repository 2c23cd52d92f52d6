"""The landing zone: files dropped at ``<root>/<table>/<YYYY-MM-DD>.<csv|parquet>``.

A file is one day of one raw table. Files stay where they land (re-running a day
re-reads its file); a file that cannot be parsed is moved to ``<root>/_rejected/<table>/``
with a note naming the line that broke it, so a bad delivery is never lost or retried
in a loop.
"""

from __future__ import annotations

import csv
import re
import shutil
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import polars as pl

EXTENSIONS = (".csv", ".parquet")
REJECTED = "_rejected"
_DUCKDB_LINE = re.compile(r"CSV Error on Line: (\d+)")


class LandingFileError(ValueError):
    """A landed file that cannot be read as its table; names the file and the line."""

    def __init__(self, path: Path, line: int | None, problem: str):
        self.path, self.line, self.problem = path, line, problem
        where = f"{path}, line {line}" if line else str(path)
        super().__init__(f"{where}: {problem}")


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
class LandingZone:
    root: Path

    def files(self, tables: list[str] | None = None) -> list[LandedFile]:
        """Every well-named file in the zone, oldest day first; other files are ignored."""
        found = []
        for folder in sorted(p for p in self.root.glob("*") if p.is_dir() and p.name != REJECTED):
            if tables is not None and folder.name not in tables:
                continue
            for path in sorted(folder.iterdir()):
                day = _day_of(path)
                if day is not None:
                    found.append(LandedFile(folder.name, day, path))
        return sorted(found, key=lambda f: (f.day, f.table))

    def file_for(self, table: str, day: date) -> Path | None:
        for ext in EXTENSIONS:
            path = self.root / table / f"{day.isoformat()}{ext}"
            if path.exists():
                return path
        return None

    def read(self, path: Path, columns: list[str]) -> pl.DataFrame:
        """Read a landed file with ``_source_file`` and ``_source_row`` (the line for CSV).

        CSV values stay strings here: turning them into types is the contract's job,
        row by row, so one bad value quarantines one row, not the file. Only a file
        whose structure is broken (ragged lines, bad quoting, encoding, wrong header)
        raises ``LandingFileError``.
        """
        if path.suffix == ".parquet":
            try:
                frame = pl.read_parquet(path)
            except Exception as error:  # polars raises several types for corrupt files
                raise LandingFileError(path, None, f"not a readable Parquet file ({error})") from error
            _check_columns(path, None, list(frame.columns), columns)
            rows = pl.int_range(1, pl.len() + 1, dtype=pl.Int64)
        else:
            header = _csv_header(path)
            _check_columns(path, 1, header, columns)
            try:
                frame = duckdb.read_csv(
                    str(path),
                    header=True,
                    sep=",",
                    quotechar='"',
                    escapechar='"',
                    auto_detect=False,
                    columns={name: "VARCHAR" for name in header},
                ).pl()
            except duckdb.Error as error:
                message = str(error)
                line = _DUCKDB_LINE.search(message)
                problem = message.split("\n", 1)[-1].split("Possible fixes")[0].strip()
                raise LandingFileError(path, int(line.group(1)) if line else None, problem) from error
            # Line numbers assume one line per record (no newlines inside quoted values).
            rows = pl.int_range(2, pl.len() + 2, dtype=pl.Int64)
        return frame.select(columns).with_columns(pl.lit(str(path)).alias("_source_file"), rows.alias("_source_row"))

    def reject(self, path: Path, error: Exception) -> Path:
        """Move a broken file aside with a note of what broke it; returns its new path."""
        target_dir = self.root / REJECTED / path.parent.name
        target_dir.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        target = target_dir / f"{path.stem}.{stamp}{path.suffix}"
        shutil.move(path, target)
        target.with_suffix(target.suffix + ".error.txt").write_text(f"{error}\n")
        return target


def _day_of(path: Path) -> date | None:
    if path.suffix not in EXTENSIONS or not path.is_file():
        return None
    try:
        return date.fromisoformat(path.stem)
    except ValueError:
        return None


def _csv_header(path: Path) -> list[str]:
    # Reads one line only: the header names the columns DuckDB is then told to expect.
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            return next(csv.reader(handle), [])
    except UnicodeDecodeError as error:
        raise LandingFileError(path, 1, f"not UTF-8 encoded ({error.reason})") from error


def _check_columns(path: Path, line: int | None, found: list[str], expected: list[str]) -> None:
    missing = [c for c in expected if c not in found]
    unexpected = [c for c in found if c not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing columns {missing}")
        if unexpected:
            parts.append(f"unexpected columns {unexpected}")
        raise LandingFileError(path, line, f"{' and '.join(parts)}; expected {expected}")
