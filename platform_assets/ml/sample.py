"""A bounded, stratified sample of a labelled model's rows, read in the warehouse.

Training, validation and the promotion gate read at most ``max_rows`` rows
(``PLATFORM_TRAINING_MAX_ROWS``), so their time and memory stay bounded as the
history and the customer base grow. Above the bound every stratum (snapshot day and
label, and the declared split side) keeps the same share of its rows, so the days, the
positive rate and the split's sides are those of the whole; within a stratum the rows
kept are those with the lowest hash of the entity key, so a customer is in or out on
every day and the same data gives the same sample. DuckDB ranks and filters the rows:
only the sample reaches Python.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from platform_assets.ml.feature_spec import FeatureSpec
from resources.warehouse import Warehouse


@dataclass(frozen=True)
class Sample:
    """What a sample kept of its relation: recorded with the model version and in its card."""

    relation: str
    rows: int
    of: int
    strata: tuple[str, ...]
    max_rows: int

    @property
    def share(self) -> float:
        return self.rows / self.of if self.of else 1.0

    @property
    def whole(self) -> bool:
        return self.rows == self.of

    def describe(self) -> str:
        if self.whole:
            return f"all {self.of} rows of `{self.relation}` (within the bound of {self.max_rows})"
        return (
            f"{self.rows} of the {self.of} rows of `{self.relation}` ({self.share:.1%}, bound {self.max_rows}): "
            f"the same share of every {' x '.join(self.strata)} stratum, the entities with the lowest key hash"
        )

    def as_params(self) -> dict[str, int | float]:
        return {"sample_rows": self.rows, "sample_of_rows": self.of, "sample_share": round(self.share, 6)}


def read_sample(
    warehouse: Warehouse, spec: FeatureSpec, max_rows: int, where: str = "", params: list | None = None
) -> tuple[pl.DataFrame, Sample]:
    """The rows of the training relation (``where`` narrows them), or past ``max_rows`` a stratified sample."""
    relation = spec.training_relation
    condition = f"where {where}" if where else ""
    total = int(warehouse.query(f"select count(*) as n from {relation} {condition}", params).item())
    strata = tuple(dict.fromkeys([spec.snapshot, spec.label, *([spec.split] if spec.split else [])]))
    if total <= max_rows:
        frame = warehouse.query(f"select * from {relation} {condition}", params)
        return frame, Sample(relation, frame.height, total, strata, max_rows)
    share = max_rows / total
    stratum = ", ".join(f'"{c}"' for c in strata)
    entity = f'"{spec.entity}"'
    frame = warehouse.query(
        f"select * exclude (sample_rank, stratum_rows) from ("
        f"select *, row_number() over (partition by {stratum} order by hash({entity}), {entity}) as sample_rank, "
        f"count(*) over (partition by {stratum}) as stratum_rows from {relation} {condition}"
        f") where sample_rank <= ceil(stratum_rows * {share!r})",
        params,
    )
    return frame, Sample(relation, frame.height, total, strata, max_rows)
