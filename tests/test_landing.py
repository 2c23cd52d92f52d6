"""The landing zone reads well-formed files and names the line of a broken one."""

import polars as pl
import pytest

from platform_assets.landing import LandingFileError, LandingZone, Rules, _fast_csv

COLUMNS = ["customer_id", "cancelled_on", "reason"]


@pytest.fixture
def zone(tmp_path):
    (tmp_path / "cancellations").mkdir()
    return LandingZone(tmp_path, ("cancellations",), Rules(quiet_seconds=0))


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


def test_a_file_is_taken_only_once_quiet(zone, monkeypatch):
    import platform_assets.landing as landing

    quiet = LandingZone(zone.root, zone.tables, Rules(quiet_seconds=30))
    write(quiet, "2026-01-05.csv", "customer_id,cancelled_on,reason\n7,2026-01-05,price\n")
    inventory = quiet.inventory()
    assert inventory.files == [] and inventory.strays == []
    assert "taken once unchanged for 30 s" in inventory.waiting[0].problem
    later = landing.time.time() + 31
    monkeypatch.setattr(landing.time, "time", lambda: later)
    assert [f.path.name for f in quiet.inventory().files] == ["2026-01-05.csv"]


def test_temporary_upload_names_wait_then_are_moved_aside_as_abandoned(zone, monkeypatch):
    import platform_assets.landing as landing

    names = [".2026-01-05.csv.Xa9f3Q", "2026-01-05.csv.tmp", "2026-01-05.csv.crdownload", "2026-01-05.filepart", "~x"]
    for name in names:
        write(zone, name, "customer_id\n")
    inventory = zone.inventory()
    assert sorted(w.path.name for w in inventory.waiting) == sorted(names) and not inventory.strays
    later = landing.time.time() + zone.rules.temporary_max_age_seconds + 1
    monkeypatch.setattr(landing.time, "time", lambda: later)
    strays = zone.inventory().strays
    assert sorted(s.path.name for s in strays) == sorted(names)
    assert all("(abandoned)" in s.problem for s in strays)


def test_a_completion_marker_can_be_required(zone):
    marked = LandingZone(zone.root, zone.tables, Rules(quiet_seconds=0, require_marker=True))
    write(marked, "2026-01-05.csv", "customer_id,cancelled_on,reason\n7,2026-01-05,price\n")
    write(marked, "2026-01-06.csv", "customer_id,cancelled_on,reason\n7,2026-01-06,price\n")
    assert marked.inventory().files == []
    write(marked, "2026-01-06.done", "")
    assert [f.path.name for f in marked.inventory().files] == ["2026-01-06.csv"]
    write(marked, "_SUCCESS", "")
    assert [f.path.name for f in marked.inventory().files] == ["2026-01-05.csv", "2026-01-06.csv"]


def test_links_are_followed_only_when_allowed_and_only_to_regular_files_inside_the_zone(zone, tmp_path_factory):
    outside = tmp_path_factory.mktemp("outside") / "2026-01-05.csv"
    outside.write_text("customer_id,cancelled_on,reason\n7,2026-01-05,price\n")
    inside = zone.root / "shared.csv"
    inside.write_text("customer_id,cancelled_on,reason\n8,2026-01-06,price\n")
    folder = zone.root / "cancellations"
    (folder / "2026-01-05.csv").symlink_to(outside)
    (folder / "2026-01-06.csv").symlink_to(inside)
    following = LandingZone(zone.root, zone.tables, Rules(quiet_seconds=0, follow_symlinks=True))
    inventory = following.inventory()
    assert [f.path.name for f in inventory.files] == ["2026-01-06.csv"]
    assert following.read(inventory.files[0].path, COLUMNS)["customer_id"].to_list() == ["8"]
    problems = {s.path.name: s.problem for s in inventory.strays}
    assert "leads outside the landing zone" in problems["2026-01-05.csv"]
    assert "not followed" in {s.path.name: s.problem for s in zone.inventory().strays}["2026-01-06.csv"]


def test_a_cut_last_line_can_be_held_instead_of_refused(zone):
    path = write(zone, "2026-01-05.csv", "customer_id,cancelled_on,reason\n7,2026-01-05,pri")
    with pytest.raises(LandingFileError, match="line 2: the last line does not end with a line break") as refused:
        zone.read(path, COLUMNS)
    assert not refused.value.hold
    holding = LandingZone(zone.root, zone.tables, Rules(quiet_seconds=0, unterminated_last_line="hold"))
    with pytest.raises(LandingFileError) as held:
        holding.read(path, COLUMNS)
    assert held.value.hold


def test_limits_of_size_and_line_length_are_refused_with_a_note(zone):
    path = write(zone, "2026-01-05.csv", "customer_id,cancelled_on,reason\n7,2026-01-05," + "x" * 100 + "\n")
    small = LandingZone(zone.root, zone.tables, Rules(quiet_seconds=0, max_line_bytes=50))
    with pytest.raises(LandingFileError, match="line 2: longer than 50 bytes"):
        small.read(path, COLUMNS)
    tiny = LandingZone(zone.root, zone.tables, Rules(quiet_seconds=0, max_file_bytes=64))
    with pytest.raises(LandingFileError, match="is more than 64 bytes"):
        tiny.read(path, COLUMNS)


def test_a_note_is_at_most_2_kb(zone):
    path = write(zone, "notes.txt", "x\n")
    moved = zone.reject(path, "a problem " * 1000)
    note = (moved.moved_to.parent / f"{moved.moved_to.name}.error.txt").read_bytes()
    assert len(note) <= 2048 and note.startswith(f"{path}: a problem".encode())


def test_a_linked_table_folder_is_moved_aside_not_followed(zone, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    (elsewhere / "2026-01-05.csv").write_text("customer_id,cancelled_on,reason\n7,2026-01-05,price\n")
    (zone.root / "cancellations").rmdir()
    (zone.root / "cancellations").symlink_to(elsewhere)
    inventory = zone.inventory()
    assert inventory.files == []
    assert [s.problem for s in inventory.strays] == [
        "a symbolic link at the root; a table folder must be a real folder"
    ]


def test_a_parquet_file_past_the_size_limit_is_refused(zone):
    path = zone.root / "cancellations" / "2026-01-05.parquet"
    pl.DataFrame(
        {"customer_id": list(range(1000)), "cancelled_on": ["2026-01-05"] * 1000, "reason": ["x"] * 1000}
    ).write_parquet(path)
    tiny = LandingZone(zone.root, zone.tables, Rules(quiet_seconds=0, max_file_bytes=100))
    with pytest.raises(LandingFileError, match="is more than 100 bytes"):
        tiny.read(path, COLUMNS)


def test_only_day_markers_are_markers(zone):
    write(zone, "2026-01-05.done", "")
    write(zone, "_SUCCESS", "")
    write(zone, "report.done", "x\n")
    assert [s.path.name for s in zone.inventory().strays] == ["report.done"]
