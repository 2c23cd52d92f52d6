"""The model lifecycle as assets: train a candidate, then let the offline gate decide what happens to it.

One rollout path: a trained version gets the alias ``candidate``; the gate judges it on
rows neither contender trained on. A refused version never receives traffic. A passed
one becomes the live ``challenger`` (shadow, then canary, until the online verdict of
``rollout_report`` promotes or rolls it back), or, with ``PLATFORM_ROLLOUT_MODE=
promote_on_gate`` or when there is no champion yet, the champion at once. Every step is
appended to the version's decision history (``ModelRegistry.record``).

MLflow, LightGBM, scikit-learn and matplotlib are imported inside the assets: every
step process and every code-location load imports this module, and only the steps
that train or gate need them.
"""

import json
from functools import cache

import dagster as dg
import polars as pl
import polars.selectors as cs
from pydantic import Field

from platform_assets.defs.datasets import dbt_key, lake_versions_read, spec_of
from platform_assets.metadata import layer, markdown_table, table_schema
from platform_assets.ml.feature_spec import Dataset
from platform_assets.ml.promotion import PromotionConfig, apply_gate, decide, refuse, validation_rows, window_text
from platform_assets.ml.registration import log_booster, models_from_code
from platform_assets.partitions import partition_hint
from resources.model_registry import CANDIDATE, CHAMPION, ModelRegistry
from resources.settings import settings
from resources.warehouse import Warehouse

PROMOTION_CHECK = "promotion_gate"
GATE_FAIRNESS_CHECK = "gate_fairness"
_SHOWN = ("version", "roc_auc", "pr_auc", "calibration_error", "brier", "segment_gap", "rows")
SCORE = "churn_probability"
CHURN_PYFUNC = models_from_code("platform_assets.ml.pyfunc_model")


class TrainingConfig(dg.Config):
    """LightGBM parameters and the time split; what is trained on comes from the dbt declaration."""

    validation_snapshots: int = Field(
        default=2, description="Latest snapshot days held out for validation (without a declared split column)."
    )
    early_stopping_share: float = Field(
        default=0.15, description="Share of customers held out of the training days to stop boosting early."
    )
    reference_max_rows: int = Field(
        default=300_000,
        ge=1000,
        description="Above this, the reference profile is built from a sample of whole entities.",
    )
    # LightGBM's own parameter names (docs/onboarding.md lists them with what they trade).
    learning_rate: float = Field(default=0.05, description="Shrinkage of each tree's contribution.")
    num_leaves: int = Field(default=15, description="Most leaves per tree.")
    max_depth: int = Field(default=6, description="Deepest a tree may grow.")
    min_data_in_leaf: int = Field(default=200, description="Fewest training rows in a leaf.")
    feature_fraction: float = Field(default=0.9, description="Share of features each tree may use.")
    bagging_fraction: float = Field(default=0.8, description="Share of rows each bagging round draws.")
    bagging_freq: int = Field(default=1, description="Draw the rows again every this many trees (0: no bagging).")
    lambda_l2: float = Field(default=1.0, description="L2 regularization of leaf values.")
    max_rounds: int = Field(default=1000, description="Most boosting rounds (trees).")
    early_stopping_rounds: int = Field(
        default=50, description="Stop after this many rounds without a better log loss on the early-stopping rows."
    )
    seed: int = Field(default=7, description="Seed of LightGBM's draws (training is deterministic).")

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


def train_challenger(
    context: dg.AssetExecutionContext,
    config: TrainingConfig,
    dataset: Dataset,
    warehouse: Warehouse,
    registry: ModelRegistry,
) -> dg.MaterializeResult:
    """Train on the declared training model, honestly split, and register a challenger."""
    import mlflow

    from platform_assets.ml.bands import fit_bands
    from platform_assets.ml.evaluation import calibration_table, largest_gap, metrics, segment_performance
    from platform_assets.ml.model_card import model_card
    from platform_assets.ml.profiles import build_profile, reference_rows
    from platform_assets.ml.sample import read_sample
    from platform_assets.ml.training import SplitRefused, labels, train
    from platform_assets.plots import as_metadata, calibration, feature_importance, png_bytes

    spec = spec_of(dataset)
    first, last = warehouse.query(
        f"select min({spec.snapshot}), max({spec.snapshot}) from {spec.scoring_relation}"
    ).row(0)
    hint = partition_hint(first, last) if first else f"no rows to score in {spec.scoring_relation}"
    if hint:
        raise dg.Failure(f"{spec.scoring_relation}: {hint}")
    frame, rows_read = read_sample(warehouse, spec, settings().training_max_rows)
    context.log.info(f"Training on {rows_read.describe()}, with {len(spec.features)} features")
    try:
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
    except SplitRefused as refused:
        raise dg.Failure(
            f"{dataset.registered_model}: refused to train on {spec.training_relation}: {refused}"
        ) from None
    validation = trained.validation
    y, p = labels(validation, spec), validation[SCORE].to_numpy()
    scores = metrics(y, p)
    calibration_bins = calibration_table(y, p)
    minimum = settings().fairness_min_per_class
    segments = segment_performance(validation, spec.label, SCORE, list(spec.segments), min_per_class=minimum)
    gap = largest_gap(segments, spec.segments, minimum)
    # The reference for drift is what the model learned from (its training rows, or its
    # validation rows if the dataset declares so), never the days it is deployed on: a
    # reference of the latest scored days would compare those days with themselves.
    rows_of_reference, reference = reference_rows(
        frame, trained.split, spec, dataset.drift_reference, config.reference_max_rows
    )
    profile = build_profile(rows_of_reference, list(spec.features), trained.model.predict_frame(rows_of_reference))
    profile["snapshot"] = f"{rows_of_reference[spec.snapshot].min()}..{rows_of_reference[spec.snapshot].max()}"
    profile["reference"] = reference
    bands = fit_bands(p, dataset.risk_bands)
    profile["bands"] = bands.to_dict()
    importance = trained.importance()
    data_versions = lake_versions_read(context.instance, dataset.training_model)
    rows = {"train": frame.filter(trained.split.is_train(spec)).height, "validation": validation.height}
    context.log.info(
        f"Validation ROC AUC {scores['roc_auc']:.3f} after {trained.best_iteration} rounds "
        f"({trained.split.describe()}); logging to MLflow"
    )

    registry.activate()
    run_name = f"{dataset.registered_model} {context.run_id[:8]}"
    with mlflow.start_run(run_name=run_name) as run:
        mlflow.log_params(
            {
                **trained.params,
                "features": len(spec.features),
                "best_iteration": trained.best_iteration,
                "split_kind": trained.split.kind,
                **rows_read.as_params(),
            }
        )
        mlflow.log_metrics(
            {f"validation_{k}": v for k, v in scores.items()}
            | ({"segment_gap": gap["gap"]} if gap["gap"] is not None else {})
        )
        mlflow.set_tags(
            {
                "dagster_run_id": context.run_id,
                "training_relation": spec.training_relation,
                "scoring_relation": spec.scoring_relation,
                "lake_versions": json.dumps(data_versions),
                "features": ",".join(spec.features),
                "validation_snapshots": ",".join(map(str, trained.split.validation)),
                "split": trained.split.to_json(),
                "split_description": trained.split.describe(),
                "training_sample": rows_read.describe(),
                "drift_reference": reference["kind"],
                "drift_reference_rows": reference["description"],
                "risk_bands": json.dumps(bands.to_dict()),
            }
        )
        # The signature comes from a thousand rows, so columns that can be missing are optional.
        sample = validation.select(spec.features).head(1000).with_columns(cs.decimal().cast(pl.Float64))
        info = log_booster(
            trained.model.booster,
            list(spec.features),
            trained.model.categories,
            CHURN_PYFUNC,
            registry.model_name,
            signature=mlflow.models.infer_signature(sample.to_pandas(), trained.model.predict_frame(sample)),
            input_example=sample.head(5).to_pandas(),
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
            sample=rows_read.describe(),
            reference=reference,
            bands=bands,
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
    client.set_registered_model_alias(registry.model_name, CANDIDATE, version)
    client.update_model_version(registry.model_name, version, description=card)
    client.set_model_version_tag(registry.model_name, version, "validation_roc_auc", f"{scores['roc_auc']:.4f}")
    registry.record(version, "trained", "candidate", f"ROC AUC {scores['roc_auc']:.4f} on its validation rows")
    context.log.info(f"Registered {registry.model_name} version {version} as {CANDIDATE}")

    return dg.MaterializeResult(
        metadata={
            "model_version": version,
            "model_version_url": dg.MetadataValue.url(registry.version_url(version)),
            "mlflow_run_id": run.info.run_id,
            "mlflow_run": dg.MetadataValue.url(registry.run_url(run.info.experiment_id, run.info.run_id)),
            **{f"validation_{k}": dg.MetadataValue.float(v) for k, v in scores.items()},
            "segment_gap": dg.MetadataValue.float(float(gap["gap"]))
            if gap["gap"] is not None
            else f"not evaluated: {gap['reason']}",
            "best_iteration": trained.best_iteration,
            "features": dg.MetadataValue.json(list(spec.features)),
            "dagster/column_schema": table_schema(
                {f: (frame.schema[f], spec.descriptions.get(f, "")) for f in spec.features}
            ),
            "training_sample": rows_read.describe(),
            "training_rows": rows["train"],
            "validation_rows": rows["validation"],
            "validation_window": ", ".join(map(str, trained.split.validation)),
            "split": trained.split.describe(),
            "drift_reference": reference["description"],
            "risk_bands": bands.rule,
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


def judge_challenger(
    context: dg.AssetExecutionContext,
    config: PromotionConfig,
    dataset: Dataset,
    warehouse: Warehouse,
    registry: ModelRegistry,
):
    """Score candidate and champion on the candidate's validation rows, after checking neither trained on them.

    A registry that fails to answer fails the run (``RegistryUnavailable``): judged
    against "no champion", the candidate would face the first-model floor alone.
    """
    from platform_assets.ml.evaluation import judge_fairness, largest_gap, metrics, segment_performance
    from platform_assets.ml.training import TimeSplit, labels

    spec = spec_of(dataset)
    challenger = registry.version(CANDIDATE)
    if challenger is None:
        raise dg.Failure(f"{registry.model_name} has no {CANDIDATE}: materialize its candidate_model first")
    champion = registry.version(CHAMPION)
    contenders = {"challenger": challenger} | ({"champion": champion} if champion else {})
    splits = {role: registry.split(version.run_id) for role, version in contenders.items()}
    figures, gaps, window, reason = {}, {}, pl.DataFrame(), None
    minimum = settings().fairness_min_per_class
    if splits["challenger"] is None:
        reason = f"challenger v{challenger.version} recorded no split, so no rows are known to be unseen"
    else:
        window = validation_rows(warehouse, spec, TimeSplit.from_json(splits["challenger"]))
        shown = window_text(window, spec)
        if window.is_empty():
            reason = f"the challenger's validation window is empty in {spec.training_relation} ({shown})"
        for role, version in contenders.items():
            if reason:
                break
            if splits[role] is None:
                reason = f"{role} v{version.version} recorded no split, so it may have trained on the window"
                break
            split = TimeSplit.from_json(splits[role])
            seen = window.filter(split.trained_on(spec.snapshot, window.columns)).height
            if seen:
                reason = (
                    f"{seen} of {window.height} rows of the window ({shown}) overlap what {role} "
                    f"v{version.version} trained on ({split.describe()})"
                )
    if reason:
        decision = refuse(challenger.version, reason)
        gaps["challenger"] = {"gap": None, "reason": f"not judged: {reason}"}
    else:
        for role, version in contenders.items():
            scored = window.with_columns(pl.Series(SCORE, registry.load(version.version).predict_frame(window)))
            y, p = labels(scored, spec), scored[SCORE].to_numpy()
            segments = segment_performance(scored, spec.label, SCORE, list(spec.segments), min_per_class=minimum)
            gap = gaps[role] = largest_gap(segments, spec.segments, minimum)
            figures[role] = {
                "version": version.version,
                **metrics(y, p),
                "segment_gap": gap["gap"],
                "segment_reason": gap["reason"],
            }
        decision = decide(figures["challenger"], figures.get("champion"), config)
    context.log.info(f"Promotion gate: {decision.summary}")
    outcome, action = apply_gate(registry, challenger.version, champion, decision)
    context.log.info(f"v{challenger.version}: {action}")
    champion_now = registry.version(CHAMPION)
    _, fairness = judge_fairness(gaps["challenger"], config.max_segment_gap)
    comparison = pl.DataFrame(
        [{"model": role, **{k: v for k, v in f.items() if k in _SHOWN}} for role, f in figures.items()]
    )
    yield dg.MaterializeResult(
        metadata={
            "decision": outcome,
            "gate": decision.verdict,
            "reason": decision.summary,
            "action": action,
            "rollout_mode": settings().rollout_mode,
            "challenger_version": challenger.version,
            "previous_champion_version": champion.version if champion else "none",
            "champion_version": champion_now.version if champion_now else "none",
            "champion_version_url": dg.MetadataValue.url(registry.version_url(champion_now.version))
            if champion_now
            else "none",
            "comparison": dg.MetadataValue.md(markdown_table(comparison) if figures else "not judged"),
            "decision_history": dg.MetadataValue.md(
                markdown_table(pl.DataFrame(ModelRegistry.history(registry.by_number(challenger.version))))
            ),
            "evaluation_window": window_text(window, spec),
            "evaluation_rows": window.height,
            "fairness": fairness,
        }
    )
    yield dg.AssetCheckResult(
        check_name=PROMOTION_CHECK,
        asset_key=context.asset_key,
        passed=decision.verdict != "refused",
        severity=dg.AssetCheckSeverity.ERROR,
        description=f"{decision.summary}. {action}"[:2000],
        metadata={
            "decision": outcome,
            "evaluation_window": window_text(window, spec),
            **{
                f"{r}_{k}": float(v)
                for r, f in figures.items()
                for k, v in f.items()
                if k in _SHOWN and k != "version" and v is not None
            },
        },
    )
    yield gate_fairness_check(context.asset_key, challenger.version, gaps["challenger"], config, spec.segments)


def gate_fairness_check(
    asset_key: dg.AssetKey, version: str, gap: dict, rules: PromotionConfig, segments: tuple[str, ...]
) -> dg.AssetCheckResult:
    """The gate's fairness part as its own check, beside ``promotion_gate``: a WARN, never a refusal.

    A gap over the bound fails it (and the gate refuses the challenger, which
    ``promotion_gate`` says); a gap that could not be measured fails it too, saying
    "not evaluated" and why, while the gate may still pass the challenger on its other
    rules: a passed gate does not read as fairness checked.
    """
    from platform_assets.ml.evaluation import judge_fairness

    fair, text = judge_fairness(gap, rules.max_segment_gap)
    return dg.AssetCheckResult(
        check_name=GATE_FAIRNESS_CHECK,
        asset_key=asset_key,
        passed=fair,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"challenger v{version}: {text}"[:2000],
        metadata={
            "segments": dg.MetadataValue.json(list(segments)),
            "min_per_class": settings().fairness_min_per_class,
            "segment_gap": float(gap["gap"]) if gap["gap"] is not None else "not evaluated",
            "bound": rules.max_segment_gap,
        },
    )


@cache
def model_assets(dataset: Dataset) -> tuple[dg.AssetsDefinition, dg.AssetsDefinition]:
    """``candidate_model`` (training) and ``champion_model`` (the gate) of a declared dataset, downstream of its training model."""
    name = dataset.registered_model

    @dg.asset(
        key=dataset.key("candidate_model"),
        deps=[dbt_key(dataset.training_model)],
        **layer("ml"),
        kinds={"lightgbm", "mlflow", "polars"},
        description=(
            f"Trains a candidate version of `{name}`: LightGBM trained on the dbt model `{dataset.training_model}` with the "
            "features its YAML declares, split honestly (by time, or by a declared split column) or refused, "
            "logged to MLflow with its metrics, split, reference profile (of its training rows, or of its validation "
            "rows with `drift_reference: validation`), risk bands (from its validation scores, or declared) and model "
            "card, and registered as a new version with the alias `candidate`. The promotion gate decides what "
            "becomes of it."
        ),
    )
    def candidate_model(
        context: dg.AssetExecutionContext, config: TrainingConfig, warehouse: Warehouse, registry: ModelRegistry
    ):
        return train_challenger(context, config, dataset, warehouse, registry.named(name))

    @dg.asset(
        key=dataset.key("champion_model"),
        deps=[candidate_model, dbt_key(dataset.training_model)],
        **layer("ml"),
        kinds={"mlflow"},
        description=(
            f"The promotion gate of `{name}`: scores the candidate and the current champion on the candidate's "
            "validation rows, after checking from the split recorded on each version's MLflow run that neither "
            "trained on them. A candidate at least as good (ROC AUC, calibration) and fair across declared segments "
            "passes: it becomes the live `challenger` (shadow, then canary, until `rollout_report` promotes or rolls "
            "it back), or the champion at once under `PLATFORM_ROLLOUT_MODE=promote_on_gate` or when there is none. "
            "A refused one never receives traffic. The decision and its figures are here; every step is appended "
            "to the version's decision history in MLflow."
        ),
        check_specs=[
            dg.AssetCheckSpec(
                PROMOTION_CHECK,
                asset=dataset.key("champion_model"),
                description="Fails (without blocking scoring, which keeps the old champion) when the challenger is "
                "refused, or when no honest window exists to judge it on.",
            ),
            dg.AssetCheckSpec(
                GATE_FAIRNESS_CHECK,
                asset=dataset.key("champion_model"),
                description="The gate's fairness part, on the challenger's window: passes when the largest ROC AUC gap "
                "across the values of a declared segment is within max_segment_gap; WARNs when it is not (the gate "
                "then refuses) or when it is not evaluated: no segment declared, or no segment column with two "
                "values of at least PLATFORM_FAIRNESS_MIN_PER_CLASS churners and non-churners each.",
            ),
        ],
    )
    def champion_model(
        context: dg.AssetExecutionContext, config: PromotionConfig, warehouse: Warehouse, registry: ModelRegistry
    ):
        yield from judge_challenger(context, config, dataset, warehouse, registry.named(name))

    return candidate_model, champion_model
