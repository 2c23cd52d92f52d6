"""The churn model as MLflow serves it: a LightGBM booster and the encoding of its inputs.

Logged as an MLflow "model from code": this file is stored with every model version,
so a version loads and scores with the code it was trained with, in any process that
has the pinned packages, without importing the platform. It imports only libraries.
"""

import json
from pathlib import Path

import lightgbm as lgb
import mlflow
import numpy as np
import pandas as pd
import polars as pl


def encode(frame: pl.DataFrame, features: list[str], categories: dict[str, list[str]]) -> np.ndarray:
    """The feature matrix LightGBM expects: floats, categories as their training codes.

    A category never seen in training becomes missing, which LightGBM routes like
    other missing values instead of mistaking it for a known category.
    """
    columns = [
        pl.col(name).replace_strict(categories[name], list(range(len(categories[name]))), default=None)
        if name in categories
        else pl.col(name)
        for name in features
    ]
    return frame.select([c.cast(pl.Float64) for c in columns]).to_numpy()


class ChurnModel(mlflow.pyfunc.PythonModel):
    """Scores customer features; also explains scores with SHAP contributions."""

    @classmethod
    def from_parts(cls, booster: lgb.Booster, features: list[str], categories: dict[str, list[str]]) -> "ChurnModel":
        """The model straight after training, scoring with exactly the code MLflow will serve."""
        model = cls()
        model.booster, model.features, model.categories = booster, list(features), categories
        return model

    def load_context(self, context) -> None:
        encoding = json.loads(Path(context.artifacts["encoding"]).read_text())
        self.features: list[str] = encoding["features"]
        self.categories: dict[str, list[str]] = encoding["categories"]
        self.booster = lgb.Booster(model_file=context.artifacts["booster"])

    def matrix(self, frame: pl.DataFrame) -> np.ndarray:
        return encode(frame, self.features, self.categories)

    def predict_frame(self, frame: pl.DataFrame) -> np.ndarray:
        """Churn probabilities for a polars frame (the platform's fast path)."""
        return self.booster.predict(self.matrix(frame))

    def raw_scores(self, frame: pl.DataFrame) -> np.ndarray:
        """Log-odds, the space in which SHAP contributions add up."""
        return self.booster.predict(self.matrix(frame), raw_score=True)

    def contributions(self, frame: pl.DataFrame) -> np.ndarray:
        """SHAP contributions per feature, with the expected value as the last column."""
        return self.booster.predict(self.matrix(frame), pred_contrib=True)

    def predict(self, context, model_input: pd.DataFrame, params=None) -> np.ndarray:
        return self.predict_frame(pl.from_pandas(model_input))


mlflow.models.set_model(ChurnModel())
