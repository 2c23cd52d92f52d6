"""The decisions domain's definitions, per dataset that declares decisions: campaigns, their impact, review,
uplift and the dashboard."""

import dagster as dg

from platform_assets.defs.datasets import declared
from platform_assets.defs.decisions.assets import decision_assets


def defs() -> dg.Definitions:
    made = [decision_assets(d) for d in declared() if d.value_column is not None]
    return dg.Definitions(assets=[a for assets, _ in made for a in assets], jobs=[job for _, job in made])
