"""The monitoring domain's definitions, per declared dataset: feature and prediction drift, matured
performance and business impact, each with the checks that fail on them."""

import dagster as dg

from platform_assets.defs.datasets import declared
from platform_assets.defs.monitoring.drift import drift_assets
from platform_assets.defs.monitoring.performance import performance_assets


def defs() -> dg.Definitions:
    return dg.Definitions(assets=[a for d in declared() for a in (*drift_assets(d), *performance_assets(d))])
