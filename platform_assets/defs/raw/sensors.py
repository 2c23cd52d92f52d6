"""The landing sensor: a file dropped in the landing zone becomes that day's partition.

Nothing landed is ignored. Anything that is not one day of one raw table (an unknown
folder, an unsupported file, a name that is not a day, two files for one day, a day
before the first partition or in the future, a pipe or a link) is moved to
``_rejected/`` with a note and logged, and never stops the files of other tables from
being requested. A file that cannot be requested yet (today's, an upload in flight, one
not quiet yet) waits, is logged once, and is requested once it can be.

The cursor holds the fingerprints of requested files and the waiting entries already
logged: ``{"requested": {path: fingerprint}, "told": {path: reason}}``.
"""

import json
from collections import defaultdict

import dagster as dg

from platform_assets.contracts import CONTRACTS
from platform_assets.defs.raw.assets import raw_key
from platform_assets.defs.raw.jobs import ingest_job
from platform_assets.partitions import daily_partitions
from platform_assets.raw_source import landing_zone
from resources.settings import settings
from resources.sources import RawSource


def landing_sensor() -> dg.SensorDefinition:
    """The ``landing_sensor``, made when the definitions are (it reads the sensor interval)."""

    @dg.sensor(
        job=ingest_job(),
        minimum_interval_seconds=settings().sensor_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Requests the raw partitions of new or replaced files in the landing zone, one run per day; "
        "moves aside, with a note, anything that cannot be ingested.",
    )
    def landing_sensor(context: dg.SensorEvaluationContext, source: RawSource):
        cursor = json.loads(context.cursor or "{}")
        seen: dict[str, str] = cursor.get("requested", {}) if "requested" in cursor else cursor
        told: dict[str, str] = cursor.get("told", {})
        zone = landing_zone(source, list(CONTRACTS))
        inventory = zone.inventory()
        for rejected in zone.sweep(inventory.strays):
            context.log.warning(f"Moved aside {rejected}")
        now, waiting = {}, {str(w.path): w.problem for w in inventory.waiting}
        by_day = defaultdict(list)
        valid_days = set(daily_partitions().get_partition_keys())
        for landed in inventory.files:
            if landed.day.isoformat() not in valid_days:
                waiting[str(landed.path)] = f"{landed.day} is not a partition of the raw tables yet"
                continue
            now[str(landed.path)] = landed.fingerprint
            if seen.get(str(landed.path)) != landed.fingerprint:
                by_day[landed.day.isoformat()].append(landed)
        for day, files in sorted(by_day.items()):
            yield dg.RunRequest(
                run_key="|".join(sorted(f.fingerprint for f in files)),
                partition_key=day,
                asset_selection=sorted({raw_key(f.table) for f in files}, key=str),
                tags={
                    "platform/trigger": "landing",
                    "platform/landed_files": ", ".join(f.path.name for f in files)[:200],
                },
            )
        for path, problem in waiting.items():
            if told.get(path) != problem:
                context.log.info(f"Waiting with {path}: {problem}.")
        context.update_cursor(json.dumps({"requested": now, "told": waiting}))

    return landing_sensor
