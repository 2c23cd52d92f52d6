"""Scoring a day on a real LightGBM model into a real Delta table: reasons where they are due, exact."""

from datetime import date

import lightgbm as lgb
import numpy as np
import polars as pl
import pyarrow as pa
import pytest

from platform_assets.ml.bands import RiskBands, bands_of
from platform_assets.ml.pyfunc_model import ChurnModel, encode
from platform_assets.ml.scoring import DayScorer, ScoringConfig, top_reasons
from resources.lake import Lake

DAY = date(2026, 5, 4)
TABLE = "predictions/churn_predictions"
PLANS = ["basic", "plus", "pro"]
FEATURES = ["tenure", "sessions", "tickets", "spend", "plan"]
# Cuts chosen so that every trigger explains rows no earlier trigger does.
BANDS = RiskBands(medium_from=0.5, high_from=0.6, review_from=0.15, review_to=0.2, rule="cuts of this test")
CONFIG = {"reasons_top_share": 0.2, "chunk_rows": 700}


@pytest.fixture(scope="module")
def model() -> ChurnModel:
    rng = np.random.default_rng(7)
    frame = _features(rng, 4000)
    logit = -0.4 * frame["tenure"] / 12 + 0.8 * frame["tickets"] - 0.05 * frame["sessions"] - 1.0
    logit = logit.to_numpy() + np.where(frame["plan"] == "basic", 0.8, 0.0)
    label = rng.random(frame.height) < 1 / (1 + np.exp(-logit))
    categories = {"plan": PLANS}
    matrix = encode(frame, FEATURES, categories)
    data = lgb.Dataset(matrix, label, feature_name=FEATURES, categorical_feature=["plan"])
    booster = lgb.train({"objective": "binary", "verbosity": -1, "num_leaves": 15}, data, num_boost_round=60)
    return ChurnModel.from_parts(booster, FEATURES, categories)


def _features(rng: np.random.Generator, rows: int) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "customer_id": np.arange(rows),
            "snapshot_date": [DAY] * rows,
            "tenure": rng.integers(0, 60, rows).astype(float),
            "sessions": rng.poisson(12, rows).astype(float),
            "tickets": rng.poisson(1.0, rows).astype(float),
            "spend": rng.gamma(2.0, 20.0, rows),
            "plan": rng.choice([*PLANS, "legacy"], rows),  # "legacy" was never seen in training
        }
    )


@pytest.fixture(scope="module")
def day_features() -> pl.DataFrame:
    return _features(np.random.default_rng(11), 3000)


def _scorer(model, features, bands: RiskBands = BANDS, **config) -> DayScorer:
    return DayScorer(
        model,
        features,
        ScoringConfig(**config),
        bands,
        keys=["customer_id", "snapshot_date"],
        constants=[pl.lit("1").alias("model_version"), pl.lit(DAY).alias("ds")],
    )


def _score(model, features, lake: Lake, bands: RiskBands = BANDS, **config) -> tuple[DayScorer, pl.DataFrame]:
    scorer = _scorer(model, features, bands, **config)
    lake.replace_days(TABLE, scorer.batches, DAY, DAY, add_columns=True)  # as churn_predictions does
    return scorer, lake.read_days(TABLE, DAY).sort("customer_id")


def test_reasons_exactly_on_the_rows_someone_acts_on_and_equal_to_full_shap(model, day_features, tmp_path):
    _, stored = _score(model, day_features, Lake(root=str(tmp_path)), **CONFIG)
    full = model.contributions(day_features)
    probability = model.booster.predict(encode(day_features, FEATURES, model.categories))
    # Plain predict on every row: identical probabilities, not merely close.
    np.testing.assert_array_equal(stored["churn_probability"].to_numpy(), probability)

    floor = np.sort(probability)[::-1][int(np.ceil(0.2 * probability.size)) - 1]
    review = (probability >= 0.15) & (probability < 0.2)
    due = (probability >= 0.5) | review | (probability >= floor)
    why = stored["explained_because"]
    assert set(why.drop_nulls()) == {"high risk", "medium risk", "review", "top share"}
    assert (why.is_not_null().to_numpy() == due).all() and 0 < due.sum() < due.size
    assert (stored["top_reasons"].is_not_null().to_numpy() == due).all()
    assert (why == "review").sum() == (review & (probability < 0.5)).sum() > 0
    assert (why == "top share").sum() == ((probability >= floor) & (probability < 0.5) & ~review).sum() > 0

    expected = top_reasons(full[due], FEATURES, 3)
    assert stored.filter(pl.Series(due))["top_reasons"].to_list() == expected.to_list()
    np.testing.assert_array_equal(stored["expected_value"].to_numpy(), full[:, -1])


def test_reasons_for_all_explains_every_row(model, day_features, tmp_path):
    _, stored = _score(model, day_features, Lake(root=str(tmp_path)), reasons_for="all", chunk_rows=1000)
    assert stored.height == day_features.height and set(stored["explained_because"]) == {"all"}
    expected = top_reasons(model.contributions(day_features), FEATURES, 3)
    assert stored["top_reasons"].to_list() == expected.to_list()


def test_rescoring_a_day_replaces_it_in_one_commit(model, day_features, tmp_path):
    lake = Lake(root=str(tmp_path))
    _score(model, day_features, lake, **CONFIG)
    version = lake.version(TABLE)
    _, stored = _score(model, day_features, lake, **CONFIG | {"reasons_for": "all"})
    assert lake.version(TABLE) == version + 1  # the whole day, five chunks, one commit
    assert stored["customer_id"].to_list() == day_features["customer_id"].to_list()  # replaced, not appended
    assert stored["top_reasons"].null_count() == 0


def test_a_crash_mid_stream_leaves_the_previous_day_whole(model, day_features, tmp_path):
    lake = Lake(root=str(tmp_path))
    _, before = _score(model, day_features, lake, **CONFIG)
    version = lake.version(TABLE)
    scorer = _scorer(model, day_features, **CONFIG | {"reasons_for": "all"})

    def crashing() -> pa.RecordBatchReader:
        stream = scorer.batches()

        def first_chunk_then_crash():
            yield stream.read_next_batch()
            raise RuntimeError("worker killed mid-day")

        return pa.RecordBatchReader.from_batches(stream.schema, first_chunk_then_crash())

    with pytest.raises(Exception, match="worker killed mid-day"):
        lake.replace_days(TABLE, crashing, DAY, DAY)
    assert lake.version(TABLE) == version
    assert lake.read_days(TABLE, DAY).sort("customer_id").equals(before)


def test_no_row_due_gets_no_reasons_and_still_writes(model, day_features, tmp_path):
    quiet = RiskBands(medium_from=1.0, high_from=1.0, review_from=1.0, review_to=1.0, rule="no row is due")
    scorer, stored = _score(model, day_features, Lake(root=str(tmp_path)), quiet)
    assert stored.height == day_features.height
    assert stored["top_reasons"].null_count() == stored["explained_because"].null_count() == stored.height
    assert scorer.highest.height == 10 and scorer.highest["top_reasons"].null_count() == 10


def test_a_table_written_before_explained_because_existed_gains_it(model, day_features, tmp_path):
    lake = Lake(root=str(tmp_path))
    older = day_features.select("customer_id", pl.lit(0.5).alias("churn_probability"), pl.lit(DAY).alias("ds"))
    lake.replace_days(TABLE, older, DAY, DAY)
    _, stored = _score(model, day_features, lake, **CONFIG)
    assert stored.height == day_features.height and stored["explained_because"].is_not_null().any()


def test_the_online_scorer_bands_as_the_batch_by_the_bands_recorded_in_the_profile(model, day_features):
    """Bands from the validation scores, recorded in the profile as training logs it, read back by both."""
    import json

    from platform_assets.ml.bands import fit_bands
    from platform_assets.ml.profiles import build_profile
    from platform_assets.serving.scorer import ServedModel

    validation = _features(np.random.default_rng(12), 2000)
    bands = fit_bands(model.predict_frame(validation))
    profile = build_profile(validation, FEATURES, model.predict_frame(validation)) | {"bands": bands.to_dict()}
    profile = json.loads(json.dumps(profile))  # as MLflow stores and returns it
    batch = _scorer(model, day_features, bands_of(profile)).scores
    served = ServedModel.of("churn_model", "1", "run", model, profile)
    for reasons in (0, 3):  # with reasons the online probability comes from the SHAP sum
        online = served.score(served.encode(day_features), reasons)
        assert online.risk_band == batch["risk_band"].to_list()
        assert online.needs_review == batch["needs_review"].to_list()
    shares = batch["risk_band"].value_counts(normalize=True).sort("risk_band")
    assert dict(shares.iter_rows()) == pytest.approx({"high": 0.05, "medium": 0.15, "low": 0.8}, abs=0.03)
