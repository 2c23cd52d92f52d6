"""When failing checks retrain a model: the retraining sensor's resource."""

import dagster as dg
from pydantic import Field

from resources.settings import settings


class RetrainPolicy(dg.ConfigurableResource):
    """When failing checks retrain the model (``PLATFORM_RETRAIN_CONSECUTIVE_DAYS``, ``..._COOLDOWN_DAYS``)."""

    consecutive_days: int = Field(default=3, description="Consecutive partition days a check must fail with ERROR.")
    cooldown_days: int = Field(default=7, description="Partition days after a retraining before the next one.")
    lookback: int = Field(default=400, description="Latest evaluations per check read on each tick.")


def retrain_policy() -> RetrainPolicy:
    return RetrainPolicy(
        consecutive_days=settings().retrain_consecutive_days,
        cooldown_days=settings().retrain_cooldown_days,
    )
