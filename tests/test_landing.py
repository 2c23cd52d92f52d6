"""The landing zone reads well-formed files and names the line of a broken one."""

import polars as pl
import pytest

from resources.landing import LandingFileError, LandingZone, _fast_csv

COLUMNS = ["customer_id", "cancelled_on", "reason"]


@pytest.fixture
def zone(tmp_path):
    (tmp_path / "cancellations").mkdir()
    return LandingZone(tmp_path, ("cancellations",))


def write(zone, name, text):
    path = zone.root / "cancellations" / name
    path.write_text(text)
    return path


def test_a_csv_is_read_as_strings_with_its_lines(zone):
    path = write(zone, "2026-01-05.csv", 'customer_id,cancelled_on,reason\n7,2026-01-05,price\n8,2026-01-05,"a, b"\n')
    frame = zone.read(path, COLUMNS)
    assert frame["customer_id"].to_list() == ["7", "8"]
    assert frame["reason"].to_list() == ["price", "a, b"]
    assert frame["_source_row"].to_list() == [2, 3]
    assert frame["_source_file"].to_list() == [str(path)] * 2


def test_columns_may_come_in_any_order(zone):
    path = write(zone, "2026-01-05.csv", "reason,customer_id,cancelled_on\nprice,7,2026-01-05\n")
    assert zone.read(path, COLUMNS).columns[:3] == COLUMNS


def test_a_ragged_line_names_the_file_and_the_line(zone):
    path = write(
        zone, "2026-01-05.csv", "customer_id,cancelled_on,reason\n7,2026-01-05,price\n8,2026-01-05,price,extra\n"
    )
    with pytest.raises(LandingFileError) as error:
        zone.read(path, COLUMNS)
    assert error.value.line == 3
    assert str(error.value) == f"{path}: line 3: expected 3 fields, found 4"


def test_an_unterminated_quote_names_its_line(zone):
    path = write(zone, "2026-01-05.csv", 'customer_id,cancelled_on,reason\n7,2026-01-05,price\n8,2026-01-05,"open\n')
    with pytest.raises(LandingFileError, match="line 3"):
        zone.read(path, COLUMNS)


def test_a_wrong_header_is_refused_on_line_one(zone):
    path = write(zone, "2026-01-05.csv", "customer,cancelled_on,why\n7,2026-01-05,price\n")
    with pytest.raises(LandingFileError, match=r"line 1: missing columns \['customer_id', 'reason'\]"):
        zone.read(path, COLUMNS)


def test_a_file_that_is_not_utf8_is_refused(zone):
    path = zone.root / "cancellations" / "2026-01-05.csv"
    path.write_bytes(b"customer_id,cancelled_on,reason\n7,2026-01-05,\xff\xfe\n")
    with pytest.raises(LandingFileError, match=str(path)):
        zone.read(path, COLUMNS)


def test_parquet_files_keep_their_types(zone):
    path = zone.root / "cancellations" / "2026-01-06.parquet"
    pl.DataFrame({"customer_id": [1, 2], "cancelled_on": ["2026-01-06"] * 2, "reason": ["a", "b"]}).write_parquet(path)
    frame = zone.read(path, COLUMNS)
    assert frame["customer_id"].dtype == pl.Int64 and frame["_source_row"].to_list() == [1, 2]


def test_a_corrupt_parquet_file_is_refused(zone):
    path = zone.root / "cancellations" / "2026-01-06.parquet"
    path.write_bytes(b"PAR1 not really")
    with pytest.raises(LandingFileError, match="not a readable Parquet file"):
        zone.read(path, COLUMNS)


def test_rejected_files_are_moved_aside_with_a_note(zone):
    path = write(zone, "2026-01-05.csv", "bad\n")
    rejected = zone.reject(path, "line 1: broken")
    moved = rejected.moved_to
    assert not path.exists() and moved.exists() and rejected.rows == 0
    assert moved.parent == zone.root / "_rejected" / "cancellations"
    assert f"{path}: line 1: broken" in moved.with_name(moved.name + ".error.txt").read_text()
    assert zone.inventory().files == []


def test_well_named_files_are_listed_and_everything_else_is_a_stray(zone):
    write(zone, "2026-01-05.csv", "x\n")
    write(zone, "notes.txt", "x\n")
    write(zone, "yesterday.csv", "x\n")
    inventory = zone.inventory()
    assert [(f.table, f.day.isoformat()) for f in inventory.files] == [("cancellations", "2026-01-05")]
    assert sorted(s.path.name for s in inventory.strays) == ["notes.txt", "yesterday.csv"]


@pytest.mark.parametrize(
    ("name", "data", "fast"),
    [
        ("lf", b'customer_id,cancelled_on,reason\n7,2026-01-05,"a\nb"\n8,2026-01-05,"c\nd"\n9,2026-01-05,e\n', True),
        (
            "crlf",
            b'customer_id,cancelled_on,reason\r\n7,2026-01-05,"a\r\nb"\r\n8,2026-01-05,"c\r\nd"\r\n9,2026-01-05,e\r\n',
            True,
        ),
        (
            "mixed",
            b'customer_id,cancelled_on,reason\r\n7,2026-01-05,"a\nb"\n8,2026-01-05,"c\nd"\n9,2026-01-05,e\n',
            False,
        ),
    ],
)
def test_lines_count_quoted_newlines_whichever_parser_reads_the_file(zone, name, data, fast):
    """DuckDB reads consistent line ends, Python's csv the rest; both give the same true lines."""
    path = zone.root / "cancellations" / "2026-01-05.csv"
    path.write_bytes(data)
    assert (_fast_csv(data, COLUMNS) is not None) == fast
    frame = zone.read(path, COLUMNS)
    assert frame["customer_id"].to_list() == ["7", "8", "9"]
    assert frame["_source_row"].to_list() == [2, 4, 6]
