"""The lake's tables: every Delta table the platform writes, by its path under the lake root, with
its documented columns.

One home for them, so a module that reads a table never imports the module that writes
it only to learn where it is or what it holds. A ``Table`` is its path (the string
itself, so every ``Lake`` call takes it as it is) plus its columns, declared once in
``tables.yml`` beside this module (read on first use), from which its polars schema,
its empty frame and the catalog's column table are derived. A declared dataset other
than the platform's own keeps its ML and monitoring tables under its model name
(``Dataset.lake_table``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from functools import cache
from pathlib import Path

import dagster as dg
import polars as pl
import yaml

from resources.lake import Lake

REASONS = pl.List(pl.Struct({"feature": pl.String, "contribution": pl.Float64}))
TYPES = {
    "String": pl.String,
    "Int64": pl.Int64,
    "Float64": pl.Float64,
    "Boolean": pl.Boolean,
    "Date": pl.Date,
    "Datetime": pl.Datetime("us", "UTC"),
    "Reasons": REASONS,
}


@cache
def _declared() -> dict[str, dict[str, tuple[pl.DataType, str]]]:
    """``tables.yml``: each table's columns in stored order, ``name: (polars dtype, description)``."""
    text = Path(__file__).with_name("tables.yml").read_text()
    return {
        path: {name: (TYPES[kind], doc) for name, (kind, doc) in columns.items()}
        for path, columns in yaml.safe_load(text).items()
    }


class Table(str):
    """A lake table: its path, and the columns it stores in order (none declared for a table whose
    columns follow a dataset's model, like the online features)."""

    declared_as: str

    def __new__(cls, path: str, declared_as: str | None = None) -> Table:
        table = super().__new__(cls, path)
        table.declared_as = declared_as or path
        return table

    def under(self, prefix: tuple[str, ...]) -> Table:
        """The same table kept under ``prefix`` (another dataset's), with the same declared columns."""
        return Table("/".join([*prefix, str(self)]), self.declared_as) if prefix else self

    @property
    def columns(self) -> dict[str, tuple[pl.DataType, str]]:
        return _declared().get(self.declared_as, {})

    @property
    def schema(self) -> dict[str, pl.DataType]:
        return {name: dtype for name, (dtype, _) in self.columns.items()}

    def empty(self) -> pl.DataFrame:
        return pl.DataFrame(schema=self.schema)

    def conform(self, frame: pl.DataFrame) -> pl.DataFrame:
        """``frame`` with exactly this table's columns, in order and cast to their types."""
        return frame.select([pl.col(name).cast(dtype) for name, dtype in self.schema.items()])

    def catalog(self, extra: Mapping[str, tuple[object, str]] | None = None) -> dg.TableSchema:
        """The catalog's column table (``extra`` columns first: a dataset's key columns)."""
        columns = {**(extra or {}), **self.columns}
        return dg.TableSchema(
            columns=[dg.TableColumn(name=n, type=str(t), description=text) for n, (t, text) in columns.items()]
        )


QUARANTINE = Table("quarantine")
PREDICTIONS = Table("predictions/churn_predictions")
FEATURE_DRIFT = Table("monitoring/feature_drift")
PREDICTION_DRIFT = Table("monitoring/prediction_drift")
MODEL_PERFORMANCE = Table("monitoring/model_performance")
BUSINESS_IMPACT = Table("monitoring/business_impact")
ONLINE_FEATURES = Table("serving/online_features")
SERVING_REQUESTS = Table("serving/requests")
ONLINE_DRIFT = Table("serving/online_feature_drift")
CAMPAIGN_LOG = Table("decisions/campaign_log")
CAMPAIGN_IMPACT = Table("decisions/campaign_impact")
REVIEW_DECISIONS = Table("decisions/review_decisions")
REVIEW_QUEUE = Table("decisions/review_queue")
REVIEW_REPORT = Table("decisions/review_report")
DASHBOARD = Table("decisions/business_dashboard")


def raw_table(table: str) -> str:
    """Where a raw table's contract-checked rows live (``raw_sessions`` in ``raw/sessions``)."""
    return f"raw/{table}"


def scored_day(lake: Lake, table: str, day: date) -> pl.DataFrame:
    """The day's predictions in ``table``; whatever reads them cannot go on without them."""
    predictions = lake.read_days(table, day) if lake.exists(table) else pl.DataFrame()
    if predictions.is_empty():
        raise dg.Failure(f"No predictions for {day}: materialize churn_predictions for it first")
    return predictions
