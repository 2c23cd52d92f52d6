"""The datasets the dbt project declares, found once per process from the manifest.

A dataset is declared once, in dbt: ``meta.churn_platform`` on its labelled training
model names the registered model, the model scored every day and the model of matured
outcomes. Each ML and monitoring asset module has a factory that makes its assets for a
dataset, downstream of exactly the dbt models the dataset declares, so lineage is what
the assets read. The platform's own ``churn_model`` keeps unprefixed asset keys; another
dataset's keys and lake tables are prefixed with its registered model name.
"""

from __future__ import annotations

import dagster as dg

from platform_assets.dbt_models import PlatformDbtTranslator
from platform_assets.ml.feature_spec import Dataset, FeatureSpec, datasets, load_manifest
from resources.dbt import dbt_project

DATASETS = datasets(dbt_project.manifest_path)
if not DATASETS:
    raise ValueError(
        f"the dbt project {dbt_project.project_dir} declares no dataset: add meta.churn_platform "
        "(registered_model, scoring_model, outcome_model) to a labelled model's YAML, see docs/onboarding.md"
    )
DEFAULT = DATASETS[0]


def dbt_key(model: str) -> dg.AssetKey:
    """The asset key of a dbt model (or seed), as the dbt assets name it."""
    nodes = load_manifest(dbt_project.manifest_path)["nodes"].values()
    node = next(n for n in nodes if n["resource_type"] in ("model", "seed", "snapshot") and n["name"] == model)
    return PlatformDbtTranslator().get_asset_key(node)


def spec_of(dataset: Dataset) -> FeatureSpec:
    """The dataset's column roles, read from the manifest (cached per manifest version)."""
    return dataset.spec(dbt_project.manifest_path)
