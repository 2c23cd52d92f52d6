"""The landing sensor: a file dropped in the landing zone becomes that day's partition."""

import json
from collections import defaultdict

import dagster as dg

from platform_assets.jobs import ingest_job
from platform_assets.partitions import daily_partitions
from platform_assets.raw import raw_key
from resources.sources import RawSource


@dg.sensor(
    job=ingest_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Requests the raw partitions of new or replaced files in the landing zone, one run per day.",
)
def landing_sensor(context: dg.SensorEvaluationContext, source: RawSource):
    seen: dict[str, str] = json.loads(context.cursor or "{}")
    now = {}
    by_day = defaultdict(list)
    valid_days = set(daily_partitions.get_partition_keys())
    for landed in source.landing().files():
        now[str(landed.path)] = landed.fingerprint
        if seen.get(str(landed.path)) == landed.fingerprint:
            continue
        if landed.day.isoformat() not in valid_days:
            context.log.warning(f"Ignoring {landed.path}: {landed.day} is not a partition of the raw tables.")
            continue
        by_day[landed.day.isoformat()].append(landed)
    for day, files in sorted(by_day.items()):
        yield dg.RunRequest(
            run_key="|".join(sorted(f.fingerprint for f in files)),
            partition_key=day,
            asset_selection=sorted({raw_key(f.table) for f in files}, key=str),
            tags={"platform/trigger": "landing", "platform/landed_files": ", ".join(f.path.name for f in files)[:200]},
        )
    context.update_cursor(json.dumps(now))
