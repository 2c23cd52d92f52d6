"""The uplift model as MLflow serves it: one LightGBM booster on the churn score, the features and contact.

Logged as an MLflow "model from code" (like the churn model), so a version loads with
the code it was trained with. An S-learner that starts from the churn model: the booster
is fitted with the churn score's log-odds as its initial score, on the features plus a
contact indicator, so it learns only how contact changes that score. It predicts the
churn reduction of contact: the churn probability without contact minus with it. The
input frame carries the features and ``churn_probability`` (the prediction of the day).
"""

import json
from pathlib import Path

import lightgbm as lgb
import mlflow
import numpy as np
import pandas as pd
import polars as pl


def encode(frame: pl.DataFrame, features: list[str], categories: dict[str, list[str]]) -> np.ndarray:
    """Floats, categories as their training codes (an unseen category is missing).

    The same as the churn model's ``encode``, copied on purpose: a model-from-code file
    imports only libraries, so a logged version never runs another version's code.
    """
    columns = [
        pl.col(name).replace_strict(categories[name], list(range(len(categories[name]))), default=None)
        if name in categories
        else pl.col(name)
        for name in features
    ]
    return frame.select([c.cast(pl.Float64) for c in columns]).to_numpy()


SCORE = "churn_probability"


def log_odds(probability: np.ndarray) -> np.ndarray:
    clipped = np.clip(probability, 1e-6, 1 - 1e-6)
    return np.log(clipped / (1 - clipped))


def with_contact(matrix: np.ndarray, contacted: float | np.ndarray) -> np.ndarray:
    return np.column_stack([matrix, np.broadcast_to(np.asarray(contacted, dtype=np.float64), matrix.shape[0])])


class UpliftModel(mlflow.pyfunc.PythonModel):
    """Predicted churn reduction of a retention contact per customer."""

    @classmethod
    def from_parts(cls, booster: lgb.Booster, features, categories) -> "UpliftModel":
        model = cls()
        model.booster, model.features, model.categories = booster, list(features), categories
        return model

    def load_context(self, context) -> None:
        encoding = json.loads(Path(context.artifacts["encoding"]).read_text())
        self.features, self.categories = encoding["features"], encoding["categories"]
        self.booster = lgb.Booster(model_file=context.artifacts["booster"])

    def churn(self, frame: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Churn probability without and with contact."""
        matrix = encode(frame, self.features, self.categories)
        start = log_odds(frame[SCORE].to_numpy())
        out = []
        for contacted in (0.0, 1.0):
            raw = start + self.booster.predict(with_contact(matrix, contacted), raw_score=True)
            out.append(1.0 / (1.0 + np.exp(-raw)))
        return out[0], out[1]

    def predict_frame(self, frame: pl.DataFrame) -> np.ndarray:
        without, with_offer = self.churn(frame)
        return without - with_offer

    def predict(self, context, model_input: pd.DataFrame, params=None) -> np.ndarray:
        return self.predict_frame(pl.from_pandas(model_input))


mlflow.models.set_model(UpliftModel())
