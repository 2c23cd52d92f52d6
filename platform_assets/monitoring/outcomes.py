"""Which predictions a day's performance judges: those whose label has matured, minus what must not be judged.

On day D, the predictions judged are those of the latest snapshot at or before
D - horizon (the label's ``horizon_days``), whatever the snapshot cadence, against the
outcome the dataset's declared outcome model holds for that snapshot. Rows the scoring
version may have learned (from the split recorded on its MLflow run) are left out, as
are rows a decision treated when the outcome model declares them
(``platform_assets.defs.monitoring.performance`` says more).
"""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING

import polars as pl

from platform_assets.ml.feature_spec import Dataset, FeatureSpec, LabelledModel
from platform_assets.tables import PREDICTIONS
from resources.lake import Lake
from resources.model_registry import ModelRegistry
from resources.warehouse import Warehouse

if TYPE_CHECKING:
    from platform_assets.ml.training import TimeSplit

OUTCOME = "churned"


@dataclass(frozen=True)
class Matured:
    """The matured predictions of one day to judge, and what was left out of them.

    ``note`` says what was left out or missing (empty when nothing was); ``treated_left_out``
    counts the matured rows left out because a decision treated them, ``treatment`` says
    what the outcome model declares about treated rows and what became of them;
    ``evaluated`` says what the judged rows are to the scoring version (unseen rows, or
    its validation set again).
    """

    scored_on: date
    rows: pl.DataFrame
    note: str
    treatment: str
    treated_left_out: int = 0
    evaluated: str = "nothing"

    def metadata(self) -> dict:
        """What was judged and what was left out, for a report's metadata."""
        return {
            "evaluated_predictions_of": self.scored_on.isoformat(),
            "evaluated_rows": self.evaluated,
            "treated_left_out": self.treated_left_out,
            "treated_rows": self.treatment,
        }


def snapshot_to_judge(day: date, horizon_days: int, scored: Iterable[date]) -> date | None:
    """The latest scored snapshot whose outcome has matured by ``day``: at or before ``day`` - horizon.

    Not exactly ``day`` - horizon: snapshots need not be daily (weekly snapshots never
    fall 90 days apart), and a snapshot earlier than that has matured as well.
    """
    due = day - timedelta(days=horizon_days)
    return max((d for d in scored if d <= due), default=None)


def _treatment(outcome: LabelledModel) -> str:
    """What the outcome model declares about treated rows, and what monitoring does with them."""
    if outcome.treated is None:
        return f"not declared: {outcome.name} has no treated column, every matured row is judged"
    if outcome.excludes_treated:
        return (
            f"left out ({outcome.name}.{outcome.treated}, treated_labels: exclude): a decision acted within their "
            "label horizon, so their outcome may be its doing; the holdout arm stays in"
        )
    return f"judged with the rest ({outcome.name}.{outcome.treated}, treated_labels: keep)"


def matured(
    lake: Lake, warehouse: Warehouse, registry: ModelRegistry, dataset: Dataset, spec: FeatureSpec, day: date
) -> Matured:
    """The predictions of the latest scored snapshot at least a label horizon before ``day`` with their outcome
    (column ``churned``), minus the rows a decision treated (unless the dataset keeps them) and the rows the
    scoring version may have learned."""
    from platform_assets.ml.training import TimeSplit

    outcome = spec.outcome
    due = day - timedelta(days=outcome.horizon_days)
    treatment = _treatment(outcome)
    table = dataset.lake_table(PREDICTIONS)
    scored_on = snapshot_to_judge(day, outcome.horizon_days, lake.days(table, due) if lake.exists(table) else ())
    if scored_on is None:
        note = f"no predictions at or before {due} ({outcome.horizon_days} days, the label horizon, before {day})"
        return Matured(due, pl.DataFrame(), note, treatment)
    predictions = lake.read_days(table, scored_on)
    keep = [c for c in (outcome.split, outcome.treated) if c]
    outcomes = warehouse.query(
        f"select {', '.join([outcome.entity, outcome.label, *keep])} from {outcome.relation} "
        f"where {outcome.snapshot} = ?",
        [scored_on],
    ).rename({outcome.entity: spec.entity, outcome.label: OUTCOME})
    joined = predictions.join(outcomes, on=spec.entity, how="inner")
    if joined.is_empty():
        return Matured(
            scored_on,
            joined,
            (
                f"no matured outcome for the {predictions.height} predictions of {scored_on} in {outcome.name} "
                f"(its label matures {outcome.horizon_days} days later)"
            ),
            treatment,
        )
    notes, treated = [], 0
    if outcome.excludes_treated:
        untreated = joined.filter(~pl.col(outcome.treated).fill_null(False))
        treated = joined.height - untreated.height
        if treated:
            notes.append(
                f"{treated} of {joined.height} matured rows left out: treated ({outcome.name}.{outcome.treated})"
            )
        if untreated.is_empty():
            return Matured(scored_on, untreated, "; ".join(notes), treatment, treated)
        joined = untreated
    version = registry.by_number(joined["model_version"][0])
    recorded = registry.split(version.run_id)
    if recorded is None:
        note = f"v{version.version} recorded no split: its training rows are unknown"
        return Matured(scored_on, joined.clear(), note, treatment, treated)
    split = TimeSplit.from_json(recorded)
    rows, left_out, evaluated = unseen(joined, split, version.version, scored_on, spec.snapshot, outcome.name)
    notes += [left_out] if left_out else []
    rows = rows.with_columns(pl.col(OUTCOME).cast(pl.Boolean))
    return Matured(scored_on, rows, "; ".join(notes), treatment, treated, evaluated)


def unseen(
    rows: pl.DataFrame, split: "TimeSplit", version: str, scored_on: date, snapshot: str, source: str
) -> tuple[pl.DataFrame, str, str]:
    """The rows of snapshot ``scored_on`` (column ``snapshot``) that ``split``'s model did not learn
    (``TimeSplit.trained_on``), why the others were left out (empty when none were), and what the kept rows are
    to the model (for the report); ``source`` names the model the rows' split column was read from."""
    if split.kind == "column" and split.column not in rows.columns:
        reason = (
            f"{rows.height} of {rows.height} matured rows left out: {source} has no split column `{split.column}`, "
            f"so v{version}'s training entities cannot be told apart"
        )
        return rows.clear(), reason, "nothing"
    kept = rows.filter(~split.trained_on(snapshot, rows.columns))
    left_out = rows.height - kept.height
    reason = f"{left_out} of {rows.height} matured rows left out: {split.overlap_reason(scored_on, version)}"
    return kept, reason if left_out else "", split.unseen_rows(scored_on, version) if kept.height else "nothing"
