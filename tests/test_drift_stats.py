"""Drift statistics against hand-computed values and SciPy on the same data."""

import math
from itertools import pairwise

import numpy as np
import polars as pl
import pytest
from scipy.stats import ks_2samp

from platform_assets.ml.profiles import categorical_profile, numeric_profile
from platform_assets.monitoring.drift import EPSILON, Thresholds, categorical_drift, judge_features, numeric_drift, psi


def test_psi_matches_the_formula_by_hand():
    # (0.25 - 0.5) ln(0.25 / 0.5) + (0.75 - 0.5) ln(0.75 / 0.5)
    assert psi([0.5, 0.5], [0.25, 0.75]) == pytest.approx(0.25 * math.log(2) + 0.25 * math.log(1.5))
    assert psi([0.2, 0.3, 0.5], [0.2, 0.3, 0.5]) == 0.0


def test_an_empty_bin_is_floored_at_epsilon():
    expected = (0.4 - 0.5) * math.log(0.4 / 0.5) + (0.1 - EPSILON) * math.log(0.1 / EPSILON)
    assert psi([0.5, 0.5, 0.0], [0.5, 0.4, 0.1]) == pytest.approx(expected)


def test_numeric_psi_uses_the_reference_deciles_and_a_missing_bin():
    rng = np.random.default_rng(0)
    reference = pl.concat([pl.Series("x", rng.normal(0, 1, 9000)), pl.Series("x", [None] * 1000, dtype=pl.Float64)])
    profile = numeric_profile(reference)
    assert len(profile["edges"]) == 9 and profile["missing_share"] == pytest.approx(0.1)
    current = pl.concat([pl.Series("x", rng.normal(0.5, 1, 9500)), pl.Series("x", [None] * 500, dtype=pl.Float64)])
    stats = numeric_drift(profile, current)
    # By hand: shares of the current values in the reference bins, then the formula.
    values = current.drop_nulls().to_numpy()
    edges = np.asarray(profile["edges"])
    inner = [np.sum((values > a) & (values <= b)) for a, b in pairwise(edges)]
    counts = np.array([np.sum(values <= edges[0]), *inner, np.sum(values > edges[-1])])
    cur = np.append(counts / counts.sum() * 0.95, 0.05)
    ref = np.append(np.asarray(profile["proportions"]) * 0.9, 0.1)
    assert stats["psi"] == pytest.approx(float(np.sum((cur - ref) * np.log(cur / ref))))
    assert stats["effect_size"] == pytest.approx(0.5, abs=0.08)  # a half-sd mean shift


def test_ks_equals_scipy_on_the_same_data():
    rng = np.random.default_rng(1)
    profile = numeric_profile(pl.Series("x", rng.exponential(2.0, 20_000)))
    current = rng.exponential(2.4, 7_000)
    stats = numeric_drift(profile, pl.Series("x", current))
    expected = ks_2samp(np.asarray(profile["sample"]), current, method="asymp")
    assert stats["ks_statistic"] == pytest.approx(expected.statistic)
    assert stats["p_value"] == pytest.approx(expected.pvalue)


def test_the_reference_profile_does_not_depend_on_row_order():
    values = pl.Series("x", np.random.default_rng(2).exponential(2.0, 20_000))
    assert numeric_profile(values) == numeric_profile(values.shuffle(seed=3))


def test_categorical_drift_reports_new_categories_and_psi():
    profile = categorical_profile(pl.Series("c", ["a"] * 600 + ["b"] * 400))
    stats = categorical_drift(profile, pl.Series("c", ["a"] * 500 + ["b"] * 300 + ["new"] * 200))
    expected = psi([0.6, 0.4, 0.0], [0.5, 0.3, 0.2])
    assert stats["psi"] == pytest.approx(expected)
    assert stats["new_categories"] == "new" and 0 < stats["effect_size"] < 1


def test_severity_follows_the_thresholds():
    t = Thresholds(psi_warn=0.1, psi_error=0.25, effect_warn=0.15, effect_error=0.25, max_drifted_share=0.3)

    def report(rows):
        schema = {"feature": pl.String, "psi": pl.Float64, "effect_size": pl.Float64}
        return pl.DataFrame(rows, schema=schema, orient="row")

    quiet = report([("a", 0.01, 0.02), ("b", 0.05, 0.1), ("c", 0.0, 0.0), ("d", 0.0, 0.0)])
    assert judge_features(quiet, t).severity == "ok"
    warned = judge_features(report([("a", 0.12, 0.02), ("b", 0.0, 0.0), ("c", 0.0, 0.0), ("d", 0.0, 0.0)]), t)
    assert warned.severity == "warn" and warned.drifted["feature"].to_list() == ["a"]
    assert (
        judge_features(report([("a", 0.3, 0.02), ("b", 0.0, 0.0), ("c", 0.0, 0.0), ("d", 0.0, 0.0)]), t).severity
        == "error"
    )
    by_effect = judge_features(report([("a", 0.05, 0.3), ("b", 0.0, 0.0), ("c", 0.0, 0.0), ("d", 0.0, 0.0)]), t)
    assert by_effect.severity == "error" and "effect size 0.300" in by_effect.reasons[0]
    by_share = judge_features(report([("a", 0.12, 0.0), ("b", 0.12, 0.0), ("c", 0.0, 0.0), ("d", 0.0, 0.0)]), t)
    assert by_share.severity == "error" and "2/4 features drifted" in by_share.reasons[-1]
