"""The online feature store: the latest snapshot per customer, published to the lake, held in memory.

The embedded default is a Delta table the ``online_features`` asset overwrites in one
commit, so its Delta version names the snapshot. The API loads it whole: the raw
values as a polars frame (audited and validated as they are) and, per served model
version, the encoded float matrix with an id -> row dict, so a lookup is a dict get
and a row slice (microseconds). docs/production.md says how Redis or Feast replace it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import numpy as np
import polars as pl

from platform_assets.ml.feature_spec import Dataset, FeatureSpec
from platform_assets.tables import ONLINE_FEATURES, SERVING_REQUESTS


def online_table(dataset: Dataset) -> str:
    return dataset.lake_table(ONLINE_FEATURES)


def requests_table(dataset: Dataset) -> str:
    return dataset.lake_table(SERVING_REQUESTS)


def latest_snapshot_query(spec: FeatureSpec, as_of: date | None) -> tuple[str, list]:
    """SQL for each entity's latest row of the scoring model (at or before ``as_of``)."""
    columns = ", ".join(f'"{c}"' for c in [spec.entity, spec.snapshot, *spec.features])
    where, params = (f"where {spec.snapshot} <= ?", [as_of]) if as_of else ("", [])
    sql = (
        f"select {columns} from {spec.scoring_relation} {where} "
        f"qualify row_number() over (partition by {spec.entity} order by {spec.snapshot} desc) = 1 "
        f"order by {spec.entity}"
    )
    return sql, params


@dataclass(frozen=True)
class FeatureSnapshot:
    """One published snapshot in memory: raw values, ids to rows, and the audit form of each row."""

    version: int
    entity: str
    snapshot: str
    frame: pl.DataFrame
    rows: dict = field(repr=False)
    dates: list[str] = field(repr=False)
    values_json: pl.Series = field(repr=False)

    @classmethod
    def of(cls, version: int, frame: pl.DataFrame, entity: str, snapshot: str) -> FeatureSnapshot:
        ids = frame[entity].to_list()
        features = frame.drop(entity, snapshot)
        return cls(
            version=version,
            entity=entity,
            snapshot=snapshot,
            frame=frame,
            rows=dict(zip(ids, range(len(ids)), strict=True)),
            dates=frame[snapshot].cast(pl.String).to_list(),
            values_json=features.select(pl.struct(pl.all()).struct.json_encode()).to_series(),
        )

    @property
    def id_is_integer(self) -> bool:
        return self.frame.schema[self.entity].is_integer()

    def key(self, customer_id: str | int):
        """The store's key for an id as a client sends it (JSON numbers and strings both work)."""
        if self.id_is_integer:
            try:
                return int(customer_id)
            except (TypeError, ValueError):
                return None
        return str(customer_id)

    def positions(self, customer_ids: list) -> tuple[np.ndarray, list]:
        """Row positions of the ids found, and the ids not found."""
        found, missing = [], []
        for customer_id in customer_ids:  # a dict get per id: microseconds
            row = self.rows.get(self.key(customer_id))
            (missing.append(customer_id) if row is None else found.append(row))
        return np.asarray(found, dtype=np.int64), missing
