"""The predictions domain's definitions, per declared dataset: daily predictions and the day's
scoring job (and, where outcomes mature past today, the matured-performance job)."""

import dagster as dg

from platform_assets.defs.datasets import declared, judged_by_day
from platform_assets.defs.predictions.assets import predictions_asset
from platform_assets.defs.predictions.jobs import performance_job, scoring_job


def defs() -> dg.Definitions:
    return dg.Definitions(
        assets=[predictions_asset(d) for d in declared()],
        jobs=[
            *(scoring_job(d) for d in declared()),
            *(performance_job(d) for d in declared() if not judged_by_day(d)),
        ],
    )
