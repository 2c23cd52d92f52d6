"""Training a churn model on any labelled dbt model, split by time."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from platform_assets.ml.feature_spec import SPLIT_VALUES, FeatureSpec

if TYPE_CHECKING:
    from platform_assets.ml.pyfunc_model import ChurnModel

SCORE = "churn_probability"  # also platform_assets.defs.ml.assets.SCORE, kept light to import


class SplitRefused(ValueError):
    """The data cannot give an honest validation figure; the message says why and which dates."""


@dataclass(frozen=True)
class TimeSplit:
    """Which rows the model learns from and which validate it, recorded with the model version.

    ``time`` (the default): the latest snapshot days validate. Labels look forward
    ``horizon_days``, so a training snapshot whose label window reaches into the
    validation period would leak the outcome (the same customer churning is a positive
    in both); training keeps only snapshots at least the horizon before the first
    validation day. ``column``: a dataset without a time dimension declares a
    ``split`` column (``train``/``validation``), and no entity may be on both sides.
    """

    train: list[date]
    validation: list[date]
    horizon_days: int
    kind: str = "time"
    column: str | None = None

    @classmethod
    def latest(cls, snapshots: list[date], validation: int, horizon_days: int) -> TimeSplit:
        days = sorted(set(snapshots))
        span = f"{len(days)} snapshot days ({days[0]}..{days[-1]})" if days else "no snapshot days"
        advice = (
            "load more history, lower validation_snapshots, or declare a split column (config.meta.role: split "
            "with values train/validation)"
        )
        if validation < 1 or len(days) <= validation:
            raise SplitRefused(
                f"history too short for a time split: {span} cannot give {validation} validation days and "
                f"training days {horizon_days} days before them; {advice}"
            )
        held_out = days[-validation:]
        train = [d for d in days if d + timedelta(days=horizon_days) <= held_out[0] and d < held_out[0]]
        if not train:
            raise SplitRefused(
                f"no training snapshot lies at least {horizon_days} days (the label horizon) before the first "
                f"validation day {held_out[0]}: {span}, validation {held_out[0]}..{held_out[-1]}; {advice}"
            )
        return cls(train=train, validation=held_out, horizon_days=horizon_days)

    @classmethod
    def by_column(cls, frame: pl.DataFrame, spec: FeatureSpec) -> TimeSplit:
        """The split a dataset declares in its ``split`` column, refused if a value or an entity is ambiguous."""
        column = spec.split
        values = frame[column].cast(pl.String)
        unknown = sorted(set(values.unique().to_list()) - set(SPLIT_VALUES), key=str)
        if unknown:
            raise SplitRefused(
                f"{spec.training_relation}.{column}: values {unknown} are neither of {list(SPLIT_VALUES)}"
            )
        parts = {v: frame.filter(values == v) for v in SPLIT_VALUES}
        for value, part in parts.items():
            if part.is_empty():
                raise SplitRefused(f"{spec.training_relation}.{column} has no {value!r} rows")
        shared = parts["train"].join(parts["validation"], on=spec.entity, how="semi")[spec.entity].unique()
        if shared.len():
            raise SplitRefused(
                f"{spec.training_relation}.{column}: {shared.len()} entities are in both train and validation "
                f"(e.g. {spec.entity} {shared.sort().head(3).to_list()}), so validation would score customers "
                "the model learned; split by entity (e.g. a hash of the key)"
            )
        days = {v: sorted(part[spec.snapshot].unique().to_list()) for v, part in parts.items()}
        return cls(days["train"], days["validation"], spec.label_horizon_days, kind="column", column=column)

    def is_validation(self, spec: FeatureSpec) -> pl.Expr:
        if self.kind == "column":
            return pl.col(self.column).cast(pl.String) == "validation"
        return pl.col(spec.snapshot).is_in(self.validation)

    def is_train(self, spec: FeatureSpec) -> pl.Expr:
        if self.kind == "column":
            return pl.col(self.column).cast(pl.String) == "train"
        return pl.col(spec.snapshot).is_in(self.train)

    def trained_on(self, snapshot: str, columns: list[str]) -> pl.Expr:
        """Rows whose outcome this model may have learned.

        Time split: a label says what happened in the ``horizon_days`` after its snapshot,
        the window (s, s + horizon]. A row of snapshot s overlaps training when its window
        overlaps a training row's window (t, t + horizon], that is when t - horizon < s <
        t + horizon for some training snapshot t: an outcome in the shared days (a customer
        who left then) was a training label, and the model fit it. So after training, a
        row is unseen from the last training snapshot plus the horizon on (the day its last
        training label was known), and the time split's validation days start there too;
        a snapshot 84 days after the last training one overlaps it under a 90-day horizon.
        Only the days are compared, not the entities: a time split trains on every entity.
        Column split: the declared ``train`` rows, on any snapshot (their entities are the
        ones the model learned); every row when the column is missing.
        """
        if self.kind == "column":
            if self.column not in columns:
                return pl.lit(True)  # cannot tell which rows trained it: count them all
            return pl.col(self.column).cast(pl.String) == "train"
        day = pl.col(snapshot)
        return pl.any_horizontal(
            [(day > first) & (day < last) for first, last in self.overlapping_windows()] or [pl.lit(False)]
        )

    def overlapping_windows(self) -> list[tuple[date, date]]:
        """The open intervals of snapshot days whose label window overlaps a training label window (time split),
        merged: (first training day - horizon, last training day + horizon) when training days are closer than
        twice the horizon, as a time split's are."""
        reach = timedelta(days=self.horizon_days)
        merged: list[tuple[date, date]] = []
        for day in sorted(self.train):
            if merged and day - reach < merged[-1][1]:
                merged[-1] = (merged[-1][0], day + reach)
            else:
                merged.append((day - reach, day + reach))
        return merged

    def overlap_reason(self, snapshot: date, version: str) -> str:
        """Why rows of ``snapshot`` count as trained on, in words that are true for this split."""
        if self.kind == "column":
            if snapshot in self.train:
                return f"v{version} trained on them ({self.column} = train)"
            return (
                f"their entities are the ones v{version} trained on ({self.column} = train), here on snapshot "
                f"{snapshot}; only its validation entities are judged"
            )
        if snapshot in self.train:
            return f"v{version} trained on snapshot {snapshot}"
        h = self.horizon_days
        first, last = min(self.train), max(self.train)
        if snapshot > last:
            return (
                f"their snapshot {snapshot} is within {h} days of v{version}'s last training snapshot {last} "
                f"({(snapshot - last).days} days after it), so their labels overlap what it learned "
                f"(unseen from {last + timedelta(days=h)})"
            )
        if snapshot < first:
            return (
                f"their snapshot {snapshot} is within {h} days of v{version}'s first training snapshot {first} "
                f"({(first - snapshot).days} days before it), so their labels overlap what it learned"
            )
        return (
            f"their snapshot {snapshot} lies among v{version}'s training snapshots ({first}..{last}), within {h} "
            "days of one, so their labels overlap what it learned"
        )

    def unseen_rows(self, snapshot: date, version: str) -> str:
        """What the rows of ``snapshot`` this model did not train on are, for the report: new rows, or its
        validation set again."""
        if self.kind == "column":
            if snapshot in self.validation:
                return (
                    f"v{version}'s validation rows ({self.column} = validation on snapshot {snapshot}): this is its "
                    "validation set again"
                )
            return (
                f"v{version}'s validation entities ({self.column} = validation) on snapshot {snapshot}, which it "
                "neither trained nor validated on: entities it never learned, who are also its validation set"
            )
        if snapshot in self.validation:
            return f"v{version}'s validation rows (snapshot {snapshot} validated it): this is its validation set again"
        last = max(self.train)
        if snapshot > last:
            return (
                f"unseen by v{version}: snapshot {snapshot} is {(snapshot - last).days} days after its last training "
                f"snapshot {last} (at least the {self.horizon_days}-day horizon), not one of its validation days"
            )
        if snapshot < min(self.train):
            return (
                f"unseen by v{version}: snapshot {snapshot} is at least the {self.horizon_days}-day horizon before "
                f"its first training snapshot {min(self.train)}"
            )
        return (
            f"unseen by v{version}: snapshot {snapshot} is at least the {self.horizon_days}-day horizon away from "
            "each of its training snapshots"
        )

    def describe(self) -> str:
        def days(d: list[date]) -> str:
            return f"{d[0]}..{d[-1]} ({len(d)} snapshot days)" if len(d) > 2 else ", ".join(map(str, d))

        if self.kind == "column":
            return (
                f"declared split column `{self.column}`: trained on its train rows (snapshots {days(self.train)}), "
                f"validated on its validation rows (snapshots {days(self.validation)}), no entity in both"
            )
        return (
            f"time split: trained on {days(self.train)}, validated on {days(self.validation)}; "
            f"labels look {self.horizon_days} days ahead, so the last training label ends by the first validation day"
        )

    def to_json(self) -> str:
        return json.dumps(
            {
                "kind": self.kind,
                "column": self.column,
                "horizon_days": self.horizon_days,
                "train": [str(d) for d in self.train],
                "validation": [str(d) for d in self.validation],
            }
        )

    @classmethod
    def from_json(cls, text: str) -> TimeSplit:
        state = json.loads(text)
        return cls(
            train=[date.fromisoformat(d) for d in state["train"]],
            validation=[date.fromisoformat(d) for d in state["validation"]],
            horizon_days=state["horizon_days"],
            kind=state["kind"],
            column=state["column"],
        )


def split_rows(frame: pl.DataFrame, spec: FeatureSpec, validation_snapshots: int) -> TimeSplit:
    """The declared split, else the time split, refused unless both sides have churners and non-churners."""
    if spec.split:
        split = TimeSplit.by_column(frame, spec)
    else:
        split = TimeSplit.latest(frame[spec.snapshot].to_list(), validation_snapshots, spec.label_horizon_days)
    for side, rows in (("training", split.is_train(spec)), ("validation", split.is_validation(spec))):
        counts = frame.filter(rows).select(
            pl.len().alias("rows"), pl.col(spec.label).cast(pl.Int64).sum().alias("positives")
        )
        total, positives = counts.row(0)
        if positives in (0, total):
            missing = "positive" if positives == 0 else "negative"
            raise SplitRefused(
                f"the {side} rows have no {missing} label ({total} rows, {positives} positive in "
                f"{spec.training_relation}.{spec.label}): {split.describe()}"
            )
    return split


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


def categories_of(frame: pl.DataFrame, features: Iterable[str]) -> dict[str, list[str]]:
    """The known values of each string feature, in a stable order (the churn and the uplift model encode by them)."""
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
    """Fit LightGBM on earlier snapshots and validate on the latest ones (or on the declared split).

    The model scores days after those it learned from, so validation is later than
    training; a split that cannot be honest is refused (``SplitRefused``). Early stopping watches a share of customers held out of the training
    days (by a hash of the entity key), so it measures unseen customers, not the
    same customers a week later.
    """
    declared = (*spec.features, spec.label, spec.snapshot, *([spec.split] if spec.split else []))
    missing = [c for c in declared if c not in frame.columns]
    if missing:
        raise ValueError(f"the training data lacks declared columns {missing} ({spec.training_relation})")
    # LightGBM and MLflow (the model's own code) load here, not with the definitions every process imports.
    import lightgbm as lgb

    from platform_assets.ml.pyfunc_model import ChurnModel, encode

    # Warehouse row order varies between queries; LightGBM's bins and trees depend on it.
    frame = frame.sort(spec.snapshot, spec.entity)
    split = split_rows(frame, spec, validation_snapshots)
    parts = learning_parts(frame, spec, split, early_stopping_share)
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


def learning_parts(frame: pl.DataFrame, spec: FeatureSpec, split: TimeSplit, early_stopping_share: float) -> dict:
    """The rows boosting fits (``train``), watches to stop early (``stop``: a share of the training
    days' customers, by a hash of the key) and validates on (``valid``), of a frame sorted as ``train`` sorts it."""
    learn = frame.filter(split.is_train(spec))
    held = (pl.col(spec.entity).hash(seed=17) % 10_000) < int(early_stopping_share * 10_000)
    return {"train": learn.filter(~held), "stop": learn.filter(held), "valid": frame.filter(split.is_validation(spec))}


def _progress(log: Callable[[str], None], every: int = 25):
    """A LightGBM callback reporting the early-stopping loss every few rounds."""

    def report(env) -> None:
        if env.iteration % every == 0 and env.evaluation_result_list:
            _, metric, value, _ = env.evaluation_result_list[0]
            log(f"boosting round {env.iteration}: held-out {metric} {value:.5f}")

    return report


def labels(frame: pl.DataFrame, spec: FeatureSpec) -> np.ndarray:
    return frame[spec.label].cast(pl.Int64).to_numpy()
