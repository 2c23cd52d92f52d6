"""The features domain's definitions: the dbt project as assets."""

import dagster as dg

from platform_assets.defs.features.assets import by_day_models, whole_history_models


def defs() -> dg.Definitions:
    return dg.Definitions(assets=[by_day_models(), whole_history_models()])
