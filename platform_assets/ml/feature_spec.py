"""What the model learns from, discovered from the dbt manifest rather than listed in Python.

A column's role is declared in its model's YAML (``config.meta.role``): ``entity``,
``snapshot``, ``feature`` or ``label``. A data engineer who documents a new feature
column in dbt changes what is trained, scored and monitored, without touching Python.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROLES = ("entity", "snapshot", "feature", "label")


@dataclass(frozen=True)
class FeatureSpec:
    """Roles of the columns of a scoring model and its labelled training model."""

    entity: str
    snapshot: str
    features: tuple[str, ...]
    label: str
    label_horizon_days: int
    training_relation: str
    scoring_relation: str
    descriptions: dict[str, str]

    def feature_frame_columns(self) -> list[str]:
        return [self.entity, self.snapshot, *self.features]


@cache
def _manifest(path: str, mtime_ns: int) -> dict:
    """The parsed manifest, read once per file version and process."""
    return json.loads(Path(path).read_text())


def load_manifest(path: Path) -> dict:
    return _manifest(str(path), path.stat().st_mtime_ns)


def _model(manifest: dict, name: str) -> dict:
    matches = [n for n in manifest["nodes"].values() if n["resource_type"] == "model" and n["name"] == name]
    if len(matches) != 1:
        raise ValueError(f"dbt model {name!r} not found in the manifest (or not unique): found {len(matches)}")
    return matches[0]


def _meta(column: dict) -> dict:
    return column.get("config", {}).get("meta") or column.get("meta") or {}


def _roles(node: dict) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {role: [] for role in ROLES}
    for name, column in node["columns"].items():
        role = _meta(column).get("role")
        if role is not None:
            if role not in ROLES:
                raise ValueError(f"{node['name']}.{name}: unknown role {role!r}; use one of {ROLES}")
            found[role].append(name)
    return found


def discover(manifest_path: Path, training_model: str, scoring_model: str) -> FeatureSpec:
    """Read the roles of both models; features are the scoring model's, the label the training model's.

    The label may declare ``horizon_days``, how far ahead it looks; training keeps
    that many days between its last snapshot and validation.

    The training model must carry every feature column of the scoring model (it may
    declare them again or select them with ``*``); that is checked on the data.
    """
    manifest = load_manifest(manifest_path)
    training, scoring = _model(manifest, training_model), _model(manifest, scoring_model)
    scoring_roles, training_roles = _roles(scoring), _roles(training)

    def one(role: str, roles: dict[str, list[str]], model: str) -> str:
        if len(roles[role]) != 1:
            raise ValueError(f"dbt model {model!r} must declare exactly one {role} column, found {roles[role]}")
        return roles[role][0]

    features = tuple(scoring_roles["feature"]) or tuple(training_roles["feature"])
    if not features:
        raise ValueError(f"dbt model {scoring_model!r} declares no feature columns (config.meta.role: feature)")
    label = one("label", training_roles, training_model)
    return FeatureSpec(
        entity=one("entity", scoring_roles, scoring_model),
        snapshot=one("snapshot", scoring_roles, scoring_model),
        features=features,
        label=label,
        label_horizon_days=int(_meta(training["columns"][label]).get("horizon_days", 0)),
        training_relation=training["relation_name"],
        scoring_relation=scoring["relation_name"],
        descriptions={
            name: column.get("description", "")
            for node in (training, scoring)
            for name, column in node["columns"].items()
        },
    )
