"""The landing sensor requests exactly the partitions and tables of new or replaced files."""

import json
import logging
import os
from datetime import date, timedelta

import dagster as dg

from platform_assets.defs.raw.assets import raw_key
from platform_assets.defs.raw.sensors import landing_sensor
from tests.conftest import day


def land(home, table, when, text="customer_id,cancelled_on,reason\n1,2026-01-02,price\n"):
    folder = home / "landing" / table
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{when.isoformat()}.csv"
    path.write_text(text)
    return path


class Messages(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def tick(resources, instance, cursor=None, messages: Messages | None = None):
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"source": resources["source"]})
    if messages:
        context.log.addHandler(messages)
    requests = list(landing_sensor()(context))
    return requests, context.cursor


def test_new_files_request_their_days_and_tables_once(home, resources, instance):
    assert landing_sensor().default_status == dg.DefaultSensorStatus.RUNNING
    land(home, "cancellations", day(3))
    land(home, "plan_changes", day(3))
    path = land(home, "cancellations", day(4))
    requests, cursor = tick(resources, instance)
    assert [(r.partition_key, sorted(k.to_user_string() for k in r.asset_selection)) for r in requests] == [
        (day(3).isoformat(), ["raw_cancellations", "raw_plan_changes"]),
        (day(4).isoformat(), ["raw_cancellations"]),
    ]
    assert all(r.tags["platform/trigger"] == "landing" for r in requests)

    again, cursor = tick(resources, instance, cursor)
    assert again == []

    path.write_text("customer_id,cancelled_on,reason\n2,2026-01-05,price\n")
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000))
    replaced, _ = tick(resources, instance, cursor)
    assert [(r.partition_key, r.asset_selection) for r in replaced] == [
        (day(4).isoformat(), [raw_key("cancellations")])
    ]
    assert replaced[0].run_key != requests[1].run_key


def test_strays_are_moved_aside_with_a_note_and_never_block_other_tables(home, resources, instance):
    land(home, "cancellations", day(3))
    stray_folder = home / "landing" / "foo_unknown"
    stray_folder.mkdir()
    (stray_folder / f"{day(3)}.csv").write_text("x\n")
    (home / "landing" / "cancellations" / "notes.txt").write_text("call Alan\n")
    land(home, "plan_changes", day(-30))  # before the first partition

    messages = Messages()
    requests, cursor = tick(resources, instance, messages=messages)

    assert [(r.partition_key, r.asset_selection) for r in requests] == [
        (day(3).isoformat(), [raw_key("cancellations")])
    ]
    rejected = home / "landing" / "_rejected"
    notes = {p.name.split(".")[0]: p.read_text() for p in rejected.rglob("*.error.txt")}
    assert "no raw table is named 'foo_unknown'" in notes["foo_unknown"]
    assert "unsupported file type '.txt'" in notes["notes"]
    assert "is before the first partition" in notes[day(-30).isoformat()]
    assert not stray_folder.exists() and (rejected / "cancellations").is_dir()
    assert len([line for line in messages.lines if line.startswith("Moved aside")]) == 3
    assert tick(resources, instance, cursor)[0] == []


def test_a_file_for_a_day_that_is_not_a_partition_yet_waits(home, resources, instance):
    future = land(home, "cancellations", date.today() + timedelta(days=2))
    requests, cursor = tick(resources, instance)
    assert requests == [] and future.exists()
    assert str(future) not in json.loads(cursor)["requested"]  # requested once its day is a partition


def test_a_file_it_cannot_request_is_logged_once(home, resources, instance):
    folder = home / "landing" / "cancellations"
    folder.mkdir(parents=True)
    upload = folder / f".{day(3)}.csv.Xa9f3Q"
    upload.write_text("customer_id,cancelled_on,reason\n")
    messages = Messages()
    requests, cursor = tick(resources, instance, messages=messages)
    requests_again, _ = tick(resources, instance, cursor, messages=messages)
    assert requests == requests_again == [] and upload.exists()
    assert [line for line in messages.lines if str(upload) in line] == [
        f"Waiting with {upload}: a temporary upload name (an upload in flight)."
    ]
