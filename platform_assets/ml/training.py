"""Training a churn model on any labelled dbt model, split by time."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta

import lightgbm as lgb
import numpy as np
import polars as pl

from platform_assets.ml.feature_spec import FeatureSpec
from platform_assets.ml.pyfunc_model import ChurnModel, encode

SCORE = "churn_probability"  # also platform_assets.model_assets.SCORE, kept light to import


@dataclass(frozen=True)
class TimeSplit:
    """Snapshot days to learn from and, later, to validate on.

    Labels look forward ``horizon_days``, so a training snapshot whose label window
    reaches into the validation period would leak the outcome (the same customer
    churning is a positive in both). Training keeps only snapshots at least the
    horizon before the first validation day.
    """

    train: list[date]
    validation: list[date]
    horizon_days: int

    @classmethod
    def latest(cls, snapshots: list[date], validation: int, horizon_days: int) -> TimeSplit:
        days = sorted(set(snapshots))
        held_out = days[-validation:] if validation else []
        cutoff = held_out[0] - timedelta(days=horizon_days) if held_out else days[-1]
        train = [d for d in days if d <= cutoff]
        if not held_out or not train:
            raise ValueError(
                f"cannot split {len(days)} snapshot days ({days[0] if days else None}..{days[-1] if days else None}) "
                f"into training and {validation} validation days at least {horizon_days} days apart: "
                "load more history or lower validation_snapshots"
            )
        return cls(train=train, validation=held_out, horizon_days=horizon_days)


@dataclass
class TrainedModel:
    model: ChurnModel
    split: TimeSplit
    validation: pl.DataFrame  # validation rows with the label and the score
    params: dict = field(default_factory=dict)

    @property
    def best_iteration(self) -> int:
        return self.model.booster.best_iteration or self.model.booster.current_iteration()

    def importance(self) -> pl.DataFrame:
        gain = self.model.booster.feature_importance(importance_type="gain")
        return pl.DataFrame({"feature": self.model.features, "gain": gain}).sort("gain", descending=True)


def categories_of(frame: pl.DataFrame, features: tuple[str, ...]) -> dict[str, list[str]]:
    """The known values of each string feature, in a stable order."""
    return {
        name: sorted(frame[name].drop_nulls().unique().to_list()) for name in features if frame[name].dtype == pl.String
    }


def train(
    frame: pl.DataFrame,
    spec: FeatureSpec,
    params: dict,
    *,
    max_rounds: int = 1000,
    early_stopping_rounds: int = 50,
    validation_snapshots: int = 2,
    early_stopping_share: float = 0.15,
    log: Callable[[str], None] | None = None,
) -> TrainedModel:
    """Fit LightGBM on earlier snapshots and validate on the latest ones, never at random.

    The model scores days after those it learned from, so validation is later than
    training. Early stopping watches a share of customers held out of the training
    days (by a hash of the entity key), so it measures unseen customers, not the
    same customers a week later.
    """
    missing = [c for c in (*spec.features, spec.label, spec.snapshot) if c not in frame.columns]
    if missing:
        raise ValueError(f"the training data lacks declared columns {missing} ({spec.training_relation})")
    # Warehouse row order varies between queries; LightGBM's bins and trees depend on it.
    frame = frame.sort(spec.snapshot, spec.entity)
    split = TimeSplit.latest(frame[spec.snapshot].to_list(), validation_snapshots, spec.label_horizon_days)
    learn = frame.filter(pl.col(spec.snapshot).is_in(split.train))
    held = (pl.col(spec.entity).hash(seed=17) % 10_000) < int(early_stopping_share * 10_000)
    parts = {
        "train": learn.filter(~held),
        "stop": learn.filter(held),
        "valid": frame.filter(pl.col(spec.snapshot).is_in(split.validation)),
    }
    categories = categories_of(parts["train"], spec.features)
    features = list(spec.features)
    fit = lgb.Dataset(
        encode(parts["train"], features, categories),
        label=labels(parts["train"], spec),
        feature_name=features,
        categorical_feature=list(categories),
    )
    # The early-stopping set must share the training set's bins (reference=fit).
    stop = lgb.Dataset(encode(parts["stop"], features, categories), label=labels(parts["stop"], spec), reference=fit)
    params = {"objective": "binary", "metric": "binary_logloss", "verbosity": -1, **params}
    booster = lgb.train(
        params,
        fit,
        num_boost_round=max_rounds,
        valid_sets=[stop],
        valid_names=["early_stopping"],
        callbacks=[lgb.early_stopping(early_stopping_rounds, verbose=False), *([_progress(log)] if log else [])],
    )
    model = ChurnModel.from_parts(booster, features, categories)
    validation = parts["valid"].with_columns(pl.Series(SCORE, model.predict_frame(parts["valid"])))
    return TrainedModel(model=model, split=split, validation=validation, params=params)


def _progress(log: Callable[[str], None], every: int = 25):
    """A LightGBM callback reporting the early-stopping loss every few rounds."""

    def report(env) -> None:
        if env.iteration % every == 0 and env.evaluation_result_list:
            _, metric, value, _ = env.evaluation_result_list[0]
            log(f"boosting round {env.iteration}: held-out {metric} {value:.5f}")

    return report


def labels(frame: pl.DataFrame, spec: FeatureSpec) -> np.ndarray:
    return frame[spec.label].cast(pl.Int64).to_numpy()
