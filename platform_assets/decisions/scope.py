"""Where one dataset's decisions live: its lake tables, its uplift model, its export and inbox folders.

Every dataset that declares ``decisions`` in its dbt YAML gets the decision assets. The
platform's own keeps its tables at their paths and its uplift model as ``uplift_model``;
another dataset's live under its registered model name (``Dataset.lake_table`` and
``Dataset.name``), so two datasets' campaigns never share a log, a review queue or a model.
"""

from __future__ import annotations

from dataclasses import dataclass

from platform_assets.ml.feature_spec import Dataset
from platform_assets.tables import (
    CAMPAIGN_IMPACT,
    CAMPAIGN_LOG,
    DASHBOARD,
    FEATURE_DRIFT,
    MODEL_PERFORMANCE,
    PREDICTIONS,
    REVIEW_DECISIONS,
    REVIEW_QUEUE,
    REVIEW_REPORT,
    Table,
)


@dataclass(frozen=True)
class DecisionScope:
    dataset: Dataset
    campaign_log: Table
    campaign_impact: Table
    review_decisions: Table
    review_queue: Table
    review_report: Table
    dashboard: Table
    predictions: Table
    feature_drift: Table
    model_performance: Table
    uplift_model: str  # ``uplift_model``, or ``uplift_model_<registered model>``
    folder: tuple[str, ...]  # the sub-folder of contact exports and the review inbox (none for the platform's own)
    value_column: str  # the scoring model's column of a customer's monthly value

    @classmethod
    def of(cls, dataset: Dataset) -> DecisionScope:
        if dataset.value_column is None:
            raise ValueError(f"{dataset.registered_model} declares no decisions.value_column: it makes no decisions")
        table = dataset.lake_table
        return cls(
            dataset=dataset,
            campaign_log=table(CAMPAIGN_LOG),
            campaign_impact=table(CAMPAIGN_IMPACT),
            review_decisions=table(REVIEW_DECISIONS),
            review_queue=table(REVIEW_QUEUE),
            review_report=table(REVIEW_REPORT),
            dashboard=table(DASHBOARD),
            predictions=table(PREDICTIONS),
            feature_drift=table(FEATURE_DRIFT),
            model_performance=table(MODEL_PERFORMANCE),
            uplift_model=dataset.name("uplift_model"),
            folder=dataset.prefix,
            value_column=dataset.value_column,
        )
