"""The decisions domain's definitions: campaigns, their impact, review, uplift and the dashboard."""

import dagster as dg

from platform_assets.defs.decisions.assets import decision_assets


def defs() -> dg.Definitions:
    assets, decide_day = decision_assets()
    return dg.Definitions(assets=assets, jobs=[decide_day])
