"""What the Dagster UI shows stays put while the code moves underneath it.

The asset keys, their groups, the asset checks, jobs, schedules and sensors of the code
location are compared with a committed snapshot. A move that changes any of them fails
here; an intended rename updates ``tests/fixtures/layout.json`` in the same commit
(``UPDATE_LAYOUT=1 pytest tests/test_layout.py`` rewrites it).
"""

import json
import os
from pathlib import Path

import dagster as dg

SNAPSHOT = Path(__file__).parent / "fixtures" / "layout.json"


def layout(defs: dg.Definitions) -> dict[str, object]:
    """The names the UI shows, sorted, as plain JSON values."""
    graph = defs.resolve_asset_graph()
    return {
        "assets": {key.to_user_string(): graph.get(key).group_name for key in sorted(graph.get_all_asset_keys())},
        "asset_checks": sorted(f"{k.asset_key.to_user_string()}:{k.name}" for k in graph.asset_check_keys),
        "jobs": sorted(
            j.name for j in defs.resolve_all_job_defs() if not j.name.startswith("__")
        ),  # not the implicit job
        "schedules": sorted(s.name for s in defs.schedules or ()),
        "sensors": sorted(s.name for s in defs.sensors or ()),
    }


def test_the_ui_shows_the_same_assets_checks_jobs_schedules_and_sensors():
    from platform_assets.definitions import defs

    current = layout(defs)
    if os.environ.get("UPDATE_LAYOUT"):
        SNAPSHOT.write_text(json.dumps(current, indent=2) + "\n")
    assert current == json.loads(SNAPSHOT.read_text())
