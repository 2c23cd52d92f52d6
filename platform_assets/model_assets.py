"""The model lifecycle as assets: train a challenger, then let the gate decide on promotion.

MLflow, LightGBM, scikit-learn and matplotlib are imported inside the assets: every
step process and every code-location load imports this module, and only the steps
that train or gate need them.
"""

import json
import tempfile
from pathlib import Path

import dagster as dg
import polars as pl
import polars.selectors as cs
from pydantic import Field

from platform_assets.metadata import OWNER, markdown_table, table_schema
from platform_assets.ml.feature_spec import FeatureSpec, discover
from platform_assets.ml.promotion import GateRules, decide
from resources.dbt import dbt_project
from resources.model_registry import CHALLENGER, CHAMPION, ModelRegistry
from resources.warehouse import Warehouse

PROMOTION_CHECK = "promotion_gate"
SCORE = "churn_probability"
PYFUNC_MODEL = Path(__file__).parent / "ml" / "pyfunc_model.py"


class FeatureSource(dg.Config):
    training_model: str = Field(default="training_set", description="dbt model with features and the label.")
    scoring_model: str = Field(default="customer_features", description="dbt model scored every day.")
    segments: list[str] = Field(
        default=["plan", "region", "age_band"], description="Columns to measure performance gaps across."
    )

    def spec(self) -> FeatureSpec:
        return discover(dbt_project.manifest_path, self.training_model, self.scoring_model)


class TrainingConfig(FeatureSource):
    validation_snapshots: int = Field(default=2, description="Latest snapshot days held out for validation.")
    early_stopping_share: float = Field(
        default=0.15, description="Share of customers held out of the training days to stop boosting early."
    )
    reference_days: int = Field(
        default=14, description="Latest days of the scoring model whose distribution drift is measured against."
    )
    learning_rate: float = 0.05
    num_leaves: int = 15
    max_depth: int = 6
    min_data_in_leaf: int = 200
    feature_fraction: float = 0.9
    bagging_fraction: float = 0.8
    bagging_freq: int = 1
    lambda_l2: float = 1.0
    max_rounds: int = 1000
    early_stopping_rounds: int = 50
    seed: int = 7

    def lightgbm_params(self) -> dict:
        names = ("learning_rate", "num_leaves", "max_depth", "min_data_in_leaf", "feature_fraction", "bagging_fraction")
        return {
            **{name: getattr(self, name) for name in names},
            "bagging_freq": self.bagging_freq,
            "lambda_l2": self.lambda_l2,
            "seed": self.seed,
            "deterministic": True,
            "num_threads": 2,
        }


def _pip_requirements() -> list[str]:
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in ("mlflow", "lightgbm", "polars", "numpy", "pandas", "pyarrow")]


def _lake_versions(instance: dg.DagsterInstance, model: str) -> dict:
    event = instance.get_latest_materialization_event(dg.AssetKey(model))
    versions = event.asset_materialization.metadata.get("lake_versions") if event else None
    return versions.value if versions else {}


@dg.asset(
    deps=[dg.AssetKey("training_set")],
    group_name="ml",
    kinds={"lightgbm", "mlflow", "polars"},
    owners=[OWNER],
    tags={"layer": "ml"},
    description=(
        "The churn model: LightGBM trained on the dbt training set with the features its YAML declares, "
        "split by time, logged to MLflow with its metrics, reference profile and model card, and registered "
        "as a new version with the alias `challenger`. The promotion gate decides whether it becomes champion. "
        "Its reference profile for drift monitoring describes the latest two weeks of features at training time."
    ),
)
def churn_model(
    context: dg.AssetExecutionContext, config: TrainingConfig, warehouse: Warehouse, registry: ModelRegistry
):
    import mlflow

    from platform_assets.ml.evaluation import calibration_table, largest_gap, metrics, segment_performance
    from platform_assets.ml.model_card import model_card
    from platform_assets.ml.profiles import build_profile
    from platform_assets.ml.training import labels, train
    from platform_assets.plots import as_metadata, calibration, feature_importance, png_bytes

    spec = config.spec()
    frame = warehouse.table(spec.training_relation)
    context.log.info(f"Training on {frame.height} rows of {spec.training_relation} with {len(spec.features)} features")
    trained = train(
        frame,
        spec,
        config.lightgbm_params(),
        max_rounds=config.max_rounds,
        early_stopping_rounds=config.early_stopping_rounds,
        validation_snapshots=config.validation_snapshots,
        early_stopping_share=config.early_stopping_share,
        log=context.log.info,
    )
    validation = trained.validation
    y, p = labels(validation, spec), validation[SCORE].to_numpy()
    scores = metrics(y, p)
    calibration_bins = calibration_table(y, p)
    segments = segment_performance(
        validation, spec.label, SCORE, [s for s in config.segments if s in validation.columns]
    )
    gap = largest_gap(segments)
    # The reference for drift is the population the model is deployed on: the latest
    # days of the scoring model, not the validation window, which is a label horizon
    # old. Two weeks cover the weekly rhythm and the fortnightly campaigns.
    deployed = warehouse.query(
        f"select * from {spec.scoring_relation} where {spec.snapshot} > (select max({spec.snapshot}) "
        f"from {spec.scoring_relation}) - to_days(?)",
        [config.reference_days],
    )
    profile = build_profile(deployed, list(spec.features), trained.model.predict_frame(deployed))
    profile["snapshot"] = f"{deployed[spec.snapshot].min()}..{deployed[spec.snapshot].max()}"
    importance = trained.importance()
    data_versions = _lake_versions(context.instance, config.training_model)
    rows = {
        "train": frame.filter(pl.col(spec.snapshot).is_in(trained.split.train)).height,
        "validation": validation.height,
    }
    context.log.info(
        f"Validation ROC AUC {scores['roc_auc']:.3f} after {trained.best_iteration} rounds; logging to MLflow"
    )

    registry.activate()
    with mlflow.start_run(run_name=f"churn_model {context.run_id[:8]}") as run, tempfile.TemporaryDirectory() as tmp:
        mlflow.log_params({**trained.params, "features": len(spec.features), "best_iteration": trained.best_iteration})
        mlflow.log_metrics({f"validation_{k}": v for k, v in scores.items()} | {"segment_gap": gap["gap"]})
        mlflow.set_tags(
            {
                "dagster_run_id": context.run_id,
                "training_relation": spec.training_relation,
                "scoring_relation": spec.scoring_relation,
                "lake_versions": json.dumps(data_versions),
                "features": ",".join(spec.features),
                "validation_snapshots": ",".join(map(str, trained.split.validation)),
            }
        )
        booster_path, encoding_path = Path(tmp, "booster.txt"), Path(tmp, "encoding.json")
        trained.model.booster.save_model(str(booster_path))
        encoding_path.write_text(json.dumps({"features": list(spec.features), "categories": trained.model.categories}))
        # The signature comes from a thousand rows, so columns that can be missing are optional.
        sample = validation.select(spec.features).head(1000).with_columns(cs.decimal().cast(pl.Float64))
        example = sample.head(5)
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(PYFUNC_MODEL),
            artifacts={"booster": str(booster_path), "encoding": str(encoding_path)},
            signature=mlflow.models.infer_signature(sample.to_pandas(), trained.model.predict_frame(sample)),
            input_example=example.to_pandas(),
            pip_requirements=_pip_requirements(),
            registered_model_name=registry.model_name,
        )
        version = str(info.registered_model_version)
        card = model_card(
            model_name=registry.model_name,
            version=version,
            run_id=run.info.run_id,
            spec=spec,
            split=trained.split,
            data_versions=data_versions,
            metrics=scores,
            calibration=calibration_bins,
            segments=segments,
            gap=gap,
            importance=importance,
            rows=rows,
        )
        importance_png = png_bytes(feature_importance(importance))
        calibration_png = png_bytes(calibration(calibration_bins))
        mlflow.log_text(card, "model_card.md")
        mlflow.log_dict(profile, "reference_profile.json")
        mlflow.log_dict(dict(importance.iter_rows()), "feature_importance.json")
        mlflow.log_image(_image(importance_png), "feature_importance.png")
        mlflow.log_image(_image(calibration_png), "calibration.png")
        mlflow.log_table(segments.to_pandas(), "segment_performance.json")

    client = registry.activate()
    client.set_registered_model_alias(registry.model_name, CHALLENGER, version)
    client.update_model_version(registry.model_name, version, description=card)
    client.set_model_version_tag(registry.model_name, version, "validation_roc_auc", f"{scores['roc_auc']:.4f}")
    context.log.info(f"Registered {registry.model_name} version {version} as {CHALLENGER}")

    return dg.MaterializeResult(
        metadata={
            "model_version": version,
            "model_version_url": dg.MetadataValue.url(registry.version_url(version)),
            "mlflow_run_id": run.info.run_id,
            "mlflow_run": dg.MetadataValue.url(registry.run_url(run.info.experiment_id, run.info.run_id)),
            **{f"validation_{k}": dg.MetadataValue.float(v) for k, v in scores.items()},
            "segment_gap": dg.MetadataValue.float(float(gap["gap"])),
            "best_iteration": trained.best_iteration,
            "features": dg.MetadataValue.json(list(spec.features)),
            "dagster/column_schema": table_schema(
                {f: (frame.schema[f], spec.descriptions.get(f, "")) for f in spec.features}
            ),
            "training_rows": rows["train"],
            "validation_window": ", ".join(map(str, trained.split.validation)),
            "lake_versions": dg.MetadataValue.json(data_versions),
            "feature_importance": as_metadata(importance_png),
            "calibration": as_metadata(calibration_png),
            "model_card": dg.MetadataValue.md(card),
        }
    )


def _image(png: bytes):
    import io

    from PIL import Image

    return Image.open(io.BytesIO(png))


class PromotionConfig(FeatureSource):
    evaluation_snapshots: int = Field(default=2, description="Latest labelled snapshot days both models are scored on.")
    auc_floor: float = Field(default=0.65, description="ROC AUC the first model must reach to be promoted.")
    auc_tolerance: float = Field(default=0.01, description="How far below the champion's ROC AUC a challenger may be.")
    calibration_tolerance: float = Field(
        default=0.02, description="How much worse than the champion's calibration error a challenger may be."
    )
    max_segment_gap: float = Field(default=0.15, description="Largest ROC AUC gap across segment values allowed.")

    def rules(self) -> GateRules:
        return GateRules(self.auc_floor, self.auc_tolerance, self.calibration_tolerance, self.max_segment_gap)


@dg.asset(
    deps=[churn_model],
    group_name="ml",
    kinds={"mlflow"},
    owners=[OWNER],
    tags={"layer": "ml"},
    description=(
        "The promotion gate: scores the challenger and the current champion on the same latest labelled window "
        "and moves the MLflow alias `champion` to the challenger only if it is at least as good (ROC AUC, "
        "calibration) and fair across segments. The decision and its figures are here and on the model version."
    ),
    check_specs=[
        dg.AssetCheckSpec(
            PROMOTION_CHECK,
            asset="champion_model",
            description="Fails (without blocking scoring, which keeps the old champion) when the challenger is refused.",
        )
    ],
)
def champion_model(
    context: dg.AssetExecutionContext, config: PromotionConfig, warehouse: Warehouse, registry: ModelRegistry
):
    from platform_assets.ml.evaluation import largest_gap, metrics, segment_performance
    from platform_assets.ml.training import labels

    spec = config.spec()
    challenger = registry.version(CHALLENGER)
    if challenger is None:
        raise dg.Failure(f"{registry.model_name} has no {CHALLENGER}: materialize churn_model first")
    champion = registry.version(CHAMPION)
    window = warehouse.query(
        f"select * from {spec.training_relation} where {spec.snapshot} in "
        f"(select distinct {spec.snapshot} from {spec.training_relation} order by 1 desc limit ?)",
        [config.evaluation_snapshots],
    )
    contenders = {"challenger": challenger} | ({"champion": champion} if champion else {})
    figures = {}
    for role, version in contenders.items():
        scored = window.with_columns(pl.Series(SCORE, registry.load(version.version).predict_frame(window)))
        y, p = labels(scored, spec), scored[SCORE].to_numpy()
        segments = segment_performance(scored, spec.label, SCORE, [s for s in config.segments if s in scored.columns])
        figures[role] = {
            "version": version.version,
            **metrics(y, p),
            "segment_gap": float(largest_gap(segments)["gap"]),
        }
    decision = decide(figures["challenger"], figures.get("champion"), config.rules())
    context.log.info(f"Promotion gate: {decision.summary}")

    client = registry.activate()
    if decision.promote:
        registry.promote(challenger.version)
    for key, value in {"promotion_decision": decision.verdict, "promotion_reason": decision.summary}.items():
        client.set_model_version_tag(registry.model_name, challenger.version, key, value)
    champion_now = registry.version(CHAMPION)
    comparison = pl.DataFrame(
        [{"model": role, **{k: v for k, v in f.items() if k in _SHOWN}} for role, f in figures.items()]
    )
    yield dg.MaterializeResult(
        metadata={
            "decision": decision.verdict,
            "reason": decision.summary,
            "challenger_version": challenger.version,
            "previous_champion_version": champion.version if champion else "none",
            "champion_version": champion_now.version if champion_now else "none",
            "champion_version_url": dg.MetadataValue.url(registry.version_url(champion_now.version))
            if champion_now
            else "none",
            "comparison": dg.MetadataValue.md(markdown_table(comparison)),
            "evaluation_window": ", ".join(map(str, sorted(window[spec.snapshot].unique().to_list()))),
        }
    )
    yield dg.AssetCheckResult(
        check_name=PROMOTION_CHECK,
        passed=decision.verdict != "refused",
        severity=dg.AssetCheckSeverity.ERROR,
        description=decision.summary,
        metadata={
            "decision": decision.verdict,
            **{
                f"{r}_{k}": float(v) for r, f in figures.items() for k, v in f.items() if k in _SHOWN and k != "version"
            },
        },
    )


_SHOWN = ("version", "roc_auc", "pr_auc", "calibration_error", "brier", "segment_gap", "rows")
