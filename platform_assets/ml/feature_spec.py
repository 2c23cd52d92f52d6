"""What the model learns from, discovered from the dbt manifest rather than listed in Python.

A column's role is declared in its model's YAML (``config.meta.role``): ``entity``,
``snapshot``, ``feature``, ``label`` (with ``horizon_days``), ``segment`` (a column
fairness is measured across), ``split`` (``train``/``validation``, for data without a
time split) or ``treated`` (on an outcome model: true where a decision, such as a
retention contact, may have changed the label; with ``treated_labels`` ``exclude`` or
``keep``); a list (``[feature, segment]``) gives a column two roles. A dataset is
declared once, on its labelled training model (``config.meta.churn_platform``): the
registered model name, the model scored every day, the model of matured outcomes, and
optionally which rows drift is measured against (``drift_reference``: ``training``, the
default, or ``validation``) and how scores are banded (``risk_bands``, see
``platform_assets.ml.bands``).
A data engineer who documents a column or a dataset in dbt changes what is trained,
scored and monitored, without touching Python.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import date
from functools import cache
from pathlib import Path

from platform_assets.ml.bands import declared_rule
from platform_assets.tables import Table

ROLES = ("entity", "snapshot", "feature", "label", "segment", "split", "treated")
TREATED_LABELS = ("exclude", "keep")
DECLARATION = "churn_platform"
DECLARED_KEYS = ("registered_model", "scoring_model", "outcome_model", "drift_reference", "risk_bands", "decisions")
DECISION_KEYS = ("value_column",)
DRIFT_REFERENCES = ("training", "validation")
DEFAULT_MODEL = "churn_model"
SPLIT_VALUES = ("train", "validation")


@dataclass(frozen=True)
class LabelledModel:
    """A dbt model whose label is known: its key columns, its label and how far ahead it looks."""

    name: str
    relation: str
    entity: str
    snapshot: str
    label: str
    horizon_days: int
    split: str | None
    treated: str | None = None
    treated_labels: str = "exclude"

    @property
    def excludes_treated(self) -> bool:
        """Whether rows its ``treated`` column flags are left out of what is judged (``treated_labels: exclude``)."""
        return self.treated is not None and self.treated_labels == "exclude"


@dataclass(frozen=True)
class FeatureSpec:
    """Roles of the columns of a scoring model, its labelled training model and its outcome model."""

    entity: str
    snapshot: str
    features: tuple[str, ...]
    label: str
    label_horizon_days: int
    training_relation: str
    scoring_relation: str
    descriptions: dict[str, str]
    segments: tuple[str, ...] = ()
    split: str | None = None
    outcome: LabelledModel | None = None
    description: str = ""  # the training model's, for the model card


@dataclass(frozen=True)
class Dataset:
    """One declared dataset: the dbt models a registered model is trained on, scored on and judged against."""

    registered_model: str
    training_model: str
    scoring_model: str
    outcome_model: str
    drift_reference: str = "training"  # which rows of the split the drift reference profiles
    risk_bands: tuple[tuple[str, float], ...] = ()  # the declared rule (bands.declared_rule); () the default
    # ``decisions.value_column``: the scoring model's column of a customer's monthly value. A dataset that
    # declares it gets the decision assets (campaigns, impact, review, uplift); None: it gets none.
    value_column: str | None = None

    @property
    def prefix(self) -> tuple[str, ...]:
        """Asset key prefix: none for the platform's own ``churn_model``, the model name for any other."""
        return () if self.registered_model == DEFAULT_MODEL else (self.registered_model,)

    def key(self, name: str) -> list[str]:
        """The asset key path of one of this dataset's ML or monitoring assets."""
        return [*self.prefix, name]

    def name(self, base: str) -> str:
        """The name of one of this dataset's jobs, sensors or schedules: the platform's own keep
        ``base``, another dataset's end with its registered model name (``train_model_telco``)."""
        return f"{base}_{self.registered_model}" if self.prefix else base

    def lake_table(self, table: str) -> Table:
        """One of this dataset's Delta tables: where it lives under the lake root, with its declared columns."""
        return (table if isinstance(table, Table) else Table(table)).under(self.prefix)

    def spec(self, manifest_path: Path) -> FeatureSpec:
        return discover(manifest_path, self.training_model, self.scoring_model, self.outcome_model)


@cache
def _manifest(path: str, mtime_ns: int) -> dict:
    """The parsed manifest, read once per file version and process."""
    return json.loads(Path(path).read_text())


def load_manifest(path: Path) -> dict:
    return _manifest(str(path), path.stat().st_mtime_ns)


def _model(manifest: dict, name: str) -> dict:
    matches = [
        n
        for n in manifest["nodes"].values()
        if n["resource_type"] in ("model", "seed", "snapshot") and n["name"] == name
    ]
    if len(matches) != 1:
        raise ValueError(f"dbt model {name!r} not found in the manifest (or not unique): found {len(matches)}")
    return matches[0]


def _meta(entry: dict) -> dict:
    return entry.get("config", {}).get("meta") or entry.get("meta") or {}


def _roles(node: dict) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {role: [] for role in ROLES}
    for name, column in node["columns"].items():
        declared = _meta(column).get("role")
        for role in [declared] if isinstance(declared, str) else declared or []:
            if role not in ROLES:
                raise ValueError(f"{node['name']}.{name}: unknown role {role!r}; use one of {ROLES}")
            found[role].append(name)
    return found


def _one(role: str, roles: dict[str, list[str]], model: str) -> str:
    if len(roles[role]) != 1:
        raise ValueError(f"dbt model {model!r} must declare exactly one {role} column, found {roles[role]}")
    return roles[role][0]


def _horizon(node: dict, label: str) -> int:
    """The label's ``horizon_days``: required, and at least one day.

    A label describes what happens after its snapshot; with no horizon (or 0) it
    would describe the snapshot day itself, and a time split could not keep training
    labels out of the validation period.
    """
    declared = _meta(node["columns"][label]).get("horizon_days")
    where = f"dbt model {node['name']!r}, label column {label!r} ({node.get('original_file_path', '')})"
    if declared is None:
        raise ValueError(
            f"{where} declares no horizon_days: say how many days after the snapshot the outcome is known "
            "(config.meta.horizon_days: 30 for 'churned within 30 days')"
        )
    try:
        horizon = int(declared)
    except ValueError:
        raise ValueError(f"{where}: horizon_days {declared!r} is not a whole number of days") from None
    if horizon < 1:
        raise ValueError(
            f"{where}: horizon_days {horizon} is refused: a label must look at least 1 day past its snapshot, "
            "or training and validation would share the outcome of the same day"
        )
    return horizon


def _treated(node: dict, roles: dict[str, list[str]]) -> tuple[str | None, str]:
    """The column flagging treated rows (none if undeclared) and what to do with them (default ``exclude``)."""
    treated = roles["treated"]
    if len(treated) > 1:
        raise ValueError(f"dbt model {node['name']!r} declares more than one treated column: {treated}")
    if not treated:
        return None, "exclude"
    policy = str(_meta(node["columns"][treated[0]]).get("treated_labels", "exclude"))
    if policy not in TREATED_LABELS:
        raise ValueError(
            f"dbt model {node['name']!r}, treated column {treated[0]!r}: treated_labels {policy!r} is neither of "
            f"{list(TREATED_LABELS)}"
        )
    return treated[0], policy


def labelled(manifest: dict, name: str) -> LabelledModel:
    """A model with an entity, a snapshot and a label (training or outcome model)."""
    node = _model(manifest, name)
    roles = _roles(node)
    label = _one("label", roles, name)
    split = roles["split"]
    if len(split) > 1:
        raise ValueError(f"dbt model {name!r} declares more than one split column: {split}")
    treated, treated_labels = _treated(node, roles)
    return LabelledModel(
        name=name,
        relation=node["relation_name"],
        entity=_one("entity", roles, name),
        snapshot=_one("snapshot", roles, name),
        label=label,
        horizon_days=_horizon(node, label),
        split=split[0] if split else None,
        treated=treated,
        treated_labels=treated_labels,
    )


def discover(
    manifest_path: Path, training_model: str, scoring_model: str | None = None, outcome_model: str | None = None
) -> FeatureSpec:
    """Read the roles of the models; features are the scoring model's, the label the training model's.

    The training model must carry every feature column of the scoring model (it may
    declare them again or select them with ``*``); that is checked on the data.
    Segments are the columns either model marks ``segment``.
    """
    manifest = load_manifest(manifest_path)
    scoring_model = scoring_model or training_model
    training, scoring = _model(manifest, training_model), _model(manifest, scoring_model)
    scoring_roles, training_roles = _roles(scoring), _roles(training)
    features = tuple(scoring_roles["feature"]) or tuple(training_roles["feature"])
    if not features:
        raise ValueError(f"dbt model {scoring_model!r} declares no feature columns (config.meta.role: feature)")
    trained = labelled(manifest, training_model)
    return FeatureSpec(
        entity=_one("entity", scoring_roles, scoring_model),
        snapshot=_one("snapshot", scoring_roles, scoring_model),
        features=features,
        label=trained.label,
        label_horizon_days=trained.horizon_days,
        training_relation=training["relation_name"],
        scoring_relation=scoring["relation_name"],
        descriptions={
            name: column.get("description", "")
            for node in (training, scoring)
            for name, column in node["columns"].items()
        },
        segments=tuple(dict.fromkeys([*scoring_roles["segment"], *training_roles["segment"]])),
        split=trained.split,
        outcome=labelled(manifest, outcome_model) if outcome_model else trained,
        description=training.get("description", ""),
    )


def declared_snapshot_days(manifest: dict, model: str) -> dict[date, str]:
    """The snapshot days a model's declaration fixes before any data is read: ``{day: where it says so}``.

    Two declarations are read from the manifest: a literal date the model's SQL gives its
    snapshot column (``date '2026-06-01' as snapshot_date``, or ``cast('2026-06-01' as
    date)``, as a one-off extract does), and ``first_snapshot`` in the snapshot column's
    meta, for data whose days come from the data (``config: {meta: {role: snapshot,
    first_snapshot: "2025-01-06"}}``). A range computed in SQL from data is only known at
    training, where ``partitions.partition_hint`` checks it.
    """
    node = _model(manifest, model)
    roles = _roles(node)
    if len(roles["snapshot"]) != 1:
        return {}
    column = roles["snapshot"][0]
    where = f"dbt model {model!r} ({node.get('original_file_path', '')})"
    found: dict[date, str] = {}
    literal = r"(?:\bdate\s*'(\d{4}-\d{2}-\d{2})'|\bcast\s*\(\s*'(\d{4}-\d{2}-\d{2})'\s+as\s+date\s*\))"
    named = rf"{literal}\s+as\s+\"?{re.escape(column)}(?!\w)"
    for match in re.finditer(named, node.get("raw_code", ""), flags=re.IGNORECASE):
        day = date.fromisoformat(match.group(1) or match.group(2))
        found.setdefault(day, f"{where} sets {column} to the date {day} in its SQL")
    declared = _meta(node["columns"][column]).get("first_snapshot")
    if declared is not None:
        try:
            day = date.fromisoformat(str(declared))
        except ValueError:
            raise ValueError(
                f"{where}, column {column!r}: first_snapshot {declared!r} is not a date (YYYY-MM-DD)"
            ) from None
        found.setdefault(day, f"{where} declares first_snapshot {day} on {column}")
    return found


def sources_read(manifest: dict, model: str) -> set[str]:
    """The names of the dbt sources a model reads, directly or through the models and seeds it selects from.

    This is the model's lineage as dbt parsed it (``depends_on``), so a model built
    from a seed reads no source at all, whatever else the project holds.
    """
    found: set[str] = set()
    seen: set[str] = set()
    pending = [_model(manifest, model)["unique_id"]]
    while pending:
        unique_id = pending.pop()
        if unique_id in seen:
            continue
        seen.add(unique_id)
        if unique_id in manifest.get("sources", {}):
            found.add(manifest["sources"][unique_id]["name"])
        elif unique_id in manifest["nodes"]:
            pending.extend(manifest["nodes"][unique_id].get("depends_on", {}).get("nodes", []))
    return found


def _value_column(manifest: dict, declared: dict, training_model: str, where: str) -> str | None:
    """The declared ``decisions.value_column``, which must be a documented column of the scoring model."""
    decisions = declared.get("decisions")
    if decisions is None:
        return None
    if not isinstance(decisions, dict) or set(decisions) != set(DECISION_KEYS):
        raise ValueError(f"{where}.decisions: expected exactly {list(DECISION_KEYS)}, got {decisions!r}")
    column, scoring = decisions["value_column"], declared.get("scoring_model", training_model)
    if column not in _model(manifest, scoring)["columns"]:
        raise ValueError(
            f"{where}.decisions.value_column: {column!r} is not a documented column of the scoring model {scoring!r}"
        )
    return column


def datasets(manifest_path: Path) -> list[Dataset]:
    """Every dataset declared in the project (``config.meta.churn_platform`` on a labelled model)."""
    found = []
    manifest = load_manifest(manifest_path)
    for node in manifest["nodes"].values():
        declared = _meta(node).get(DECLARATION)
        if node["resource_type"] not in ("model", "seed", "snapshot") or declared is None:
            continue
        where = f"dbt model {node['name']!r} ({node.get('original_file_path', '')}), meta.{DECLARATION}"
        unknown = set(declared) - set(DECLARED_KEYS)
        if unknown:
            raise ValueError(f"{where}: unknown keys {sorted(unknown)}; use {DECLARED_KEYS}")
        name = declared.get("registered_model")
        if not name or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", str(name)):
            raise ValueError(f"{where}: registered_model must be a name of letters, digits and _, got {name!r}")
        reference = declared.get("drift_reference", "training")
        if reference not in DRIFT_REFERENCES:
            raise ValueError(f"{where}: drift_reference {reference!r} is neither of {list(DRIFT_REFERENCES)}")
        found.append(
            Dataset(
                registered_model=name,
                training_model=node["name"],
                scoring_model=declared.get("scoring_model", node["name"]),
                outcome_model=declared.get("outcome_model", node["name"]),
                drift_reference=reference,
                risk_bands=declared_rule(declared.get("risk_bands"), where),
                value_column=_value_column(manifest, declared, node["name"], where),
            )
        )
    names = [d.registered_model for d in found]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ValueError(f"registered model names declared by more than one dbt model: {duplicated}")
    return sorted(found, key=lambda d: (d.prefix != (), d.registered_model))
