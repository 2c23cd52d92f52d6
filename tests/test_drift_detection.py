"""Drift monitoring on real dbt features: quiet without drift, quick and precise with it.

One simulated world of 5,000 customers, with session time falling 30% from day 190.
References are built as candidate_model builds them: the two weeks before the model's
deployment day.
"""

import json

import numpy as np
import polars as pl
import pytest

from platform_assets.definitions import build_definitions
from platform_assets.ml.feature_spec import discover
from platform_assets.ml.profiles import build_profile
from platform_assets.monitoring.drift import Thresholds, feature_drift, judge_features
from resources.dbt import dbt_project
from tests.conftest import build_features, day, ingest, memory_instance, module_home

pytestmark = pytest.mark.world

DRIFT_DAY = 190
SHIFTED = {"minutes_7d", "minutes_30d", "minutes_90d", "minutes_trend"}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    drift = {"start_date": day(DRIFT_DAY).isoformat(), "session_minutes_factor": 0.7}
    settings = {"PLATFORM_SIM_CUSTOMERS": "5000", "PLATFORM_SIM_DRIFT": json.dumps(drift)}
    with module_home(tmp_path_factory, "drift", settings):
        defs = build_definitions()
        with memory_instance() as instance:
            ingest(defs, instance, day(0), day(DRIFT_DAY + 9))
            assert build_features(defs, instance, day(0), day(DRIFT_DAY + 9)).success
        features = defs.resources["warehouse"].query(
            "select * from customer_features where snapshot_date >= ?", [day(140)]
        )
    spec = discover(dbt_project().manifest_path, "training_set", "customer_features")
    return features, list(spec.features)


def verdicts(features: pl.DataFrame, names: list[str], deployed: int, days: range):
    window = features.filter(pl.col("snapshot_date").is_between(day(deployed - 13), day(deployed)))
    reference = build_profile(window, names, np.zeros(1))
    return {
        n: judge_features(
            feature_drift(reference, features.filter(pl.col("snapshot_date") == day(n)), names), Thresholds()
        )
        for n in days
    }


@pytest.mark.slow
def test_thirty_quiet_days_raise_at_most_one_error(world):
    features, names = world
    quiet = verdicts(features, names, deployed=159, days=range(160, 190))
    errors = [n for n, v in quiet.items() if v.severity == "error"]
    assert len(quiet) == 30 and len(errors) <= 1, errors


@pytest.mark.slow
def test_injected_drift_is_flagged_within_three_days_on_the_shifted_features_only(world):
    features, names = world
    after = verdicts(features, names, deployed=DRIFT_DAY - 1, days=range(DRIFT_DAY, DRIFT_DAY + 10))
    flagged = [n for n, v in after.items() if v.severity != "ok"]
    assert flagged and flagged[0] <= DRIFT_DAY + 3, flagged
    for n, verdict in after.items():
        assert set(verdict.drifted["feature"]) <= SHIFTED, (n, verdict.drifted)
    assert after[DRIFT_DAY + 9].severity == "error"  # and it keeps failing, as the retraining rule needs
