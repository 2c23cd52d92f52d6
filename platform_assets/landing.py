"""The landing zone: files dropped at ``<root>/<table>/<YYYY-MM-DD>.<csv|csv.gz|parquet>``.

A file is one day of one raw table. Files stay where they land (re-running a day
re-reads its file). Nothing in the zone is ignored: anything that is not one day of
one known table (an unknown folder, a ``.txt``, a name that is not a day, two files
for the same day) and any file that cannot be read is moved to ``<root>/_rejected/``
with a note saying why, so a bad delivery is never lost, never silently skipped and
never retried in a loop.

Only complete, regular files are read (see :class:`Rules`): an entry is ``lstat``-ed
before anything opens it, so a named pipe, a socket, a device or a symbolic link is
moved aside by its name alone and never read; files under an uploader's temporary name
(rsync's ``.<name>.<random>``, ``*.part`` ...) and files changed within the quiet
period wait; reading is bounded by a file size and a line length, so a gzip bomb is
refused, not decompressed.

Messages never quote a file's content: they name the file, the line and the problem,
so personal data in a broken row cannot leak into logs or notes.
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import io
import os
import re
import stat
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from fnmatch import fnmatch
from pathlib import Path
from typing import BinaryIO, Literal

import duckdb
import numpy as np
import polars as pl
import pyarrow.parquet as pq

SUFFIXES = (".csv", ".csv.gz", ".parquet")  # matched case-insensitively
REJECTED = "_rejected"
_DAY = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})$")
_COLUMN_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,40}$")  # shown in errors; anything else may be data
_BOM = b"\xef\xbb\xbf"
csv.field_size_limit(2**31 - 1)  # a long value is the contract's to judge, not the reader's
TEMPORARY = (".*", "*.tmp", "*.part", "*.crdownload", "*.filepart", "~*")  # uploaders' names while writing
MARKER = "_SUCCESS"  # Spark/Hadoop's "this folder is complete"; ``<day>.done`` marks one day
NOTE_BYTES = 2048
_CHUNK = 1 << 20
_KINDS = {
    stat.S_IFDIR: "a folder",
    stat.S_IFIFO: "a named pipe",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFLNK: "a symbolic link",
}


@dataclass(frozen=True)
class Rules:
    """How the zone treats what uploaders leave in it; the values come from the settings.

    Defaults are those of ``resources.settings.Settings`` (``PLATFORM_LANDING_*``).
    """

    follow_symlinks: bool = False
    quiet_seconds: float = 5.0
    temporary_max_age_seconds: float = 86_400.0
    unterminated_last_line: Literal["reject", "hold"] = "reject"
    max_file_bytes: int = 128 * 2**20
    max_line_bytes: int = 8 * 2**20
    require_marker: bool = False
    future_days: int = 7  # a file dated further ahead is moved aside (a mistyped year); nearer ones wait
    first_day: date | None = None  # files of earlier days are moved aside
    known_columns: frozenset[str] = frozenset()  # header names a note may show; anything else is masked


class LandingFileError(ValueError):
    """A landed file that cannot be read as its table; names the file and the line."""

    def __init__(self, path: Path, line: int | None, problem: str, hold: bool = False):
        self.path, self.line, self.problem = path, line, problem
        self.hold = hold  # True: the file may yet be complete; leave it in place and take it next time
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
    size: int = -1  # as the inventory saw it, so a file changed since is not taken this run
    mtime_ns: int = -1

    @property
    def fingerprint(self) -> str:
        """Changes when the file is replaced, so a re-delivered day is ingested again."""
        return f"{self.table}/{self.path.name}@{self.mtime_ns}:{self.size}"


@dataclass(frozen=True)
class Entry:
    """Something in the zone that is not taken this run, and why: where it is, and the table and day its
    folder and name give, when they give one."""

    path: Path
    problem: str
    table: str | None = None
    day: date | None = None


class Waiting(Entry):
    """An entry left alone for now (an upload in flight, a file not yet quiet)."""


@dataclass(frozen=True)
class Held(Entry):
    """A day's file left in place and not stored this run (it may still be written)."""

    rows: int = 0

    def __str__(self) -> str:
        return f"{self.path}: {self.problem} (left in place; taken again once complete)"


class Stray(Entry):
    """Something in the zone that is not one day of one known table."""


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
    waiting: list[Waiting] = field(default_factory=list)


@dataclass(frozen=True)
class LandingZone:
    root: Path
    tables: tuple[str, ...]  # the tables a folder may be named after
    rules: Rules = Rules()

    def inventory(self) -> Inventory:
        """Every entry of the zone: ingestible files (oldest day first), what waits, and the rest.

        Nothing is opened here: entries are judged by ``lstat`` and their names.
        """
        files: dict[tuple[str, date], list[tuple[Path, os.stat_result]]] = defaultdict(list)
        strays: list[Stray] = []
        waiting: list[Waiting] = []
        now = time.time()
        entries = sorted(self.root.iterdir()) if self.root.is_dir() else []
        for entry in entries:
            if entry.name == REJECTED:
                continue
            if _temporary(entry.name):
                self._in_flight(entry, now, None, strays, waiting)
            elif stat.S_ISLNK(entry.lstat().st_mode):
                strays.append(Stray(entry, "a symbolic link at the root; a table folder must be a real folder"))
            elif not stat.S_ISDIR(entry.lstat().st_mode):
                strays.append(Stray(entry, "a file outside any table folder; expected <table>/<YYYY-MM-DD>.csv"))
            elif entry.name not in self.tables:
                strays.append(Stray(entry, f"no raw table is named {entry.name!r}; known tables: {list(self.tables)}"))
            else:
                for path in sorted(entry.iterdir()):
                    if _marker(path.name):
                        continue  # a completion marker: never read, never moved
                    try:
                        if _temporary(path.name):
                            self._in_flight(path, now, entry.name, strays, waiting)
                            continue
                        day, problem, status = self._classify(path, now)
                    except FileNotFoundError:  # renamed or moved by an uploader or another process meanwhile
                        continue
                    if status == "stray":
                        strays.append(Stray(path, problem, entry.name, day))
                    elif status == "waiting":
                        waiting.append(Waiting(path, problem, entry.name, day))
                    else:
                        files[(entry.name, day)].append((path, status))
        landed = []
        for (table, day), found in files.items():
            if len(found) == 1:
                ((path, info),) = found
                landed.append(LandedFile(table, day, path, info.st_size, info.st_mtime_ns))
                continue
            names = " and ".join(p.name for p, _ in found)
            problem = f"{len(found)} files for {table} on {day}: {names}; land exactly one per day"
            strays.extend(Stray(p, problem, table, day) for p, _ in found)
        return Inventory(sorted(landed, key=lambda f: (f.day, f.table)), strays, waiting)

    def _in_flight(self, path: Path, now: float, table: str | None, strays: list, waiting: list) -> None:
        """A temporary upload name waits, until it is older than the setting: then it was abandoned."""
        age = now - _changed(path.lstat())
        limit = self.rules.temporary_max_age_seconds
        if age < limit:
            waiting.append(Waiting(path, "a temporary upload name (an upload in flight)", table))
        else:
            strays.append(Stray(path, f"a temporary upload name unchanged for over {limit:.0f} s (abandoned)", table))

    def _classify(self, path: Path, now: float) -> tuple[date | None, str | None, str | os.stat_result]:
        """(day, problem, "stray" | "waiting" | the regular file's stat) of an entry of a table folder."""
        day, problem = _day_of(path.name)
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            target, problem = self._link_target(path)
            if problem:
                return day, problem, "stray"
            info = target.stat()
        if not stat.S_ISREG(info.st_mode):
            kind = _KINDS.get(stat.S_IFMT(info.st_mode), "not a regular file")
            return day, f"not a file ({kind}); a table folder holds one regular file per day", "stray"
        if problem:
            return None, problem, "stray"
        first = self.rules.first_day
        if first and day < first:
            return day, f"{day} is before the first partition of the raw tables ({first})", "stray"
        latest = datetime.now(UTC).date() + timedelta(days=self.rules.future_days)
        if day > latest:
            return day, f"{day} is too far in the future (after {latest}); is the year or month mistyped?", "stray"
        quiet = self.rules.quiet_seconds
        if now - _changed(info) < quiet:
            return day, f"changed less than {quiet:g} s ago; taken once unchanged for {quiet:g} s", "waiting"
        marked = (path.parent / MARKER).exists() or (path.parent / f"{_split_suffix(path.name)[0]}.done").exists()
        if self.rules.require_marker and not marked:
            return day, f"no completion marker yet ({MARKER} in the folder, or {day}.done)", "waiting"
        return day, None, info

    def _link_target(self, path: Path) -> tuple[Path, str | None]:
        """Where a symbolic link leads, if it may be followed, or why not."""
        if not self.rules.follow_symlinks:
            return path, "a symbolic link, which is not followed (PLATFORM_LANDING_FOLLOW_SYMLINKS is off)"
        try:
            target = path.resolve(strict=True)
        except (OSError, RuntimeError):
            return path, "a symbolic link that leads nowhere"
        root = self.root.resolve()
        if not target.is_relative_to(root) or target.is_relative_to(root / REJECTED):
            return path, "a symbolic link that leads outside the landing zone"
        return target, None

    def read(self, path: Path, columns: list[str], expected: LandedFile | None = None) -> pl.DataFrame:
        """Read a landed file as strings (CSV) or its own types (Parquet), with lineage.

        Adds ``_source_file`` and ``_source_row`` (the file's true line for CSV, counting
        quoted newlines and any line ending; the row number for Parquet). Turning values
        into the contract's types is the contract's job, row by row, so one bad value
        quarantines one row, not the file. A file whose structure is broken raises
        ``LandingFileError``, and so does any other failure to parse it. Only a regular
        file is opened (never through a link unless the rules allow it); one that differs
        from ``expected`` (the inventory's size and mtime), or changes while read, raises
        a held ``LandingFileError``: it is being written, so it is taken next time.
        """
        rules = replace_known(self.rules, columns)
        try:
            with self._open(path) as handle:
                before = os.fstat(handle.fileno())
                if expected is not None and (before.st_size, before.st_mtime_ns) != (
                    expected.size,
                    expected.mtime_ns,
                ):
                    raise LandingFileError(path, None, "changed since the zone was listed", hold=True)
                reader = _read_parquet if path.name.lower().endswith(".parquet") else _read_csv
                frame = reader(path, handle, columns, rules)
                after = os.fstat(handle.fileno())
                if (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns):
                    raise LandingFileError(path, None, "changed while it was read (still being written)", hold=True)
        except LandingFileError:
            raise
        except Exception as error:  # a parser crash is a bad file, moved aside like any other
            raise LandingFileError(path, None, f"could not be parsed ({type(error).__name__})") from error
        return frame.with_columns(pl.lit(str(path)).alias("_source_file"))

    def _open(self, path: Path) -> BinaryIO:
        """Open a regular file without following a link (unless allowed) or blocking on a pipe."""
        if stat.S_ISLNK(path.lstat().st_mode):
            target, problem = self._link_target(path)
            if problem:
                raise LandingFileError(path, None, problem)
            path = target
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            os.close(fd)
            raise LandingFileError(path, None, "not a regular file")
        return os.fdopen(fd, "rb")

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
        """Move a file or folder aside by its name (a rename; nothing is deleted) with a note of what is wrong.

        Only a regular file's rows are counted; anything else is never opened.
        """
        relative = path.parent.relative_to(self.root)
        target_dir = self.root / REJECTED / relative
        target_dir.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        name, suffix = _split_suffix(path.name)
        target = target_dir / f"{name}.{stamp}{suffix}"
        rows = self._count_rows(path)
        os.rename(path, target)
        (target_dir / f"{target.name}.error.txt").write_text(_note(path, problem, stamp), encoding="utf-8")
        return Rejected(path, target, problem, table, day, rows)

    def _count_rows(self, path: Path) -> int:
        """Data rows of a regular file about to be rejected, for the run's accounting; 0 when unknown."""
        try:
            if not stat.S_ISREG(path.lstat().st_mode):
                return 0
            with self._open(path) as handle:
                if path.name.lower().endswith(".parquet"):
                    return pq.read_metadata(handle).num_rows
                data = _bounded_bytes(path, handle, self.rules)
            return max(sum(1 for line in data.splitlines() if line.strip()) - 1, 0)
        except Exception:  # an unreadable file's rows are unknown
            return 0


def replace_known(rules: Rules, columns: Iterable[str]) -> Rules:
    """The rules with ``columns`` among the names a note may show."""
    return dataclasses.replace(rules, known_columns=rules.known_columns | frozenset(columns))


def _note(path: Path, problem: str, stamp: str) -> str:
    """The ``.error.txt`` note, at most ``NOTE_BYTES``: a longer problem is cut, never the file's name."""
    tail = f"\nMoved here from {path} at {stamp}.\n"
    room = NOTE_BYTES - len(f"{path}: ".encode()) - len(tail.encode())
    if len(problem.encode()) > room:
        problem = problem.encode()[: max(room - 20, 0)].decode(errors="ignore") + " ... (cut)"
    return f"{path}: {problem}{tail}"


def _marker(name: str) -> bool:
    """A completion marker (``_SUCCESS``, ``<day>.done``); any other ``.done`` is a stray like any file."""
    return name == MARKER or (name.endswith(".done") and bool(_DAY.match(name.removesuffix(".done"))))


def _temporary(name: str) -> bool:
    return any(fnmatch(name, pattern) for pattern in TEMPORARY)


def _changed(info: os.stat_result) -> float:
    """When an entry last changed: its mtime, or its ctime if later (a rename keeps the mtime)."""
    return max(info.st_mtime, info.st_ctime)


def _split_suffix(name: str) -> tuple[str, str]:
    lower = name.lower()
    for suffix in sorted(SUFFIXES, key=len, reverse=True):
        if lower.endswith(suffix):
            return name[: -len(suffix)], name[-len(suffix) :]
    stem, dot, ext = name.rpartition(".")
    return (stem, f".{ext}") if dot and stem else (name, "")


def _day_of(name: str) -> tuple[date | None, str | None]:
    """The day a file's name gives, or why it gives none."""
    name, suffix = _split_suffix(name)
    if suffix.lower() not in SUFFIXES:
        return None, f"unsupported file type {suffix or '(none)'!r}; expected one of {list(SUFFIXES)}"
    match = _DAY.match(name)
    if not match:
        return None, f"the name {name!r} is not a day (YYYY-MM-DD)"
    try:
        return date(*map(int, match.groups())), None
    except ValueError as error:
        return None, f"the name {name!r} is not a day ({error})"


def _bounded_bytes(path: Path, handle: BinaryIO, rules: Rules) -> bytes:
    """The file's bytes (decompressed for ``.gz``), read in chunks and refused past ``max_file_bytes``.

    The limit counts decompressed bytes, so a small gzip bomb is refused after reading
    no more than the limit, not decompressed whole.
    """
    gz = path.name.lower().endswith(".gz")
    stream = gzip.GzipFile(fileobj=handle, mode="rb") if gz else handle
    chunks, size = [], 0
    try:
        while chunk := stream.read(_CHUNK):
            chunks.append(chunk)
            size += len(chunk)
            if size > rules.max_file_bytes:
                size = "decompresses to" if gz else "is"
                raise LandingFileError(
                    path,
                    None,
                    f"{size} more than {rules.max_file_bytes} bytes, the limit (PLATFORM_LANDING_MAX_FILE_BYTES); "
                    "split the delivery or raise the limit",
                )
    except (OSError, EOFError) as error:
        raise LandingFileError(path, None, f"not a readable gzip file ({error})") from error
    data = b"".join(chunks)
    del chunks
    return data.removeprefix(_BOM)


def _read_parquet(path: Path, handle: BinaryIO, columns: list[str], rules: Rules) -> pl.DataFrame:
    if os.fstat(handle.fileno()).st_size > rules.max_file_bytes:
        raise LandingFileError(
            path, None, f"is more than {rules.max_file_bytes} bytes, the limit (PLATFORM_LANDING_MAX_FILE_BYTES)"
        )
    try:
        frame = pl.read_parquet(handle)
    except Exception as error:  # polars raises several types for corrupt files
        raise LandingFileError(path, None, f"not a readable Parquet file ({type(error).__name__})") from error
    _check_columns(path, None, list(frame.columns), columns, rules.known_columns)
    for name in columns:
        dtype = frame.schema[name]
        if dtype.is_nested() or dtype in (pl.Binary, pl.Object):
            raise LandingFileError(path, None, f"column {name} holds {dtype}, which no contract type is read from")
    return frame.select(columns).with_columns(pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias("_source_row"))


def _read_csv(path: Path, handle: BinaryIO, columns: list[str], rules: Rules) -> pl.DataFrame:
    data = _bounded_bytes(path, handle, rules)
    _check_lines(path, data, rules)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = _line_at(data, error.start)
        raise LandingFileError(path, line, f"not UTF-8 encoded (byte 0x{data[error.start]:02X})") from error
    if "\x00" in text:
        raise LandingFileError(
            path, _line_at(data, data.index(b"\x00")), "contains a NUL byte (binary data, or not UTF-8)"
        )
    if not text or text.isspace():  # not strip(): that would copy the whole file
        raise LandingFileError(path, 1, "empty file: no header")
    header = _csv_header(path, text, rules)
    _check_columns(path, 1, header, columns, rules.known_columns)
    del text  # validated; only the exact parser needs it again, so it is not held beside DuckDB's copy
    frame = _fast_csv(data, header)
    if frame is None:
        frame = _exact_csv(path, data.decode("utf-8"), header)
    strings = [pl.when(pl.col(c) != "").then(pl.col(c)).alias(c) for c in columns]  # empty is null
    return frame.select(*strings, "_source_row")


def _check_lines(path: Path, data: bytes, rules: Rules) -> None:
    """Refuse a line longer than ``max_line_bytes``, and a last line without its line break (a cut file).

    Lines are measured a chunk at a time, so the check costs a chunk's memory, not the file's.
    """
    if not data:
        return
    view, line, run = memoryview(data), 1, 0  # run: bytes of the current line so far
    for start in range(0, len(data), _CHUNK):
        ends = np.flatnonzero(np.frombuffer(view[start : start + _CHUNK], dtype=np.uint8) == ord("\n"))
        lengths = np.diff(ends, prepend=-1) - 1 if ends.size else np.empty(0, dtype=np.int64)
        if ends.size:
            lengths[0] += run
            run = len(view[start : start + _CHUNK]) - int(ends[-1]) - 1
        else:
            run += len(view[start : start + _CHUNK])
        too_long = np.flatnonzero(lengths > rules.max_line_bytes)
        if too_long.size or run > rules.max_line_bytes:
            at = line + int(too_long[0]) if too_long.size else line + int(ends.size)
            raise LandingFileError(
                path, at, f"longer than {rules.max_line_bytes} bytes, the limit (PLATFORM_LANDING_MAX_LINE_BYTES)"
            )
        line += int(ends.size)
    if not data.endswith((b"\n", b"\r")):
        raise LandingFileError(
            path,
            _line_at(data, len(data)),
            "the last line does not end with a line break, so the file may be cut short "
            "(an upload in flight or interrupted); deliver it whole",
            hold=rules.unterminated_last_line == "hold",
        )


def _csv_header(path: Path, text: str, rules: Rules) -> list[str]:
    try:
        # The header is read from the file's first MiB: a copy of the whole text would double its memory.
        header = next(csv.reader(io.StringIO(text[:_CHUNK], newline=""), strict=True))
    except csv.Error as error:
        raise LandingFileError(path, 1, f"the header is not valid CSV ({error})") from error
    duplicated = sorted({c for c in header if header.count(c) > 1})
    if duplicated:
        raise LandingFileError(path, 1, f"the header repeats columns {_shown(duplicated, rules.known_columns)}")
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
            if row and not (len(row) == 1 < len(header) and not row[0].strip()):  # a blank or whitespace line
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


def _shown(names: list[str], known: frozenset[str]) -> str:
    """Header names for a message: only names of known columns; any other may be data (a headerless file)."""
    shown = [n for n in names if n in known]
    hidden = len(names) - len(shown)
    if not shown:
        return f"({hidden} not shown (they may be data): none is a column of any table, as in a file without a header)"
    return f"{shown}" + (f" and {hidden} more not shown (they may be data)" if hidden else "")


def _check_columns(path: Path, line: int | None, found: list[str], expected: list[str], known: frozenset[str]) -> None:
    missing = [c for c in expected if c not in found]
    unexpected = [c for c in found if c not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing columns {missing}")
        if unexpected:
            parts.append(f"unexpected columns {_shown(unexpected, known | frozenset(expected))}")
        raise LandingFileError(path, line, f"{' and '.join(parts)}; expected {expected}")
