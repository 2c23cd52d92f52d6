"""The rules that decide things, on small hand-made inputs: splits, promotion, retraining, reasons, dates.

These run in milliseconds; the end-to-end tests show the same rules inside the assets.
"""

from datetime import date, timedelta

import dagster as dg
import numpy as np
import polars as pl
import pytest

from platform_assets.automation import Cursor, Evaluation, RetrainPolicy, decide_retraining
from platform_assets.ml.evaluation import largest_gap, segment_performance
from platform_assets.ml.feature_spec import FeatureSpec, labelled
from platform_assets.ml.promotion import PromotionConfig, decide
from platform_assets.ml.scoring import top_reasons
from platform_assets.ml.training import SplitRefused, TimeSplit, split_rows
from platform_assets.monitoring.performance_reports import judge_fairness
from platform_assets.partitions import daily_partitions, partition_hint

D0 = date(2026, 3, 2)


def days(*offsets: int) -> list[date]:
    return [D0 + timedelta(days=n) for n in offsets]


def spec(split: str | None = None, horizon: int = 30) -> FeatureSpec:
    return FeatureSpec(
        entity="id",
        snapshot="as_of",
        features=("x",),
        label="y",
        label_horizon_days=horizon,
        training_relation="warehouse.training",
        scoring_relation="warehouse.scoring",
        descriptions={},
        split=split,
    )


# TimeSplit: honest, or refused with the dates


def test_the_time_split_keeps_a_label_horizon_between_training_and_validation():
    split = TimeSplit.latest(days(0, 7, 14, 21, 28, 35, 42, 49), validation=2, horizon_days=14)
    assert split.validation == days(42, 49)
    assert split.train == days(0, 7, 14, 21, 28)  # 28 + 14 = 42: its label ends as validation begins
    assert max(split.train) + timedelta(days=14) <= min(split.validation)


def test_one_snapshot_without_a_declared_split_is_refused_naming_the_dates():
    with pytest.raises(SplitRefused, match=r"history too short.*1 snapshot days \(2026-03-02\.\.2026-03-02\)"):
        TimeSplit.latest(days(0), validation=2, horizon_days=30)
    with pytest.raises(SplitRefused, match="declare a split column"):
        TimeSplit.latest([], validation=2, horizon_days=30)


def test_a_history_shorter_than_the_horizon_is_refused_not_an_index_error():
    with pytest.raises(SplitRefused, match=r"at least 30 days.*before the first validation day 2026-03-16"):
        TimeSplit.latest(days(0, 7, 14, 21), validation=2, horizon_days=30)


def test_validation_without_positives_is_refused():
    frame = pl.DataFrame({"id": [1, 2, 1, 2], "as_of": days(0, 0, 40, 40), "y": [1, 0, 0, 0], "x": [0.1] * 4})
    with pytest.raises(SplitRefused, match=r"the validation rows have no positive label \(2 rows, 0 positive"):
        split_rows(frame, spec(), validation_snapshots=1)


def test_a_declared_split_column_is_used_and_must_keep_entities_apart():
    frame = pl.DataFrame(
        {
            "id": [1, 2, 3, 4],
            "as_of": days(0, 0, 0, 0),
            "y": [1, 0, 1, 0],
            "x": [0.1] * 4,
            "part": ["train", "train", "validation", "validation"],
        }
    )
    split = split_rows(frame, spec("part"), validation_snapshots=2)
    assert (split.kind, split.column) == ("column", "part")
    assert frame.filter(split.is_validation(spec("part")))["id"].to_list() == [3, 4]
    assert TimeSplit.from_json(split.to_json()) == split
    leaky = frame.with_columns(pl.Series("id", [1, 2, 1, 4]))
    with pytest.raises(SplitRefused, match=r"1 entities are in both train and validation \(e\.g\. id \[1\]\)"):
        split_rows(leaky, spec("part"), validation_snapshots=2)
    with pytest.raises(SplitRefused, match=r"values \['test'\] are neither"):
        split_rows(frame.with_columns(pl.lit("test").alias("part")), spec("part"), validation_snapshots=2)


def test_rows_a_model_trained_on_are_those_within_a_horizon_of_its_training_days():
    split = TimeSplit(train=days(0, 7, 14), validation=days(44, 51), horizon_days=30)
    window = pl.DataFrame({"as_of": days(-31, -29, 14, 43, 44)})
    flagged = window.filter(split.trained_on("as_of", window.columns))["as_of"].to_list()
    assert flagged == days(-29, 14, 43)  # label windows overlapping a training label window
    column = TimeSplit(days(0), days(0), 30, kind="column", column="part")
    rows = pl.DataFrame({"as_of": days(0, 0), "part": ["train", "validation"]})
    assert rows.filter(column.trained_on("as_of", rows.columns))["part"].to_list() == ["train"]
    assert pl.DataFrame({"as_of": days(0)}).filter(column.trained_on("as_of", ["as_of"])).height == 1


# The promotion decision

RULES = PromotionConfig()


def figures(version: str, auc: float, calibration: float = 0.02, gap: float | None = 0.05) -> dict:
    return {"version": version, "roc_auc": auc, "calibration_error": calibration, "segment_gap": gap}


def test_a_first_model_needs_the_floor():
    assert decide(figures("1", 0.70), None, RULES).promote
    refused = decide(figures("1", 0.60), None, RULES)
    assert refused.verdict == "refused" and "failed ROC AUC 0.600 vs floor 0.650" in refused.summary


def test_a_challenger_must_match_the_champion_within_tolerances():
    assert decide(figures("2", 0.745), figures("1", 0.75), RULES).promote
    assert not decide(figures("2", 0.73), figures("1", 0.75), RULES).promote
    worse_calibration = decide(figures("2", 0.76, calibration=0.05), figures("1", 0.75), RULES)
    assert "failed calibration error 0.050" in worse_calibration.summary
    unfair = decide(figures("2", 0.76, gap=0.2), figures("1", 0.75), RULES)
    assert "failed largest segment gap 0.200 vs bound 0.150" in unfair.summary
    assert decide(figures("1", 0.75), figures("1", 0.75), RULES).verdict == "unchanged"


def test_an_unmeasured_segment_gap_is_said_not_passed():
    challenger = figures("2", 0.76, gap=None) | {"segment_reason": "no segment column declared"}
    decision = decide(challenger, figures("1", 0.75), RULES)
    assert decision.promote
    assert "segment gap not evaluated (no segment column declared)" in decision.summary
    assert "passed largest segment gap" not in decision.summary


def test_fairness_without_segments_is_not_a_gap_of_zero():
    scored = pl.DataFrame({"y": [0, 1] * 60, "p": np.linspace(0, 1, 120), "plan": ["a"] * 120})
    assert largest_gap(segment_performance(scored, "y", "p", []), [])["gap"] is None
    none_measurable = largest_gap(segment_performance(scored, "y", "p", ["plan"], min_positives=100), ["plan"])
    assert none_measurable["gap"] is None and "no value of plan had enough churners" in none_measurable["reason"]
    passed, text = judge_fairness(largest_gap(segment_performance(scored, "y", "p", []), []), 0.15)
    assert (
        not passed and text == "not evaluated: no segment column declared (config.meta.role: segment in the dbt YAML)"
    )
    ranked = scored.with_columns(pl.Series("y", [0] * 60 + [1] * 60))  # ROC AUC 1 for plan a
    two = pl.concat([ranked, ranked.with_columns(pl.lit("b").alias("plan"), (1 - pl.col("p")).alias("p"))])
    passed, text = judge_fairness(largest_gap(segment_performance(two, "y", "p", ["plan"], 10), ["plan"]), 0.15)
    assert not passed and text == "largest ROC AUC gap 1.000 across plan (best a, worst b; bound 0.15)"


# The retraining decision

CHECK = dg.AssetCheckKey(dg.AssetKey("feature_drift_report"), "feature_drift")
POLICY = RetrainPolicy(consecutive_days=3, cooldown_days=7)


def failing(ids_and_days: list[tuple[int, int]], status: str = "error", version: str = "1") -> list[Evaluation]:
    return [Evaluation(CHECK, i, D0 + timedelta(days=n), status, version, "drift") for i, n in ids_and_days]


def test_three_consecutive_errors_retrain_once_then_the_cooldown_holds():
    first = decide_retraining(failing([(1, 0), (2, 1), (3, 2)]), Cursor(), "1", POLICY)
    assert [e.id for e in first.requests] == [3] and first.cursor == Cursor(3, D0 + timedelta(days=2))
    again = decide_retraining(failing([(1, 0), (2, 1), (3, 2), (4, 3)]), first.cursor, "1", POLICY)
    assert again.requests == [] and "in the cooldown" in again.skipped[0]


def test_warnings_gaps_and_other_versions_do_not_retrain():
    warned = failing([(1, 0), (3, 2)]) + failing([(2, 1)], status="warn")
    assert decide_retraining(warned, Cursor(), "1", POLICY).requests == []
    gap = failing([(1, 0), (2, 1), (3, 3)])
    assert decide_retraining(gap, Cursor(), "1", POLICY).requests == []
    replaced = decide_retraining(failing([(1, 0), (2, 1), (3, 2)]), Cursor(), "2", POLICY)
    assert replaced.requests == [] and "not the champion" in replaced.skipped[0]


def test_a_day_evaluated_again_counts_only_its_latest_evaluation():
    evaluations = failing([(1, 0), (2, 1), (3, 2)]) + failing([(4, 2)], status="ok")
    assert decide_retraining(evaluations, Cursor(), "1", POLICY).requests == []


# Top reasons


def test_top_reasons_are_the_largest_contributions_with_their_sign():
    contributions = np.array([[0.1, -0.5, 0.3, -2.0], [0.0, 0.2, -0.1, -2.0]])  # last column: expected value
    reasons = top_reasons(contributions, ["a", "b", "c"], 2).to_list()
    assert reasons[0] == [{"feature": "b", "contribution": -0.5}, {"feature": "c", "contribution": 0.3}]
    assert reasons[1] == [{"feature": "b", "contribution": 0.2}, {"feature": "c", "contribution": -0.1}]
    assert top_reasons(contributions, ["a", "b", "c"], 5).list.len().to_list() == [3, 3]


# Dates


def test_snapshot_dates_outside_the_partitions_say_what_to_set():
    start = daily_partitions.start.date()
    early = partition_hint(start - timedelta(days=10), start + timedelta(days=5))
    assert f"set PLATFORM_START_DATE={start - timedelta(days=10)}" in early
    assert partition_hint(start, start + timedelta(days=5)) is None


def test_the_reference_profile_samples_whole_customers_reproducibly():
    """Past the row cap the drift reference keeps a fixed share of customers, the same each time."""
    from platform_assets.ml.profiles import sample_entities

    frame = pl.DataFrame({"id": np.repeat(np.arange(4000), 20), "as_of": np.tile(np.arange(20), 4000)})
    assert sample_entities(frame, "id", 1_000_000).height == 80_000
    sample = sample_entities(frame, "id", 20_000)
    assert 16_000 <= sample.height <= 24_000
    assert (sample.group_by("id").len()["len"] == 20).all()  # whole customers, every one of their rows
    shuffled = frame.sample(fraction=1.0, shuffle=True, seed=3)
    assert sample.sort("id", "as_of").equals(sample_entities(shuffled, "id", 20_000).sort("id", "as_of"))


# The drift reference: what the model learned from, and a day that is part of it


def _one_snapshot() -> tuple[pl.DataFrame, TimeSplit]:
    """One snapshot day, split by a column: 80 train rows, 20 validation rows."""
    frame = pl.DataFrame(
        {
            "id": range(100),
            "as_of": [D0] * 100,
            "x": np.arange(100.0),
            "y": [i % 3 == 0 for i in range(100)],
            "holdout": ["validation" if i % 5 == 0 else "train" for i in range(100)],
        }
    )
    return frame, TimeSplit.by_column(frame, spec(split="holdout"))


def test_the_reference_is_the_training_rows_and_names_its_days():
    from platform_assets.ml.profiles import reference_rows

    frame, split = _one_snapshot()
    rows, record = reference_rows(frame, split, spec(split="holdout"), "training", 1_000)
    assert set(rows["holdout"]) == {"train"} and rows.height == record["rows"] == 80
    assert record["kind"] == "training" and record["snapshots"] == [str(D0)]
    assert record["description"] == f"the training rows (split holdout = train): 80 rows of {D0}"
    validation, record = reference_rows(frame, split, spec(split="holdout"), "validation", 1_000)
    assert set(validation["holdout"]) == {"validation"} and record["kind"] == "validation"

    timed = pl.DataFrame({"id": [1, 2] * 8, "as_of": [d for d in days(0, 7, 14, 21, 28, 35, 42, 49) for _ in (1, 2)]})
    time_split = TimeSplit.latest(timed["as_of"].to_list(), validation=2, horizon_days=14)
    rows, record = reference_rows(timed.with_columns(x=pl.lit(1.0)), time_split, spec(), "training", 1_000)
    assert record["snapshots"] == [str(d) for d in days(0, 7, 14, 21, 28)]  # the training days, not the latest
    assert "the time split's training days" in record["description"]


def test_a_day_that_is_part_of_the_reference_is_not_compared():
    from platform_assets.ml.profiles import reference_rows
    from platform_assets.monitoring.drift import reference_overlap

    frame, split = _one_snapshot()
    _, record = reference_rows(frame, split, spec(split="holdout"), "training", 1_000)
    reason = reference_overlap({"reference": record}, D0)
    assert reason.startswith("this day is part of the reference (training rows): not a drift comparison")
    assert reference_overlap({"reference": record}, D0 + timedelta(days=1)) is None
    assert reference_overlap({"snapshot": f"{D0}..{D0}"}, D0) is None  # an older profile recorded no rows


# Risk bands: from the validated scores, the same for the batch and the online API


def test_bands_from_validation_scores_follow_the_shares_where_most_rows_are_positive():
    from platform_assets.ml.bands import fit_bands

    scores = np.random.default_rng(5).beta(8, 1.5, 20_000)  # 84% of scores above 0.7: most rows positive
    assert (scores >= 0.3).mean() > 0.99  # fixed cuts would call nearly everyone high risk
    bands = fit_bands(scores)
    band, review = bands.assign(scores)
    shares = np.bincount(band, minlength=3) / scores.size
    np.testing.assert_allclose(shares, [0.80, 0.15, 0.05], atol=0.002)
    assert review.mean() == pytest.approx(0.04, abs=0.002)
    assert bands.review_from < bands.high_from < bands.review_to  # the review band straddles the high cut
    assert bands.rule.startswith("from the validation scores (20000 rows): top 5% high")
    fresh = np.random.default_rng(6).beta(8, 1.5, 5_000)  # a later day like the validation rows
    assert (bands.assign(fresh)[0] == 2).mean() == pytest.approx(0.05, abs=0.015)


def test_declared_bands_are_checked_and_fixed_cuts_ignore_the_scores():
    from platform_assets.ml.bands import UNRECORDED, RiskBands, bands_of, declared_rule, fit_bands

    shares = declared_rule({"high_share": 0.1, "medium_share": 0.2}, "here")
    assert dict(shares) == {"high_share": 0.1, "medium_share": 0.2, "review_share": 0.04}
    band, _ = fit_bands(np.linspace(0, 1, 10_001), shares).assign(np.linspace(0, 1, 10_001))
    np.testing.assert_allclose(np.bincount(band) / band.size, [0.7, 0.2, 0.1], atol=0.001)

    fixed = fit_bands(np.array([0.9, 0.95]), declared_rule({"medium_from": 0.1, "high_from": 0.3}, "here"))
    assert (fixed.medium_from, fixed.high_from, fixed.review_from, fixed.review_to) == pytest.approx(
        (0.1, 0.3, 0.25, 0.35)
    )
    assert fixed.rule == "declared in dbt: medium from 0.1, high from 0.3, review 0.25 to 0.35"
    assert bands_of({"bands": fixed.to_dict()}) == fixed and bands_of({}) is UNRECORDED
    assert RiskBands.from_dict(fixed.to_dict()) == fixed
    for bad, message in (
        ({"high_share": 0.1, "high_from": 0.3}, "mixes shares"),
        ({"top": 0.1}, "unknown risk_bands keys"),
        ({"high_from": 0.3}, "need both medium_from and high_from"),
        ({"medium_from": 0.5, "high_from": 0.3}, "medium_from <= high_from"),
        ({"high_share": 0.6, "medium_share": 0.5}, "high_share \\+ medium_share <= 1"),
        ({"high_share": "a lot"}, "must be numbers"),
    ):
        with pytest.raises(ValueError, match=message):
            declared_rule(bad, "here")


# Treated labels: what an outcome model declares about rows a decision treated


def outcome_model(treated_meta: dict | None) -> dict:
    """A hand-made manifest with one outcome model, with a treated column if its meta is given."""
    columns = {
        "id": {"config": {"meta": {"role": "entity"}}},
        "as_of": {"config": {"meta": {"role": "snapshot"}}},
        "y": {"config": {"meta": {"role": "label", "horizon_days": 30}}},
    }
    if treated_meta is not None:
        columns["contacted_in_horizon"] = {"config": {"meta": treated_meta}}
    node = {"resource_type": "model", "name": "outcomes", "relation_name": "w.outcomes", "columns": columns}
    return {"nodes": {"model.p.outcomes": node}}


def test_treated_rows_are_excluded_unless_the_outcome_model_says_keep():
    declared = labelled(outcome_model({"role": "treated"}), "outcomes")
    assert declared.treated == "contacted_in_horizon" and declared.excludes_treated  # exclude by default
    kept = labelled(outcome_model({"role": "treated", "treated_labels": "keep"}), "outcomes")
    assert kept.treated == "contacted_in_horizon" and not kept.excludes_treated
    undeclared = labelled(outcome_model(None), "outcomes")
    assert undeclared.treated is None and not undeclared.excludes_treated
    with pytest.raises(ValueError, match="treated_labels 'drop' is neither of"):
        labelled(outcome_model({"role": "treated", "treated_labels": "drop"}), "outcomes")
