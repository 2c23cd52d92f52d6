"""The uplift model as MLflow serves it: a T-learner of two LightGBM boosters and their input encoding.

Logged as an MLflow "model from code" (like the churn model), so a version loads with
the code it was trained with. It predicts the churn reduction of contact: the churn
probability without contact (the holdout's booster) minus with it (the contacted one's).
"""

import json
from pathlib import Path

import lightgbm as lgb
import mlflow
import numpy as np
import pandas as pd
import polars as pl


def encode(frame: pl.DataFrame, features: list[str], categories: dict[str, list[str]]) -> np.ndarray:
    """Floats, categories as their training codes (an unseen category is missing)."""
    columns = [
        pl.col(name).replace_strict(categories[name], list(range(len(categories[name]))), default=None)
        if name in categories
        else pl.col(name)
        for name in features
    ]
    return frame.select([c.cast(pl.Float64) for c in columns]).to_numpy()


class UpliftModel(mlflow.pyfunc.PythonModel):
    """Predicted churn reduction of a retention contact per customer."""

    @classmethod
    def from_parts(cls, contact: lgb.Booster, holdout: lgb.Booster, features, categories) -> "UpliftModel":
        model = cls()
        model.contact, model.holdout = contact, holdout
        model.features, model.categories = list(features), categories
        return model

    def load_context(self, context) -> None:
        encoding = json.loads(Path(context.artifacts["encoding"]).read_text())
        self.features, self.categories = encoding["features"], encoding["categories"]
        self.contact = lgb.Booster(model_file=context.artifacts["contact"])
        self.holdout = lgb.Booster(model_file=context.artifacts["holdout"])

    def churn(self, frame: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Churn probability without and with contact."""
        matrix = encode(frame, self.features, self.categories)
        return self.holdout.predict(matrix), self.contact.predict(matrix)

    def predict_frame(self, frame: pl.DataFrame) -> np.ndarray:
        without, with_contact = self.churn(frame)
        return without - with_contact

    def predict(self, context, model_input: pd.DataFrame, params=None) -> np.ndarray:
        return self.predict_frame(pl.from_pandas(model_input))


mlflow.models.set_model(UpliftModel())
