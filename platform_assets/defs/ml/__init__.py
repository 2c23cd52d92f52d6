"""The ML domain's definitions, per declared dataset: the challenger and the promotion gate,
the training and retraining jobs, and the sensor that retrains on failing checks."""

import dagster as dg

from platform_assets.defs.datasets import declared
from platform_assets.defs.ml.assets import model_assets
from platform_assets.defs.ml.jobs import retraining_job, training_job
from platform_assets.defs.ml.sensors import retraining_sensor
from resources.policy import retrain_policy


def defs() -> dg.Definitions:
    return dg.Definitions(
        assets=[a for d in declared() for a in model_assets(d)],
        jobs=[job(d) for d in declared() for job in (training_job, retraining_job)],
        sensors=[retraining_sensor(d) for d in declared()],
        resources={"policy": retrain_policy()},
    )
