"""The rules that decide things, on small hand-made inputs: splits, promotion, retraining, reasons, dates.

These run in milliseconds; the end-to-end tests show the same rules inside the assets.
"""

import json
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
import pytest

from platform_assets.defs.datasets import refuse_days_before_the_partitions
from platform_assets.defs.ml.assets import gate_fairness_check
from platform_assets.ml.evaluation import judge_fairness, largest_gap, segment_performance
from platform_assets.ml.feature_spec import Dataset, FeatureSpec, labelled, load_manifest, sources_read
from platform_assets.ml.promotion import PromotionConfig, decide
from platform_assets.ml.retraining import Cursor, Evaluation, decide_retraining
from platform_assets.ml.scoring import top_reasons
from platform_assets.ml.training import SplitRefused, TimeSplit, split_rows
from platform_assets.monitoring.outcomes import snapshot_to_judge, unseen
from platform_assets.partitions import daily_partitions, matured_partitions, partition_hint
from resources.policy import RetrainPolicy

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


def weekly(first: date, weeks: int) -> list[date]:
    return [first + timedelta(weeks=n) for n in range(weeks)]


def test_the_snapshot_judged_is_the_latest_at_or_before_a_horizon_ago_whatever_the_cadence():
    """Weekly snapshots (Thursdays) under a 90-day horizon: 90 days before a Thursday is a Friday, never a
    snapshot, so an exact day - horizon never matures; the Thursday before it has."""
    thursdays = weekly(date(1997, 10, 2), 40)
    assert snapshot_to_judge(date(1998, 6, 25), 90, thursdays) == date(1998, 3, 26)  # 91 days back
    assert snapshot_to_judge(date(1998, 6, 23), 90, thursdays) == date(1998, 3, 19)  # 03-26 matures tomorrow
    assert snapshot_to_judge(date(1998, 6, 25), 91, thursdays) == date(1998, 3, 26)  # a multiple: exact
    daily = days(*range(0, 10))
    assert snapshot_to_judge(D0 + timedelta(days=35), 30, daily) == D0 + timedelta(days=5)
    assert snapshot_to_judge(D0 + timedelta(days=29), 30, daily) is None  # nothing has matured yet
    assert snapshot_to_judge(D0, 30, []) is None


def test_a_snapshot_is_unseen_once_its_label_window_clears_the_last_training_label_window():
    """The issue's case: weekly snapshots, a 90-day horizon. A snapshot 84 days after the last training one
    shares 6 days of outcomes with it (a customer leaving then was a training positive): left out, and the
    message says so, not that the model trained on it. From 90 days on, snapshots are unseen."""
    last = date(1997, 12, 25)
    split = TimeSplit(
        train=weekly(date(1997, 10, 2), 13), validation=[date(1998, 3, 26), date(1998, 4, 2)], horizon_days=90
    )
    assert max(split.train) == last
    snapshots = [last + timedelta(days=n) for n in (84, 89, 90, 91, 175)]
    frame = pl.DataFrame({"as_of": snapshots})
    flagged = frame.filter(split.trained_on("as_of", frame.columns))["as_of"].to_list()
    assert flagged == [last + timedelta(days=84), last + timedelta(days=89)]

    rows = pl.DataFrame({"as_of": [date(1998, 3, 19)] * 23570, "id": range(23570)})
    kept, left_out, evaluated = unseen(rows, split, "1", date(1998, 3, 19), "as_of", "churn_outcomes")
    assert kept.is_empty() and evaluated == "nothing"
    assert left_out == (
        "23570 of 23570 matured rows left out: their snapshot 1998-03-19 is within 90 days of v1's last training "
        "snapshot 1997-12-25 (84 days after it), so their labels overlap what it learned (unseen from 1998-03-25)"
    )
    later = rows.with_columns(as_of=pl.lit(date(1998, 6, 18)))
    kept, left_out, evaluated = unseen(later, split, "1", date(1998, 6, 18), "as_of", "churn_outcomes")
    assert kept.height == 23570 and left_out == ""
    assert evaluated == (
        "unseen by v1: snapshot 1998-06-18 is 175 days after its last training snapshot 1997-12-25 "
        "(at least the 90-day horizon), not one of its validation days"
    )
    validated = rows.with_columns(as_of=pl.lit(date(1998, 3, 26)))
    assert unseen(validated, split, "1", date(1998, 3, 26), "as_of", "churn_outcomes")[2] == (
        "v1's validation rows (snapshot 1998-03-26 validated it): this is its validation set again"
    )
    assert split.overlap_reason(date(1997, 12, 25), "1") == "v1 trained on snapshot 1997-12-25"


def test_training_snapshots_far_apart_leave_the_days_between_them_unseen():
    """Only days within the horizon of a training snapshot overlap: monthly training snapshots under a 7-day
    horizon leave the weeks between them unseen."""
    split = TimeSplit(train=days(0, 30), validation=days(60), horizon_days=7)
    assert split.overlapping_windows() == [
        (D0 - timedelta(days=7), D0 + timedelta(days=7)),
        (D0 + timedelta(days=23), D0 + timedelta(days=37)),
    ]
    window = pl.DataFrame({"as_of": days(-7, -6, 6, 7, 15, 23, 24, 36, 37)})
    assert window.filter(split.trained_on("as_of", window.columns))["as_of"].to_list() == days(-6, 6, 24, 36)
    assert split.overlap_reason(D0 + timedelta(days=24), "2") == (
        f"their snapshot {D0 + timedelta(days=24)} lies among v2's training snapshots ({D0}..{D0 + timedelta(days=30)}), "
        "within 7 days of one, so their labels overlap what it learned"
    )


def test_with_a_split_column_later_days_are_judged_on_the_validation_entities_only():
    split = TimeSplit(days(0, 7), days(0, 7), 30, kind="column", column="part")
    later = pl.DataFrame({"as_of": days(70, 70, 70), "id": [1, 2, 3], "part": ["train", "validation", "train"]})
    kept, left_out, evaluated = unseen(later, split, "3", D0 + timedelta(days=70), "as_of", "machine_outcomes")
    assert kept["id"].to_list() == [2]
    assert left_out == (
        f"2 of 3 matured rows left out: their entities are the ones v3 trained on (part = train), here on snapshot "
        f"{D0 + timedelta(days=70)}; only its validation entities are judged"
    )
    assert evaluated == (
        f"v3's validation entities (part = validation) on snapshot {D0 + timedelta(days=70)}, which it neither "
        "trained nor validated on: entities it never learned, who are also its validation set"
    )
    same_day = later.with_columns(as_of=pl.lit(D0 + timedelta(days=7)))
    assert unseen(same_day, split, "3", D0 + timedelta(days=7), "as_of", "machine_outcomes")[1:] == (
        "2 of 3 matured rows left out: v3 trained on them (part = train)",
        f"v3's validation rows (part = validation on snapshot {D0 + timedelta(days=7)}): this is its validation set again",
    )
    kept, left_out, _ = unseen(later.drop("part"), split, "3", D0 + timedelta(days=70), "as_of", "machine_outcomes")
    assert kept.is_empty()
    assert left_out == (
        "3 of 3 matured rows left out: machine_outcomes has no split column `part`, so v3's training entities "
        "cannot be told apart"
    )


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
    assert largest_gap(segment_performance(scored, "y", "p", [], min_per_class=10), [], 10)["gap"] is None
    passed, text = judge_fairness(
        largest_gap(segment_performance(scored, "y", "p", [], min_per_class=10), [], 10), 0.15
    )
    assert (
        not passed and text == "not evaluated: no segment column declared (config.meta.role: segment in the dbt YAML)"
    )
    alone = largest_gap(segment_performance(scored, "y", "p", ["plan"], min_per_class=10), ["plan"], 10)
    assert alone["gap"] is None  # one measured value has nothing to differ from: not a gap of 0
    assert alone["reason"].startswith("no two values of plan had at least 10 churners and 10 non-churners")
    ranked = scored.with_columns(pl.Series("y", [0] * 60 + [1] * 60))  # ROC AUC 1 for plan a
    two = pl.concat([ranked, ranked.with_columns(pl.lit("b").alias("plan"), (1 - pl.col("p")).alias("p"))])
    segments = segment_performance(two, "y", "p", ["plan"], min_per_class=10)
    passed, text = judge_fairness(largest_gap(segments, ["plan"], 10), 0.15)
    assert not passed and text == "largest ROC AUC gap 1.000 across plan (best a, worst b; bound 0.15)"


def test_a_segment_value_needs_the_minimum_of_churners_and_of_non_churners():
    """Four declared segments on a small table: no value has enough of both outcomes, so fairness is
    not evaluated, and the message says what the rule counts."""
    rng = np.random.default_rng(3)
    n = 400
    frame = pl.DataFrame(
        {
            "y": rng.random(n) < 0.08,  # about 32 churners in all
            "p": rng.random(n),
            "department": rng.choice(["sales", "it", "hr"], n),
            "gender": rng.choice(["f", "m"], n),
            "level": rng.choice(["junior", "senior"], n),
            "site": rng.choice(["north", "south"], n),
        }
    )
    declared = ["department", "gender", "level", "site"]
    gap = largest_gap(segment_performance(frame, "y", "p", declared, min_per_class=50), declared, 50)
    assert gap["gap"] is None
    assert gap["reason"] == (
        "no two values of any of department, gender, level, site had at least 50 churners and 50 non-churners "
        "each to compare (PLATFORM_FAIRNESS_MIN_PER_CLASS)"
    )
    # Many churners but few non-churners is as unmeasurable as the reverse.
    mostly_churned = pl.DataFrame({"y": [1] * 90 + [0] * 10, "p": np.linspace(0, 1, 100), "site": ["a", "b"] * 50})
    assert segment_performance(mostly_churned, "y", "p", ["site"], min_per_class=20).is_empty()
    assert segment_performance(mostly_churned, "y", "p", ["site"], min_per_class=5).height == 2


def test_the_gate_passes_an_unmeasured_fairness_but_says_it_was_not_evaluated():
    """What the gate's fairness check (``gate_fairness``) and its metadata say when no segment could be measured."""
    reason = "no two values of department had at least 50 churners and 50 non-churners each to compare"
    gap = {"gap": None, "segment": None, "best": None, "worst": None, "reason": reason}
    challenger = figures("2", 0.76, gap=None) | {"segment_reason": reason}
    decision = decide(challenger, figures("1", 0.75), RULES)
    assert decision.verdict == "passed"
    assert f"segment gap not evaluated ({reason})" in decision.reasons
    check = gate_fairness_check(dg.AssetKey("champion_model"), "2", gap, RULES, ("department",))
    assert check.check_name == "gate_fairness" and not check.passed
    assert check.severity == dg.AssetCheckSeverity.WARN
    assert check.description == f"challenger v2: not evaluated: {reason}"
    assert check.metadata["segment_gap"].value == "not evaluated"
    measured = {"gap": 0.04, "segment": "department", "best": "it", "worst": "hr", "reason": None}
    assert gate_fairness_check(dg.AssetKey("champion_model"), "2", measured, RULES, ("department",)).passed


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
    start = daily_partitions().start.date()
    early = partition_hint(start - timedelta(days=10), start + timedelta(days=5))
    assert f"set PLATFORM_START_DATE={start - timedelta(days=10)}" in early
    assert partition_hint(start, start + timedelta(days=5)) is None


def _one_model_manifest(tmp_path, raw_code: str, snapshot_meta: dict | None = None) -> Path:
    """A manifest with one seed-built dataset model, as dbt parses the onboarding page's."""
    model = {
        "unique_id": "model.churn_platform.telco_churn",
        "resource_type": "model",
        "name": "telco_churn",
        "original_file_path": "models/telco/telco_churn.sql",
        "raw_code": raw_code,
        "config": {"meta": {"churn_platform": {"registered_model": "telco_churn"}}},
        "columns": {
            "customer_id": {"config": {"meta": {"role": "entity"}}},
            "snapshot_date": {"config": {"meta": {"role": "snapshot", **(snapshot_meta or {})}}},
        },
        "depends_on": {"nodes": ["seed.churn_platform.telco_customers"]},
    }
    seed = {"unique_id": "seed.churn_platform.telco_customers", "resource_type": "seed", "name": "telco_customers"}
    path = tmp_path / f"manifest-{len(list(tmp_path.iterdir()))}.json"  # a new file: manifests are cached by mtime
    path.write_text(json.dumps({"nodes": {n["unique_id"]: n for n in (model, seed)}, "sources": {}}))
    return path


TELCO = Dataset("telco_churn", "telco_churn", "telco_churn", "telco_churn")


def test_a_snapshot_date_before_the_partitions_fails_the_load_naming_model_and_date(tmp_path):
    manifest = _one_model_manifest(
        tmp_path, "select customerid as customer_id,\n    date '2026-06-01' as snapshot_date"
    )
    with pytest.raises(ValueError) as raised:
        refuse_days_before_the_partitions(manifest, [TELCO], date(2026, 7, 1))
    assert str(raised.value) == (
        "dbt model 'telco_churn' (models/telco/telco_churn.sql) sets snapshot_date to the date 2026-06-01 in its "
        "SQL, before PLATFORM_START_DATE 2026-07-01, the first daily partition: telco_churn could never be scored "
        "or monitored on 2026-06-01. Set PLATFORM_START_DATE=2026-06-01 (or earlier) and reload."
    )
    refuse_days_before_the_partitions(manifest, [TELCO], date(2026, 6, 1))  # the start itself is a partition
    cast = _one_model_manifest(tmp_path, "select cast('2025-12-31' as date) as \"snapshot_date\"")
    with pytest.raises(ValueError, match="to the date 2025-12-31 in its SQL"):
        refuse_days_before_the_partitions(cast, [TELCO], date(2026, 1, 1))


def test_a_declared_first_snapshot_is_checked_too(tmp_path):
    """Days computed from data are unknown until a build; ``first_snapshot`` in the column's meta declares them."""
    manifest = _one_model_manifest(tmp_path, "select * from weekly", {"first_snapshot": "2025-01-06"})
    with pytest.raises(ValueError, match="declares first_snapshot 2025-01-06 on snapshot_date, before PLATFORM_START"):
        refuse_days_before_the_partitions(manifest, [TELCO], date(2026, 1, 1))
    unknown = _one_model_manifest(tmp_path, "select * from weekly")
    refuse_days_before_the_partitions(unknown, [TELCO], date(2026, 1, 1))  # nothing declared: training checks
    wrong = _one_model_manifest(tmp_path, "select 1", {"first_snapshot": "January"})
    with pytest.raises(ValueError, match="first_snapshot 'January' is not a date"):
        refuse_days_before_the_partitions(wrong, [TELCO], date(2026, 1, 1))


def test_matured_outcomes_have_partitions_a_horizon_past_the_last_day():
    """A one-off extract with horizon_days 365, snapshot on the last daily partition, is judged 365 days later."""
    last = date.fromisoformat(daily_partitions().get_last_partition_key())
    matured = (last + timedelta(days=365)).isoformat()
    assert matured_partitions(365).get_last_partition_key() == matured
    assert matured_partitions(365).has_partition_key(matured) and not daily_partitions().has_partition_key(matured)
    assert matured_partitions(365).get_first_partition_key() == daily_partitions().get_first_partition_key()


# Lineage


def test_a_model_reads_only_the_sources_its_lineage_reaches(tmp_path):
    from resources.dbt import dbt_project

    seeded = load_manifest(_one_model_manifest(tmp_path, "select 1"))
    assert sources_read(seeded, "telco_churn") == set()  # built from a seed: no lake table
    project = load_manifest(dbt_project().manifest_path)
    assert sources_read(project, "stg_sessions") == {"raw_sessions"}
    assert {"raw_sessions", "raw_cancellations", "campaign_log"} <= sources_read(project, "training_set")


def test_the_reference_profile_samples_whole_customers_reproducibly(tmp_path):
    """Past the row cap the drift reference keeps a fixed share of customers, the same each time."""
    from platform_assets.ml.profiles import sample_entities

    frame = pl.DataFrame({"id": np.repeat(np.arange(4000), 20), "as_of": np.tile(np.arange(20), 4000)})
    assert sample_entities(frame, "id", 1_000_000).height == 80_000
    sample = sample_entities(frame, "id", 20_000)
    assert 16_000 <= sample.height <= 24_000
    assert (sample.group_by("id").len()["len"] == 20).all()  # whole customers, every one of their rows
    shuffled = frame.sample(fraction=1.0, shuffle=True, seed=3)
    assert sample.sort("id", "as_of").equals(sample_entities(shuffled, "id", 20_000).sort("id", "as_of"))


def test_training_reads_a_stratified_sample_past_its_bound_the_same_each_time(tmp_path):
    """Every snapshot day and label keeps the same share; whole customers; all rows under the bound."""
    import duckdb

    from platform_assets.ml.sample import read_sample
    from resources.warehouse import Warehouse

    rng = np.random.default_rng(5)
    rows = pl.DataFrame(
        {
            "id": np.tile(np.arange(2000), 10),
            "as_of": pl.Series(days(*range(0, 70, 7)), dtype=pl.Date).gather(np.repeat(np.arange(10), 2000)),
            "x": rng.normal(size=20_000),
            "y": rng.random(20_000) < np.repeat(np.linspace(0.02, 0.2, 10), 2000),
        }
    )
    path = tmp_path / "training.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("create schema warehouse")
        con.execute("create table warehouse.training as select * from rows order by random()")
    warehouse, declared = Warehouse(path=str(path)), spec()

    frame, sample = read_sample(warehouse, declared, 4000)
    assert sample.of == 20_000 and sample.rows == frame.height and 4000 <= frame.height <= 4020
    strata = rows.group_by("as_of", "y").len().join(frame.group_by("as_of", "y").len(), on=["as_of", "y"])
    assert ((strata["len_right"] - strata["len"] * 0.2).abs() < 1).all()  # each stratum's share, rounded up
    assert frame["id"].n_unique() < 900  # the same low-hash customers on every day, not 4000 draws
    again, _ = read_sample(warehouse, declared, 4000)
    assert frame.sort("as_of", "id").equals(again.sort("as_of", "id"))
    assert "4000" in sample.describe() and "as_of x y stratum" in sample.describe()

    whole, record = read_sample(warehouse, declared, 1_000_000, "as_of = ?", [D0])
    assert whole.height == record.of == record.rows == 2000 and record.whole


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
