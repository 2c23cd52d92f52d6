"""The bad-input suite: malformed landing files through the real ingestion, one kind per case.

Each kind lands its files for its own day in one shared home (real Delta tables, real
quarantine, the simulator off), runs the real raw asset for that day and table, and
asserts the outcome: which keys are stored, which lines are quarantined with which
reason, which files were moved to ``_rejected/`` with which note, and that rows in =
stored + quarantined + rows of rejected files. The last test searches every note,
reason and event of the module's runs for the personal data the kinds carried.
Every case runs under a timeout: a named pipe or ``/dev/zero`` must never hang a run.

Placeholders in file names and contents: ``{d}`` is the kind's day, ``{e}`` the day
before (for kinds that land on two days), ``{s}`` a day before the first partition,
``{f}`` a day in 2062 (a mistyped year), ``{i}`` the kind's number, so keys such as
``{i}01`` never meet another kind's keys.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from platform_assets.defs.raw.assets import create_missing_tables, raw_ingest, raw_key
from platform_assets.tables import QUARANTINE, raw_table
from tests.conftest import day, memory_instance, module_home

KEYS = {
    "cancellations": "customer_id",
    "sessions": "session_id",
    "customers": "customer_id",
    "plan_changes": "customer_id",
}
CANCEL = "customer_id,cancelled_on,reason"
SESSION = "session_id,customer_id,started_at,duration_minutes,device"
CUSTOMER = "customer_id,name,email,signup_date,plan,monthly_charge,region,age_band,acquisition_channel"
PLAN = "customer_id,changed_on,from_plan,to_plan,new_monthly_charge"
PII_MARKERS = ("Alan Turing", "alan.turing", "Ada Lovelace", "ada@", "lovelace", "hopper", "/bin/bash")
BOMB_BYTES = 2**30  # decompressed; the suite's limit (PLATFORM_LANDING_MAX_FILE_BYTES) is far below


def text(*lines: str, end: str = "\n") -> bytes:
    return (end.join(lines) + end).encode()


def cancellations(*rows: str) -> bytes:
    return text(CANCEL, *rows)


def sessions(*rows: str) -> bytes:
    return text(SESSION, *rows)


GOOD_CANCEL = ("{i}01,{d},price", "{i}02,{d},support")
GOOD_SESSION = "{i}01,7,{d} 10:00:00,12.5,web"


def parquet(**columns) -> Callable[[Path, int, date], None]:
    """A Parquet writer; a column given as a callable gets (kind number, day)."""

    def write(path: Path, number: int, when: date) -> None:
        values = {k: (v(number, when) if callable(v) else v) for k, v in columns.items()}
        pl.DataFrame(values, strict=False).write_parquet(path)

    return write


def ids(*suffixes: int) -> Callable[[int, date], list[int]]:
    return lambda number, _: [number * 100 + s for s in suffixes]


def at(*hours: int) -> Callable[[int, date], list[datetime]]:
    return lambda _, when: [datetime(when.year, when.month, when.day, h) for h in hours]


@dataclass(frozen=True)
class Kind:
    doc: str
    table: str
    files: dict[str, bytes | Callable]  # name in the table's folder ("../x" for the landing root) -> content
    rows_in: int  # data rows landed for the table and day
    stored: tuple[int, ...] = ()  # key suffixes stored ({i}01 -> 1)
    quarantined: dict[int, str] = field(default_factory=dict)  # line -> fragment of the reason
    rejected: dict[str, str] = field(default_factory=dict)  # landed name -> fragment of the note
    earlier: dict[str, bytes] = field(default_factory=dict)  # files of the day before, ingested first
    stored_values: dict[str, list] = field(default_factory=dict)  # column -> values stored, in key order
    previous: dict[str, bytes] = field(default_factory=dict)  # an earlier delivery of the same day, stored first
    left: tuple[str, ...] = ()  # landed names that must still be in place after the run (uploads in flight)


def fifo(path: Path, number: int, when: date) -> None:
    os.mkfifo(path)


def link_to(target: str) -> Callable[[Path, int, date], None]:
    """Replace the day's entry (an earlier delivery, if any) by a symbolic link to ``target``."""

    def write(path: Path, number: int, when: date) -> None:
        path.unlink(missing_ok=True)
        path.symlink_to(target)

    return write


def a_folder(path: Path, number: int, when: date) -> None:
    path.unlink(missing_ok=True)
    path.mkdir()


def gzip_bomb(path: Path, number: int, when: date) -> None:
    """A gzip of a few MB that expands to 1 GiB of valid-looking rows."""
    block = fill_bytes(b"{i}01,{d},price\n", number, when) * (2**20 // 16)
    with gzip.open(path, "wb", compresslevel=1) as out:
        out.write(fill_bytes(CANCEL.encode() + b"\n", number, when))
        for _ in range(BOMB_BYTES // len(block)):
            out.write(block)


KINDS: dict[str, Kind] = {
    # --- files that cannot be read: moved aside with a note, nothing of them stored ---
    "ragged_extra_field": Kind(
        "A line with one field too many rejects the file, naming the line.",
        "cancellations",
        {"{d}.csv": cancellations(GOOD_CANCEL[0], "{i}02,{d},price,extra", GOOD_CANCEL[1])},
        rows_in=3,
        rejected={"{d}.csv": "line 3: expected 3 fields, found 4"},
    ),
    "ragged_missing_field": Kind(
        "A line with a field missing rejects the file (never padded with nulls).",
        "cancellations",
        {"{d}.csv": cancellations(*GOOD_CANCEL, "{i}03,{d}")},
        rows_in=3,
        rejected={"{d}.csv": "line 4: expected 3 fields, found 2"},
    ),
    "unterminated_quote": Kind(
        "An opening quote never closed rejects the file at the line where the record starts.",
        "cancellations",
        {"{d}.csv": cancellations(GOOD_CANCEL[0], '{i}02,{d},"price', "{i}03,{d},support")},
        rows_in=3,
        rejected={"{d}.csv": "line 3: malformed CSV"},
    ),
    "latin1_byte_on_line_6": Kind(
        "A latin-1 byte on line 6 is reported at line 6, not line 1.",
        "cancellations",
        {
            "{d}.csv": cancellations(*(f"{{i}}0{n},{{d}},price" for n in range(1, 5)))
            + "{i}05,{d},caf\xe9\n".encode("latin-1")
        },
        rows_in=5,
        rejected={"{d}.csv": "line 6: not UTF-8 encoded (byte 0xE9)"},
    ),
    "mixed_crlf_lf_ragged": Kind(
        "Mixed CRLF and LF line ends still give the true line of a ragged record.",
        "cancellations",
        {"{d}.csv": b"customer_id,cancelled_on,reason\r\n{i}01,{d},price\n{i}02,{d},price\r\n{i}03,{d}\n"},
        rows_in=3,
        rejected={"{d}.csv": "line 4: expected 3 fields, found 2"},
    ),
    "ragged_line_of_3_mb": Kind(
        "A 3 MB ragged line is rejected with a short note: the line is never echoed.",
        "cancellations",
        {"{d}.csv": cancellations(GOOD_CANCEL[0], "{i}02,{d}," + "x" * 3_000_000 + ",extra")},
        rows_in=2,
        rejected={"{d}.csv": "line 3: expected 3 fields, found 4"},
    ),
    "wrong_header": Kind(
        "A header that does not name the contract's columns rejects the file on line 1.",
        "cancellations",
        {"{d}.csv": text("customer,cancelled_on,why", "{i}01,{d},price")},
        rows_in=1,
        rejected={
            "{d}.csv": "line 1: missing columns ['customer_id', 'reason'] and unexpected columns (2 not shown "
            "(they may be data): none is a column of any table"
        },
    ),
    "headerless_customer_file": Kind(
        "A customer file without a header is rejected; its first row (a name, an email) is not quoted in the note.",
        "customers",
        {"{d}.csv": text("{i}01,Alan Turing,alan.turing@example.com,{d},basic,9.99,north,35-44,ads")},
        rows_in=0,
        rejected={"{d}.csv": "not shown (they may be data)"},
    ),
    "ragged_customer_row": Kind(
        "A ragged customer row is rejected by line and field count; the row (a name, an email) is never copied.",
        "customers",
        {
            "{d}.csv": text(
                CUSTOMER,
                "{i}01,Ada Lovelace,ada@example.com,{d},basic,9.99,north,35-44,ads",
                "{i}02,Alan Turing,alan.turing@example.com,{d},basic,9.99,north,35-44,ads,extra",
            )
        },
        rows_in=2,
        rejected={"{d}.csv": "line 3: expected 9 fields, found 10"},
    ),
    "repeated_header_column": Kind(
        "A header naming a column twice is rejected.",
        "cancellations",
        {"{d}.csv": text("customer_id,cancelled_on,reason,reason", "{i}01,{d},price,price")},
        rows_in=1,
        rejected={"{d}.csv": "line 1: the header repeats columns ['reason']"},
    ),
    "empty_file": Kind(
        "A file of zero bytes is rejected: an empty delivery is not an empty day.",
        "cancellations",
        {"{d}.csv": b""},
        rows_in=0,
        rejected={"{d}.csv": "empty file: no header"},
    ),
    "nul_byte": Kind(
        "A NUL byte on line 3 rejects the file at line 3.",
        "cancellations",
        {"{d}.csv": cancellations(GOOD_CANCEL[0], "{i}02,{d},pri\x00ce")},
        rows_in=2,
        rejected={"{d}.csv": "line 3: contains a NUL byte"},
    ),
    "not_gzip": Kind(
        "A .csv.gz that is not gzip-compressed is rejected.",
        "cancellations",
        {"{d}.csv.gz": cancellations(*GOOD_CANCEL)},
        rows_in=0,  # the rows of a file that cannot be decompressed are not counted
        rejected={"{d}.csv.gz": "not a readable gzip file"},
    ),
    "corrupt_parquet": Kind(
        "A .parquet that is not Parquet is rejected.",
        "sessions",
        {"{d}.parquet": b"PAR1 this is not parquet"},
        rows_in=0,
        rejected={"{d}.parquet": "not a readable Parquet file"},
    ),
    "parquet_list_column": Kind(
        "A list-typed Parquet column rejects the file with a note, not a traceback.",
        "sessions",
        {
            "{d}.parquet": parquet(
                session_id=lambda n, _: [[n * 100 + 1, 2]],
                customer_id=[7],
                started_at=at(10),
                duration_minutes=[1.0],
                device=["web"],
            )
        },
        rows_in=1,
        rejected={"{d}.parquet": "column session_id holds List(Int64), which no contract type is read from"},
    ),
    "parquet_missing_column": Kind(
        "A Parquet file without a contract column is rejected, naming the column.",
        "sessions",
        {"{d}.parquet": parquet(session_id=ids(1), customer_id=[7], started_at=at(10), duration_minutes=[1.0])},
        rows_in=1,
        rejected={"{d}.parquet": "missing columns ['device']"},
    ),
    "csv_and_parquet_for_one_day": Kind(
        "A day landed as both .csv and .parquet: both are moved aside, each note naming both.",
        "sessions",
        {
            "{d}.csv": sessions(GOOD_SESSION),
            "{d}.parquet": parquet(
                session_id=ids(2), customer_id=[7], started_at=at(10), duration_minutes=[1.0], device=["web"]
            ),
        },
        rows_in=2,
        rejected={
            "{d}.csv": "2 files for sessions on {d}: {d}.csv and {d}.parquet",
            "{d}.parquet": "{d}.csv and {d}.parquet",
        },
    ),
    "padded_and_unpadded_name_for_one_day": Kind(
        "2026-02-05.csv and 2026-2-5.csv are the same day: both moved aside, naming both.",
        "cancellations",
        {"{d}.csv": cancellations(GOOD_CANCEL[0]), "{u}.csv": cancellations(GOOD_CANCEL[1])},
        rows_in=2,
        rejected={"{d}.csv": "2 files for cancellations on {d}", "{u}.csv": "2 files for cancellations on {d}"},
    ),
    # --- names and entries that are not one day of one table: reported, kept aside, never blocking ---
    "txt_file": Kind(
        "A .txt file is moved aside as an unsupported type; the day's CSV is ingested.",
        "cancellations",
        {"{d}.csv": cancellations(*GOOD_CANCEL), "{d}.txt": cancellations("{i}09,{d},price")},
        rows_in=2,
        stored=(1, 2),
        rejected={"{d}.txt": "unsupported file type '.txt'"},
    ),
    "impossible_day_name": Kind(
        "2026-02-30.csv is not a day: moved aside with a note.",
        "cancellations",
        {"{d}.csv": cancellations(*GOOD_CANCEL), "2026-02-30.csv": cancellations("{i}09,2026-02-27,price")},
        rows_in=2,
        stored=(1, 2),
        rejected={"2026-02-30.csv": "the name '2026-02-30' is not a day (day is out of range for month)"},
    ),
    "name_that_is_not_a_day": Kind(
        "yesterday.csv names no day: moved aside with a note.",
        "cancellations",
        {"{d}.csv": cancellations(*GOOD_CANCEL), "yesterday.csv": cancellations("{i}09,{d},price")},
        rows_in=2,
        stored=(1, 2),
        rejected={"yesterday.csv": "the name 'yesterday' is not a day (YYYY-MM-DD)"},
    ),
    "stray_folder_at_the_root": Kind(
        "landing/foo_unknown/ is moved aside with a note and does not stop the day's cancellations.",
        "cancellations",
        {"{d}.csv": cancellations(*GOOD_CANCEL), "../foo_unknown_{i}/{d}.csv": cancellations("{i}09,{d},price")},
        rows_in=2,
        stored=(1, 2),
        rejected={"../foo_unknown_{i}": "no raw table is named 'foo_unknown_{i}'"},
    ),
    "stray_file_at_the_root": Kind(
        "A file directly in landing/ is moved aside with a note.",
        "cancellations",
        {"{d}.csv": cancellations(*GOOD_CANCEL), "../{d}_cancellations.csv": cancellations("{i}09,{d},price")},
        rows_in=2,
        stored=(1, 2),
        rejected={"../{d}_cancellations.csv": "a file outside any table folder"},
    ),
    "folder_inside_a_table_folder": Kind(
        "A folder inside a table's folder is moved aside with a note.",
        "cancellations",
        {"{d}.csv": cancellations(*GOOD_CANCEL), "archive_{i}/{d}.csv": cancellations("{i}09,{d},price")},
        rows_in=2,
        stored=(1, 2),
        rejected={"archive_{i}": "not a file"},
    ),
    # --- supported variants: ingested ---
    "upper_case_extension": Kind(
        "A day landed with an upper-case extension (.CSV) is a CSV file.",
        "cancellations",
        {"{d}.CSV": cancellations(*GOOD_CANCEL)},
        rows_in=2,
        stored=(1, 2),
    ),
    "gzipped_csv": Kind(
        "A .csv.gz is read like its CSV.",
        "cancellations",
        {
            "{d}.csv.gz": lambda path, n, when: path.write_bytes(
                gzip.compress(fill_bytes(cancellations(*GOOD_CANCEL), n, when))
            )
        },
        rows_in=2,
        stored=(1, 2),
    ),
    "unpadded_day_name": Kind(
        "2026-2-5.csv is that day's file.",
        "cancellations",
        {"{u}.csv": cancellations(*GOOD_CANCEL)},
        rows_in=2,
        stored=(1, 2),
    ),
    "utf8_byte_order_mark": Kind(
        "A UTF-8 byte order mark does not hide the first column's name.",
        "cancellations",
        {"{d}.csv": b"\xef\xbb\xbf" + cancellations(*GOOD_CANCEL)},
        rows_in=2,
        stored=(1, 2),
    ),
    "header_only": Kind(
        "A header without rows is an empty day: nothing stored, nothing quarantined, no error.",
        "cancellations",
        {"{d}.csv": cancellations()},
        rows_in=0,
    ),
    "columns_in_another_order": Kind(
        "Columns are matched by name, not position.",
        "cancellations",
        {"{d}.csv": text("reason,customer_id,cancelled_on", "price,{i}01,{d}")},
        rows_in=1,
        stored=(1,),
        stored_values={"reason": ["price"]},
    ),
    # --- values that do not fit their column: that row quarantined, naming file, line, column, value ---
    "fractional_id_in_csv": Kind(
        "customer_id 1.9 is not an integer: quarantined, never truncated to 1 (3.0 is 3, as in Parquet).",
        "cancellations",
        {"{d}.csv": cancellations(GOOD_CANCEL[0], "{i}02.9,{d},price", "{i}03.0,{d},price")},
        rows_in=3,
        stored=(1, 3),
        quarantined={3: "line 3: customer_id: dtype('Int64'): not an integer (got {i}02.9)"},
    ),
    "parquet_float_ids": Kind(
        "Parquet float ids: 1.0 is the integer 1, 1.9 is quarantined, never stored as 1.",
        "sessions",
        {
            "{d}.parquet": parquet(
                session_id=lambda n, _: [n * 100 + 1.0, n * 100 + 2.9],
                customer_id=[7, 7],
                started_at=at(10, 11),
                duration_minutes=[1.0, 2.0],
                device=["web", "tv"],
            )
        },
        rows_in=2,
        stored=(1,),
        quarantined={
            2: "row 2: session_id: dtype('Int64'): not an integer (the file's column is Float64) (got {i}02.9)"
        },
    ),
    "parquet_epoch_seconds": Kind(
        "Integer epoch seconds where a timestamp is declared: every row quarantined, never read as microseconds.",
        "sessions",
        {
            "{d}.parquet": parquet(
                session_id=ids(1, 2),
                customer_id=[7, 7],
                started_at=[1_767_225_600, 1_767_229_200],
                duration_minutes=[1.0, 2.0],
                device=["web", "tv"],
            )
        },
        rows_in=2,
        quarantined={
            1: "started_at: dtype('Datetime(time_unit='us', time_zone=None)'): not an ISO-8601 timestamp (the file's column is Int64) (got 1767225600)",
            2: "(got 1767229200)",
        },
    ),
    "epoch_in_csv_timestamp": Kind(
        "An epoch number in a CSV timestamp column is quarantined.",
        "sessions",
        {"{d}.csv": sessions(GOOD_SESSION, "{i}02,7,1767225600,1.0,web")},
        rows_in=2,
        stored=(1,),
        quarantined={
            3: "started_at: dtype('Datetime(time_unit='us', time_zone=None)'): not an ISO-8601 timestamp (got 1767225600)"
        },
    ),
    "dd_mm_yyyy_first_row": Kind(
        "A dd/mm/yyyy first row is quarantined; the ISO rows after it are stored (no inference from row 1).",
        "cancellations",
        {"{d}.csv": cancellations("{i}01,05/01/2026,price", *(f"{{i}}0{n},{{d}},price" for n in range(2, 10)))},
        rows_in=9,
        stored=tuple(range(2, 10)),
        quarantined={2: "cancelled_on: dtype('Date'): not a date YYYY-MM-DD (got 05/01/2026)"},
    ),
    "iso_timestamps_with_zones": Kind(
        "ISO-8601 with Z and with offsets are stored in UTC.",
        "sessions",
        {
            "{d}.csv": sessions(
                "{i}01,7,{d}T10:00:00Z,1.0,web", "{i}02,7,{d}T10:00:00+02:00,1.0,web", "{i}03,7,{d} 10:30-0130,1.0,web"
            )
        },
        rows_in=3,
        stored=(1, 2, 3),
        stored_values={"started_at": ["{d} 10:00:00", "{d} 08:00:00", "{d} 12:00:00"]},
    ),
    "parquet_zoned_timestamps": Kind(
        "A zoned Parquet timestamp is converted to UTC.",
        "sessions",
        {
            "{d}.parquet": lambda path, n, when: pl.DataFrame(
                {
                    "session_id": [n * 100 + 1],
                    "customer_id": [7],
                    "started_at": pl.Series([datetime(when.year, when.month, when.day, 12)]).dt.replace_time_zone(
                        "Asia/Kolkata"
                    ),
                    "duration_minutes": [1.0],
                    "device": ["web"],
                }
            ).write_parquet(path),
        },
        rows_in=1,
        stored=(1,),
        stored_values={"started_at": ["{d} 06:30:00"]},
    ),
    "parquet_nanoseconds": Kind(
        "A nanosecond Parquet timestamp that microseconds cannot hold is quarantined, not truncated.",
        "sessions",
        {
            "{d}.parquet": parquet(
                session_id=ids(1, 2),
                customer_id=[7, 7],
                started_at=lambda _, when: (
                    pl.Series(at(9, 9)(0, when)).cast(pl.Datetime("ns")) + pl.Series([0, 7]).cast(pl.Duration("ns"))
                ),
                duration_minutes=[1.0, 2.0],
                device=["web", "tv"],
            )
        },
        rows_in=2,
        stored=(1,),
        quarantined={2: "(the file's column is Datetime(time_unit='ns', time_zone=None)) (got {d} 09:00:00.000000007)"},
    ),
    "timestamp_with_nanoseconds_text": Kind(
        "A CSV timestamp finer than microseconds is quarantined, not truncated.",
        "sessions",
        {"{d}.csv": sessions(GOOD_SESSION, "{i}02,7,{d}T10:00:00.123456789Z,1.0,web")},
        rows_in=2,
        stored=(1,),
        quarantined={3: "not an ISO-8601 timestamp (got {d}T10:00:00.123456789Z)"},
    ),
    "month_13_date": Kind(
        "2026-13-45 is out of range: quarantined.",
        "cancellations",
        {"{d}.csv": cancellations(GOOD_CANCEL[0], "{i}02,2026-13-45,price")},
        rows_in=2,
        stored=(1,),
        quarantined={3: "cancelled_on: dtype('Date'): not a date YYYY-MM-DD (got 2026-13-45)"},
    ),
    "february_30": Kind(
        "2026-02-30 does not exist: quarantined.",
        "cancellations",
        {"{d}.csv": cancellations(GOOD_CANCEL[0], "{i}02,2026-02-30,price")},
        rows_in=2,
        stored=(1,),
        quarantined={3: "(got 2026-02-30)"},
    ),
    "hour_25": Kind(
        "A timestamp at 25:00 is quarantined.",
        "sessions",
        {"{d}.csv": sessions(GOOD_SESSION, "{i}02,7,{d}T25:00:00Z,1.0,web")},
        rows_in=2,
        stored=(1,),
        quarantined={3: "not an ISO-8601 timestamp (got {d}T25:00:00Z)"},
    ),
    "comma_decimal": Kind(
        'A decimal comma ("12,5") is not a number: quarantined.',
        "sessions",
        {"{d}.csv": sessions(GOOD_SESSION, '{i}02,7,{d} 10:00:00,"12,5",web')},
        rows_in=2,
        stored=(1,),
        quarantined={3: "duration_minutes: dtype('Float64'): not a finite number (got 12,5)"},
    ),
    "nan_and_infinity": Kind(
        "NaN and inf are not numbers: quarantined.",
        "sessions",
        {"{d}.csv": sessions(GOOD_SESSION, "{i}02,7,{d} 10:00:00,NaN,web", "{i}03,7,{d} 10:00:00,inf,web")},
        rows_in=3,
        stored=(1,),
        quarantined={3: "(got NaN)", 4: "(got inf)"},
    ),
    "integer_overflow": Kind(
        "An id beyond 64 bits is quarantined.",
        "cancellations",
        {"{d}.csv": cancellations(GOOD_CANCEL[0], "99999999999999999999999,{d},price")},
        rows_in=2,
        stored=(1,),
        quarantined={3: "customer_id: dtype('Int64'): not an integer (got 99999999999999999999999)"},
    ),
    "parquet_boolean_id": Kind(
        "A boolean where an integer is declared is quarantined, never read as 0 or 1.",
        "sessions",
        {
            "{d}.parquet": parquet(
                session_id=ids(1), customer_id=[True], started_at=at(10), duration_minutes=[1.0], device=["web"]
            )
        },
        rows_in=1,
        quarantined={1: "customer_id: dtype('Int64'): not an integer (the file's column is Boolean) (got true)"},
    ),
    "parquet_text_ids": Kind(
        "Parquet text ids are parsed with the same strict rules as CSV: '7' is 7, '7.5' is quarantined.",
        "sessions",
        {
            "{d}.parquet": parquet(
                session_id=lambda n, _: [str(n * 100 + 1), f"{n * 100 + 2}.5"],
                customer_id=["7", "7"],
                started_at=lambda _, when: [f"{when}T10:00:00Z"] * 2,
                duration_minutes=["1.5", "2"],
                device=["web", "tv"],
            )
        },
        rows_in=2,
        stored=(1,),
        quarantined={2: "session_id: dtype('Int64'): not an integer (got {i}02.5)"},
    ),
    "missing_required_value": Kind(
        "An empty required value is quarantined as not nullable.",
        "cancellations",
        {"{d}.csv": cancellations(GOOD_CANCEL[0], "{i}02,{d},")},
        rows_in=2,
        stored=(1,),
        quarantined={3: "reason: not_nullable (got null)"},
    ),
    "value_of_3_mb": Kind(
        "A 3 MB value in an id column is quarantined with the value cut in the reason.",
        "cancellations",
        {"{d}.csv": cancellations(GOOD_CANCEL[0], "9" * 3_000_000 + ",{d},price")},
        rows_in=2,
        stored=(1,),
        quarantined={3: "... (3000000 chars))"},
    ),
    "quoted_newlines_shift_lines": Kind(
        "Values with quoted newlines span lines; the bad row after them is reported at its true line.",
        "cancellations",
        {"{d}.csv": cancellations('{i}01,{d},"too\nexpensive"', '{i}02,{d},"a\r\nb\nc"', "{i}03,someday,price")},
        rows_in=3,
        stored=(1, 2),
        quarantined={7: "line 7: cancelled_on"},
        stored_values={"reason": ["too\nexpensive", "a\r\nb\nc"]},
    ),
    "blank_lines_and_crlf": Kind(
        "Blank lines and mixed line ends are skipped, and later rows keep their true lines.",
        "cancellations",
        {
            "{d}.csv": b"customer_id,cancelled_on,reason\r\n{i}01,{d},price\n\n\r\n{i}02,{d},price\r\n{i}03,never,price\n\n"
        },
        rows_in=3,
        stored=(1, 2),
        quarantined={6: "line 6: cancelled_on: dtype('Date'): not a date YYYY-MM-DD (got never)"},
    ),
    "malformed_email": Kind(
        "A malformed email is quarantined with its value masked; the record keeps only its hash.",
        "customers",
        {
            "{d}.csv": text(
                CUSTOMER,
                "{i}01,Ada Lovelace,ada@example.com,{d},basic,9.99,north,35-44,ads",
                '{i}02,Alan Turing,"Alan Turing <alan.turing@example.com>",{d},basic,9.99,north,35-44,ads',
            )
        },
        rows_in=2,
        stored=(1,),
        quarantined={3: "email: str_matches('^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$') (got <masked>)"},
    ),
    "bad_plan_with_personal_data": Kind(
        "A bad value in a customer row quarantines it without copying the name or email anywhere.",
        "customers",
        {"{d}.csv": text(CUSTOMER, "{i}01,Alan Turing,alan.turing@example.com,{d},gold,9.99,north,35-44,ads")},
        rows_in=1,
        quarantined={2: "plan: isin(('basic', 'standard', 'premium')) (got gold)"},
    ),
    # --- keys across rows, files and days ---
    "exact_duplicate_plan_change": Kind(
        "An exact copy of a plan change is stored once; the copy is quarantined as a duplicate.",
        "plan_changes",
        {
            "{d}.csv": text(
                PLAN, "{i}01,{d},basic,premium,19.99", "{i}01,{d},basic,premium,19.99", "{i}02,{d},basic,standard,14.99"
            )
        },
        rows_in=3,
        stored=(1, 2),
        quarantined={3: "<row>: exact duplicate of {path} line 2 (got row)"},
    ),
    "plan_change_landed_again_next_day": Kind(
        "A plan change already stored on the day before is not stored again.",
        "plan_changes",
        {"{d}.csv": text(PLAN, "{i}01,{e},basic,premium,19.99", "{i}02,{d},basic,standard,14.99")},
        earlier={"{e}.csv": text(PLAN, "{i}01,{e},basic,premium,19.99")},
        rows_in=2,
        stored=(2,),
        quarantined={2: "<row>: key already stored on {e}"},
    ),
    "key_stored_on_an_earlier_day": Kind(
        "A session id stored on the day before is quarantined, not stored twice.",
        "sessions",
        {"{d}.csv": sessions("{i}01,7,{d} 10:00:00,3.0,web", "{i}02,7,{d} 11:00:00,4.0,web")},
        earlier={"{e}.csv": sessions("{i}01,7,{e} 10:00:00,12.5,web")},
        rows_in=2,
        stored=(2,),
        quarantined={2: "session_id: key already stored on {e}"},
    ),
    "one_key_two_rows_one_day": Kind(
        "Two different rows for one key in one file: both held back, neither is guessed right.",
        "cancellations",
        {"{d}.csv": cancellations("{i}01,{d},price", "{i}01,{d},support", "{i}02,{d},price")},
        rows_in=3,
        stored=(2,),
        quarantined={2: "customer_id: field_uniqueness (got {i}01)", 3: "customer_id: field_uniqueness"},
    ),
    "whitespace_around_values": Kind(
        "Spaces around typed values are trimmed; text keeps its value.",
        "cancellations",
        {"{d}.csv": cancellations(" {i}01 , {d} ,price")},
        rows_in=1,
        stored=(1,),
    ),
    # --- what real uploaders and exporters leave: only complete, regular files are read ---
    "named_pipe": Kind(
        "A named pipe named as a day is moved aside by its name, never opened (opening it would hang).",
        "cancellations",
        {"{d}.csv": fifo},
        rows_in=0,
        rejected={"{d}.csv": "not a file (a named pipe)"},
    ),
    "symlink_to_dev_zero": Kind(
        "A symbolic link to /dev/zero is moved aside unread (reading it never ends).",
        "cancellations",
        {"{d}.csv": link_to("/dev/zero")},
        rows_in=0,
        rejected={"{d}.csv": "a symbolic link, which is not followed"},
    ),
    "symlink_to_a_system_file": Kind(
        "A symbolic link to /etc/passwd is moved aside unread: its content is never echoed.",
        "customers",
        {"{d}.csv": link_to("/etc/passwd")},
        rows_in=0,
        rejected={"{d}.csv": "a symbolic link, which is not followed"},
    ),
    "dangling_symlink_over_a_stored_day": Kind(
        "A stored day whose file becomes a dangling link keeps its rows; the link is moved aside.",
        "cancellations",
        {"{d}.csv": link_to("gone.csv")},
        previous={"{d}.csv": cancellations(*GOOD_CANCEL)},
        rows_in=0,
        stored=(1, 2),
        rejected={"{d}.csv": "a symbolic link"},
    ),
    "folder_named_as_a_stored_day": Kind(
        "A stored day whose file becomes a folder named <day>.csv keeps its rows.",
        "cancellations",
        {"{d}.csv": a_folder},
        previous={"{d}.csv": cancellations(*GOOD_CANCEL)},
        rows_in=0,
        stored=(1, 2),
        rejected={"{d}.csv": "not a file (a folder)"},
    ),
    "empty_delivery_over_a_stored_day": Kind(
        "A header-only file for a day that holds rows is refused: the stored rows stay.",
        "cancellations",
        {"{d}.csv": cancellations()},
        previous={"{d}.csv": cancellations(*GOOD_CANCEL)},
        rows_in=0,
        stored=(1, 2),
        rejected={"{d}.csv": "no rows, but {d} already holds stored rows of cancellations"},
    ),
    "rsync_upload_in_flight": Kind(
        "rsync's temporary .<name>.<random> is left alone while it is written: not moved, not read.",
        "cancellations",
        {".{d}.csv.Xa9f3Q": cancellations(*GOOD_CANCEL), "{d}.csv.part": cancellations(*GOOD_CANCEL)},
        rows_in=0,
        left=(".{d}.csv.Xa9f3Q", "{d}.csv.part"),
    ),
    "cut_last_line": Kind(
        "A last line cut mid-value (…,tv,4 of 45.5) is refused whole, never stored as 4.0.",
        "sessions",
        {
            "{d}.csv": text(
                "session_id,customer_id,started_at,device,duration_minutes", "{i}01,7,{d} 10:00:00,web,12.5"
            )
            + b"{i}02,7,{d} 11:00:00,tv,4"
        },
        rows_in=2,
        rejected={"{d}.csv": "line 3: the last line does not end with a line break"},
    ),
    "gzip_bomb": Kind(
        "A .csv.gz that expands to 1 GiB is refused at the size limit, without decompressing it whole.",
        "cancellations",
        {"{d}.csv.gz": gzip_bomb},
        rows_in=0,  # rows past the limit are not counted
        rejected={"{d}.csv.gz": "decompresses to more than"},
    ),
    "headerless_file_of_lower_case_names": Kind(
        "A headerless file whose first row is lower-case words (names) masks them all in the note.",
        "customers",
        {"{d}.csv": text("{i}01,lovelace,hopper,{d},basic,9.99,north,35-44,ads")},
        rows_in=0,
        rejected={"{d}.csv": "unexpected columns (9 not shown (they may be data)"},
    ),
    "file_before_the_start_date": Kind(
        "A file dated before the first partition is moved aside by the next run, whatever day it ingests.",
        "cancellations",
        {"{d}.csv": cancellations(*GOOD_CANCEL), "{s}.csv": cancellations("{i}09,{s},price")},
        rows_in=2,
        stored=(1, 2),
        rejected={"{s}.csv": "is before the first partition of the raw tables"},
    ),
    "file_dated_in_2062": Kind(
        "A mistyped year (2062) is moved aside with a note, not kept waiting for 36 years.",
        "cancellations",
        {"{d}.csv": cancellations(*GOOD_CANCEL), "{f}.csv": cancellations("{i}09,{f},price")},
        rows_in=2,
        stored=(1, 2),
        rejected={"{f}.csv": "is too far in the future"},
    ),
    # --- good data that exporters write: accepted ---
    "trailing_whitespace_lines": Kind(
        "Lines of only spaces or tabs at the end are skipped like blank lines.",
        "cancellations",
        {"{d}.csv": cancellations(*GOOD_CANCEL) + b"   \n\t \n"},
        rows_in=2,
        stored=(1, 2),
    ),
    "pandas_parquet_dates": Kind(
        "Parquet dates written by pandas as midnight timestamps are those dates; another time is quarantined.",
        "cancellations",
        {"{d}.parquet": parquet(customer_id=ids(1, 2), cancelled_on=at(0, 13), reason=["price", "support"])},
        rows_in=2,
        stored=(1,),
        quarantined={2: "cancelled_on: dtype('Date'): not a date YYYY-MM-DD (the file's column is Datetime"},
    ),
    "parquet_decimal_ids": Kind(
        "decimal(12,0) ids are integers.",
        "sessions",
        {
            "{d}.parquet": lambda path, n, when: pl.DataFrame(
                {
                    "session_id": pl.Series([n * 100 + 1], dtype=pl.Decimal(12, 0)),
                    "customer_id": pl.Series([7], dtype=pl.Decimal(12, 0)),
                    "started_at": at(10)(n, when),
                    "duration_minutes": [1.0],
                    "device": ["web"],
                }
            ).write_parquet(path)
        },
        rows_in=1,
        stored=(1,),
    ),
    "offset_of_hours_only": Kind(
        "An ISO offset written +05 (hours only) is an offset.",
        "sessions",
        {"{d}.csv": sessions("{i}01,7,{d}T15:00:00+05,12.5,web")},
        rows_in=1,
        stored=(1,),
        stored_values={"started_at": ["{d} 10:00:00"]},
    ),
    # --- contracts that mean it ---
    "line_break_in_a_bad_value": Kind(
        "A bad value holding a line break is shown on one line (\\n), so it never breaks a reason or a table.",
        "sessions",
        {"{d}.csv": sessions(GOOD_SESSION, '{i}02,7,{d} 10:00:00,1.0,"we\nb|x"')},
        rows_in=2,
        stored=(1,),
        quarantined={3: "device: isin(('mobile', 'web', 'tv')) (got we\\nb|x)"},
    ),
    "text_null_markers": Kind(
        "NULL, N/A, None, - and spaces mean no value in text columns too: a required one is quarantined.",
        "cancellations",
        {
            "{d}.csv": cancellations(
                GOOD_CANCEL[0], "{i}02,{d},NULL", "{i}03,{d},N/A", "{i}04,{d},None", "{i}05,{d},-", "{i}06,{d},   "
            )
        },
        rows_in=6,
        stored=(1,),
        quarantined={n: "reason: not_nullable (got null)" for n in range(3, 8)},
    ),
    "control_and_zero_width_characters": Kind(
        "A zero-width space or an ANSI escape in text is quarantined; spaces around text are stripped.",
        "cancellations",
        {"{d}.csv": cancellations("{i}01,{d}, price ", "{i}02,{d},price\u200b", "{i}03,{d},\x1b[31mprice")},
        rows_in=3,
        stored=(1,),
        quarantined={3: "reason: dtype('String'): not text", 4: "(got <ctrl>[31mprice)"},
        stored_values={"reason": ["price"]},
    ),
    "events_dated_in_the_future": Kind(
        "An event dated 2099 is after its landing day: quarantined.",
        "cancellations",
        {"{d}.csv": cancellations(GOOD_CANCEL[0], "{i}02,2099-01-01,price")},
        rows_in=2,
        stored=(1,),
        quarantined={3: "cancelled_on is after the day the record landed"},
    ),
    "event_older_than_the_lateness_window": Kind(
        "A cancellation landed weeks after its day is outside the declared lateness: quarantined.",
        "cancellations",
        {"{d}.csv": cancellations(GOOD_CANCEL[0], "{i}02,{e},price", "{i}03,2026-01-01,price")},
        rows_in=3,
        stored=(1, 2),
        quarantined={4: "cancelled_on is more than 3 days before the day the record landed (the declared lateness)"},
    ),
    "plan_change_dated_in_the_future": Kind(
        "A plan change dated 2099 is quarantined.",
        "plan_changes",
        {"{d}.csv": text(PLAN, "{i}01,{d},basic,premium,19.99", "{i}02,2099-01-01,basic,standard,14.99")},
        rows_in=2,
        stored=(1,),
        quarantined={3: "changed_on is after the day the record landed"},
    ),
    "signup_in_year_one": Kind(
        "A signup_date of 0001-01-01 is before the declared earliest date: quarantined.",
        "customers",
        {"{d}.csv": text(CUSTOMER, "{i}01,Ada Lovelace,ada@example.com,0001-01-01,basic,9.99,north,35-44,ads")},
        rows_in=1,
        quarantined={2: "signup_date: greater_than_or_equal_to(2000-01-01)"},
    ),
}


@dataclass
class World:
    home: Path
    resources: dict
    instance: dg.DagsterInstance
    runs: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    with (
        module_home(
            tmp_path_factory,
            "bad-inputs",
            {"PLATFORM_SOURCE": "landing", "PLATFORM_LANDING_MAX_FILE_BYTES": str(64 * 2**20)},
        ) as home,
        memory_instance() as instance,
    ):
        from resources import build_resources

        resources = build_resources()
        create_missing_tables(resources["lake"])
        yield World(home, resources, instance)


def fill(template: str, number: int, when: date) -> str:
    before = when - timedelta(days=1)
    return (
        template.replace("{i}", str(number))
        .replace("{d}", when.isoformat())
        .replace("{e}", before.isoformat())
        .replace("{u}", f"{when.year}-{when.month}-{when.day}")
        .replace("{s}", day(-5).isoformat())
        .replace("{f}", when.replace(year=2062).isoformat())
    )


def fill_bytes(content: bytes, number: int, when: date) -> bytes:
    return fill(content.decode("latin-1"), number, when).encode("latin-1")


def land(world: World, table: str, files: dict, number: int, when: date) -> dict[str, Path]:
    paths = {}
    for name, content in files.items():
        landed = world.home / "landing" / table / fill(name, number, when)
        path = landed.parent.resolve() / landed.name  # the entry itself, never where a link leads
        path.parent.mkdir(parents=True, exist_ok=True)
        if callable(content):
            content(path, number, when)
        else:
            path.write_bytes(fill_bytes(content, number, when))
        paths[name] = path
    return paths


def ingest(world: World, table: str, when: date) -> dg.ExecuteInProcessResult:
    result = dg.materialize(
        [raw_ingest()],
        partition_key=when.isoformat(),
        selection=[raw_key(table)],
        resources=world.resources,
        instance=world.instance,
        raise_on_error=False,
    )
    world.runs.append(result.run_id)
    return result


def moved_aside(world: World, path: Path) -> tuple[Path, str]:
    """Where a rejected file or folder went, and its note."""
    landing = world.home / "landing"
    stem, _, suffix = path.name.partition(".")
    folder = landing / "_rejected" / path.parent.relative_to(landing)
    pattern = f"{stem}.*.{suffix}" if suffix else f"{stem}.*"
    (moved,) = [p for p in folder.glob(pattern) if not p.name.endswith(".error.txt")]
    return moved, (folder / f"{moved.name}.error.txt").read_text()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", list(KINDS), ids=list(KINDS))
def test_bad_input(world, name):
    kind = KINDS[name]
    number = 10 + list(KINDS).index(name)
    when = day(40 + 2 * (number - 10))
    table, key, lake = kind.table, KEYS[kind.table], world.resources["lake"]
    if kind.earlier:
        land(world, table, kind.earlier, number, when)
        assert ingest(world, table, when - timedelta(days=1)).success
    if kind.previous:
        land(world, table, kind.previous, number, when)
        assert ingest(world, table, when).success
    paths = land(world, table, kind.files, number, when)

    result = ingest(world, table, when)

    stored = lake.read_days(raw_table(table), when).sort(key)
    assert stored[key].to_list() == [number * 100 + s for s in kind.stored]
    for column, values in kind.stored_values.items():
        shown = [str(v) if isinstance(v, datetime) else v for v in stored[column].to_list()]
        assert shown == [fill(v, number, when) for v in values]
    quarantined = lake.read_days(QUARANTINE, when).filter(pl.col("table") == table)
    reasons = dict(zip(quarantined["source_row"], quarantined["reason"], strict=True))
    assert sorted(reasons) == sorted(kind.quarantined)
    only = next(iter(paths.values()))
    for line, fragment in kind.quarantined.items():
        assert fill(fragment, number, when).replace("{path}", str(only)) in reasons[line]
        assert reasons[line].startswith(f"{only}, ")
        assert len(reasons[line]) < 600

    rejected_rows = 0
    for landed, fragment in kind.rejected.items():
        path = paths.get(landed) or (world.home / "landing" / table / fill(landed, number, when)).resolve()
        moved, note = moved_aside(world, path)
        assert not os.path.lexists(path) and os.path.lexists(moved)
        assert note.startswith(f"{path}: ") and fill(fragment, number, when) in note
        assert len(note) < 1000
    if kind.rejected:
        assert not result.success
        failure = next(e for e in result.all_events if e.is_step_failure).event_specific_data.user_failure_data
        for landed in kind.rejected:
            assert fill(landed, number, when).split("/")[-1] in failure.description
        rejected_rows = failure.metadata["rows_in_rejected_files"].value.get(table, 0)
    kept = len(kind.stored) if kind.previous else 0  # the earlier delivery's rows, still stored
    assert stored.height - kept + quarantined.height + rejected_rows == kind.rows_in
    for landed in kind.left:
        assert (world.home / "landing" / table / fill(landed, number, when)).exists()

    materialized = [e for e in result.get_asset_materialization_events() if e.asset_key == raw_key(table)]
    for event in materialized:
        assert event.materialization.metadata["rows_in"].value == stored.height + quarantined.height


def test_no_personal_data_in_reasons_notes_or_logs(world):
    """Names and emails of the customer kinds appear in no reason, note or event of the suite's runs."""
    lake = world.resources["lake"]
    reasons = lake.scan(QUARANTINE).filter(pl.col("table") == "customers").collect()
    assert reasons.height >= 2, "the customer kinds must have run first"
    notes = [p.read_text() for p in (world.home / "landing" / "_rejected").rglob("*.error.txt")]
    events = [dg.serialize_value(r) for run in world.runs for r in world.instance.all_logs(run)]
    texts = [*reasons["reason"], *reasons["record"], *notes, *events]
    for marker in PII_MARKERS:
        assert not [t for t in texts if marker.lower() in t.lower()], marker
    salt = world.home / "secrets" / "pii_salt"
    assert salt.stat().st_mode & 0o777 == 0o600


@pytest.mark.timeout(120)
def test_a_file_growing_during_the_ingest_is_left_for_the_next_run(world, monkeypatch):
    """A file still written while read (scp, SDKs write in place) is not stored this run, and whole the next."""
    import platform_assets.landing as landing

    number, when, table = 98, day(220), "cancellations"
    (path,) = land(world, table, {"{d}.csv": cancellations(*GOOD_CANCEL)}, number, when).values()
    read = landing._read_csv

    def read_then_grow(*args, **kwargs):
        frame = read(*args, **kwargs)
        with path.open("ab") as out:
            out.write(fill(f"{number}03,{{d}},price\n", number, when).encode())
        return frame

    monkeypatch.setattr(landing, "_read_csv", read_then_grow)
    first = ingest(world, table, when)
    assert not first.success and path.exists()
    failure = next(e for e in first.all_events if e.is_step_failure).event_specific_data.user_failure_data
    assert "changed while it was read" in failure.description and "left in place" in failure.description
    assert world.resources["lake"].read_days(raw_table(table), when).is_empty()

    monkeypatch.setattr(landing, "_read_csv", read)
    assert ingest(world, table, when).success
    stored = world.resources["lake"].read_days(raw_table(table), when)
    assert sorted(stored["customer_id"].to_list()) == [number * 100 + 1, number * 100 + 2, number * 100 + 3]


KINDS_PAGE = Path(__file__).resolve().parents[1] / "docs" / "landed_file_kinds.md"


def kinds_table() -> str:
    """docs/landed_file_kinds.md, generated from KINDS: what each kind proves and its outcome."""

    def outcome(kind: Kind) -> str:
        parts = [f"{len(kind.stored)} stored"] if kind.stored else []
        parts += [f"{len(kind.quarantined)} quarantined"] if kind.quarantined else []
        parts += ["moved aside"] if kind.rejected else []
        parts += ["left in place"] if kind.left else []
        parts += ["earlier delivery kept"] if kind.previous else []
        return ", ".join(parts) or "nothing stored"

    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    rows = [
        f"| `{name}` | {kind.table} | {kind.rows_in} | {outcome(kind)} | {cell(kind.doc)} |"
        for name, kind in KINDS.items()
    ]
    return "\n".join(
        [
            "# Kinds of landed file and what ingestion does with them",
            "",
            "Generated from `KINDS` in `tests/test_bad_inputs.py`, where each row is a case run through the",
            "real ingestion (regenerate: `.venv/bin/python -m tests.test_bad_inputs > docs/landed_file_kinds.md`).",
            "For every kind, rows stored + quarantined + in files moved aside or left in place = rows in.",
            "",
            "| kind | table | rows in | outcome | what it proves |",
            "|---|---|---|---|---|",
            *rows,
            "",
        ]
    )


def test_the_page_of_kinds_is_the_suites():
    """The page users read is regenerated from the cases, never edited apart from them."""
    assert KINDS_PAGE.read_text() == kinds_table(), "regenerate docs/landed_file_kinds.md (see its header)"


if __name__ == "__main__":
    print(kinds_table(), end="")
