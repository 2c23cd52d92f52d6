"""The landing sensor requests exactly the partitions and tables of new or replaced files."""

import os

import dagster as dg

from platform_assets.landing_sensor import landing_sensor
from platform_assets.raw import raw_key
from tests.conftest import day


def land(home, table, when, text="customer_id,cancelled_on,reason\n1,2026-01-02,price\n"):
    folder = home / "landing" / table
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{when.isoformat()}.csv"
    path.write_text(text)
    return path


def tick(resources, instance, cursor=None):
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"source": resources["source"]})
    requests = list(landing_sensor(context))
    return requests, context.cursor


def test_new_files_request_their_days_and_tables_once(home, resources, instance):
    assert landing_sensor.default_status == dg.DefaultSensorStatus.RUNNING
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


def test_files_outside_the_partitions_are_ignored(home, resources, instance):
    land(home, "cancellations", day(-30))
    requests, _ = tick(resources, instance)
    assert requests == []
