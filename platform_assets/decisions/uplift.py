"""Uplift: who is moved by contact, learned from the campaigns' own randomized arms.

An S-learner on LightGBM that starts from the churn model: one booster, fitted with the
churn score's log-odds as initial score on the campaign day's features plus a contact
indicator, learns how contact changes the score; the predicted uplift is the churn
probability without contact minus with it. A T-learner (one classifier per arm) was
tried first: with a few thousand outcomes at a 10% churn rate the difference of two
noisy models ranked worse than the churn score itself (the 2026-12-01 campaign demo:
true net saving -5,134 EUR against risk targeting's +558 at 800 contacts), because it
must relearn the baseline risk in each arm; starting from the churn score leaves only the
change to learn. It can only be learned from a randomized comparison, which the
campaigns' holdouts are, and only on the kind of customer the campaigns targeted, which
the evaluation says. causalml was not used: a compiled stack for one booster.

The model is logged, registered (``uplift_model``, alias ``challenger``) and promoted to
``champion`` only when its Qini on held-out customers beats the churn score's Qini on
the same customers, so targeting by uplift is never switched to a model that ranks
worse than risk.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import TYPE_CHECKING

import dagster as dg
import numpy as np
import polars as pl
from pydantic import Field

from platform_assets.campaign_log import CONTACT, HOLDOUT, matured_log
from platform_assets.decisions.assignment import holdout_draw
from platform_assets.metadata import markdown_table
from platform_assets.ml.registration import log_booster, models_from_code
from platform_assets.ml.training import categories_of

if TYPE_CHECKING:
    from platform_assets.decisions.scope import DecisionScope

UPLIFT_PYFUNC = models_from_code("platform_assets.decisions.uplift_pyfunc")
TRAINED_THROUGH = "trained_through"
VALIDATION = "uplift-validation"  # the hash that holds customers out of training


class UpliftConfig(dg.Config):
    """Run config of ``uplift_model``."""

    min_outcomes_per_arm: int = Field(default=300, ge=20, description="Fewest matured outcomes per arm to train.")
    validation_share: float = Field(default=0.3, gt=0, lt=1, description="Customers (hashed) held out to validate.")
    num_leaves: int = Field(default=4, ge=2, description="LightGBM leaves per tree.")
    min_data_in_leaf: int = Field(default=100, ge=1, description="LightGBM minimum rows per leaf.")
    learning_rate: float = Field(default=0.05, gt=0, description="LightGBM learning rate.")
    rounds: int = Field(default=60, ge=1, description="Boosting rounds.")
    seed: int = Field(default=42, description="LightGBM seed.")


def qini(retained: np.ndarray, treated: np.ndarray, score: np.ndarray) -> float:
    """Qini coefficient: area between the Qini curve of ``score`` and random targeting, per customer.

    The curve at n is the extra customers retained by contacting the top n: retained
    contacted minus retained holdout scaled to the contacted count among those n.
    """
    order = np.argsort(-score, kind="stable")
    r, t = retained[order].astype(float), treated[order].astype(float)
    n_t, n_c = np.cumsum(t), np.cumsum(1 - t)
    r_t, r_c = np.cumsum(r * t), np.cumsum(r * (1 - t))
    curve = r_t - np.divide(r_c * n_t, n_c, out=np.zeros_like(r_c), where=n_c > 0)
    n = np.arange(1, len(r) + 1)
    random = n / len(r) * curve[-1]
    return float(np.mean(curve - random) / len(r))


def policy_saving(frame: pl.DataFrame, score: str, share: float, offer_cost: float) -> dict:
    """Estimated net saving of contacting the top ``share`` by ``score`` of evaluated customers (both arms).

    The churn difference of the arms within that top estimates the reduction; money is
    reduction x customers x value - cost, for as many customers as the share covers.
    """
    top = frame.sort(score, descending=True).head(max(1, round(frame.height * share)))
    arms = {arm: top.filter(pl.col("arm") == arm) for arm in (CONTACT, HOLDOUT)}
    if min(a.height for a in arms.values()) == 0:
        return {"customers": top.height, "reduction": None, "net_saving_eur": None}
    reduction = float(arms[HOLDOUT]["churned"].mean() - arms[CONTACT]["churned"].mean())
    value = float(top["customer_value"].mean())
    return {
        "customers": top.height,
        "reduction": reduction,
        "net_saving_eur": top.height * (reduction * value - offer_cost),
    }


def with_features(rows: pl.DataFrame, warehouse, spec) -> pl.DataFrame:
    """Log rows joined with their customer's features on the campaign day."""
    days = rows["ds"].unique().sort().to_list()
    placeholders = ", ".join("?" for _ in days)
    features = warehouse.query(
        f"select {spec.entity} as customer_id, {spec.snapshot} as ds, "
        + ", ".join(f'"{f}"' for f in spec.features)
        + f" from {spec.scoring_relation} where {spec.snapshot} in ({placeholders})",
        days,
    ).with_columns(pl.col("ds").cast(pl.Date))
    return rows.join(features, on=["customer_id", "ds"], how="inner")


def fit(frame: pl.DataFrame, features: list[str], categories: dict, config: UpliftConfig):
    """The S-learner: one booster from the churn score's log-odds, on the features and the contact indicator."""
    import lightgbm as lgb

    from platform_assets.decisions.uplift_pyfunc import SCORE, UpliftModel, encode, log_odds, with_contact

    params = {
        "objective": "binary",
        "num_leaves": config.num_leaves,
        "min_data_in_leaf": config.min_data_in_leaf,
        "learning_rate": config.learning_rate,
        "seed": config.seed,
        "deterministic": True,
        "num_threads": 2,
        "verbose": -1,
    }
    contacted = (frame["arm"] == CONTACT).cast(pl.Float64).to_numpy()
    data = lgb.Dataset(
        with_contact(encode(frame, features, categories), contacted),
        frame["churned"].cast(pl.Int64).to_numpy(),
        init_score=log_odds(frame[SCORE].to_numpy()),
        categorical_feature=[features.index(f) for f in categories],
        free_raw_data=False,
    )
    booster = lgb.train(params, data, num_boost_round=config.rounds)
    return UpliftModel.from_parts(booster, features, categories), params


def evaluate(frame: pl.DataFrame, uplift: np.ndarray, offer_cost: float) -> dict:
    """Qini of uplift and of risk on the same customers, and both policies' saving contacting half of them."""
    scored = frame.with_columns(predicted_uplift=pl.Series(uplift))
    retained = (~scored["churned"]).to_numpy()
    treated = (scored["arm"] == CONTACT).to_numpy()
    return {
        "qini_uplift": qini(retained, treated, uplift),
        "qini_risk": qini(retained, treated, scored["churn_probability"].to_numpy()),
        "uplift_policy": policy_saving(scored, "predicted_uplift", 0.5, offer_cost),
        "risk_policy": policy_saving(scored, "churn_probability", 0.5, offer_cost),
        "rows": scored.height,
    }


def train_uplift(
    context: dg.AssetExecutionContext, config: UpliftConfig, lake, warehouse, registry, spec, scope: DecisionScope
) -> dg.MaterializeResult:
    """Train the uplift model on every matured campaign outcome, log, register, and promote if it ranks better."""
    import mlflow

    name, outcome = scope.uplift_model, spec.outcome
    registry = registry.named(name)
    last_loaded = warehouse.query(f"select max({outcome.snapshot}) from {outcome.relation}").item()
    if last_loaded is None or not lake.exists(scope.campaign_log):
        return _not_trained(context, name, "no campaign outcome has matured yet")
    day = last_loaded + timedelta(days=outcome.horizon_days)
    rows, note = matured_log(lake, warehouse, outcome, day, scope.campaign_log)
    sizes = {arm: rows.filter(pl.col("arm") == arm).height if rows.height else 0 for arm in (CONTACT, HOLDOUT)}
    if min(sizes.values()) < config.min_outcomes_per_arm:
        return _not_trained(
            context,
            name,
            f"{sizes[CONTACT]} contacted and {sizes[HOLDOUT]} holdout outcomes have matured through {last_loaded} "
            f"(at least {config.min_outcomes_per_arm} per arm needed){'; ' + note if note else ''}",
        )
    frame = with_features(rows, warehouse, spec)
    features = list(spec.features)
    validating = holdout_draw(VALIDATION, config.seed, frame["customer_id"].to_numpy()) < config.validation_share
    train, validation = frame.filter(~pl.Series(validating)), frame.filter(pl.Series(validating))
    categories = categories_of(frame, features)
    model, params = fit(train, features, categories, config)
    offer_cost = float(frame["offer_cost"].mean())
    scores = evaluate(validation, model.predict_frame(validation), offer_cost)
    trained_through = frame["ds"].max()

    registry.activate()
    with mlflow.start_run(run_name=f"{name} {context.run_id[:8]}") as run:
        mlflow.log_params({**params, "rounds": config.rounds, "learner": "S-learner from the churn score (LightGBM)"})
        mlflow.log_metrics(
            {"validation_qini_uplift": scores["qini_uplift"], "validation_qini_risk": scores["qini_risk"]}
            | {f"train_rows_{arm}": train.filter(pl.col("arm") == arm).height for arm in (CONTACT, HOLDOUT)}
        )
        mlflow.set_tags(
            {
                "dagster_run_id": context.run_id,
                TRAINED_THROUGH: trained_through.isoformat(),
                "campaign_days": ",".join(str(d) for d in frame["ds"].unique().sort().to_list()),
                "features": ",".join(features),
                "validation": f"customers hashed below {config.validation_share} (seed {config.seed})",
                "validation_share": str(config.validation_share),
                "validation_seed": str(config.seed),
            }
        )
        info = log_booster(model.booster, features, categories, UPLIFT_PYFUNC, name)
        mlflow.log_dict(scores, "validation.json")
    version = str(info.registered_model_version)
    client = registry.activate()
    client.set_registered_model_alias(name, "challenger", version)
    better = scores["qini_uplift"] > scores["qini_risk"]
    reason = (
        f"validation Qini {scores['qini_uplift']:.4f} vs the churn score's {scores['qini_risk']:.4f} on "
        f"{scores['rows']} held-out targeted customers"
    )
    if better:
        registry.promote(version)
    client.set_model_version_tag(name, version, "promotion_reason", ("promoted: " if better else "kept: ") + reason)
    context.log.info(f"{name} v{version}: {reason}; {'promoted' if better else 'not promoted'}")
    return dg.MaterializeResult(
        metadata={
            "status": "trained",
            "model_version": version,
            "promoted": better,
            "promotion_reason": reason,
            "mlflow_run_id": run.info.run_id,
            "model_version_url": dg.MetadataValue.url(registry.version_url(version)),
            "trained_through": trained_through.isoformat(),
            "training_rows": train.height,
            "validation_rows": validation.height,
            "validation_qini_uplift": scores["qini_uplift"],
            "validation_qini_risk": scores["qini_risk"],
            "validation_policies": dg.MetadataValue.json(
                {"uplift": scores["uplift_policy"], "risk": scores["risk_policy"]}
            ),
            "population": "customers the campaigns targeted (both arms); outside it the model extrapolates",
        }
    )


def _not_trained(context, name: str, why: str) -> dg.MaterializeResult:
    context.log.warning(f"{name} not trained: {why}")
    return dg.MaterializeResult(metadata={"status": f"not trained: {why}"})


def champion(registry, name: str, alias: str = "champion"):
    """The uplift model ``name`` holding ``alias`` (its version and model), or None."""
    registry = registry.named(name)
    held = registry.version(alias)
    if held is None:
        return None
    import mlflow

    registry.activate()
    return held, mlflow.pyfunc.load_model(f"models:/{name}/{held.version}").unwrap_python_model()


def predict_uplift(registry, features: pl.DataFrame, name: str, alias: str = "champion") -> tuple[str, pl.DataFrame]:
    """Predicted churn reduction per customer of ``features`` (``customer_id`` keyed, with the day's
    ``churn_probability``) by the uplift model ``name`` holding ``alias``."""
    found = champion(registry, name, alias)
    if found is None:
        raise dg.Failure(
            f"targeting: uplift needs a {name} with alias {alias!r}: materialize its uplift_model once enough "
            "campaign outcomes have matured (or target by risk)"
        )
    held, model = found
    return held.version, features.select("customer_id").with_columns(
        predicted_uplift=pl.Series(model.predict_frame(features), dtype=pl.Float64)
    )


def policy_comparison(rows: pl.DataFrame, warehouse, registry, spec, offer_cost: float, name: str) -> tuple[dict, str]:
    """Uplift against risk targeting on matured campaign customers the champion uplift model ``name`` never trained
    on."""
    found = champion(registry, name)
    if found is None:
        return {}, "not evaluated: no champion uplift model yet"

    held, model = found
    tags = registry.named(name).activate().get_run(held.run_id).data.tags
    through = date.fromisoformat(tags[TRAINED_THROUGH])
    validating = holdout_draw(VALIDATION, int(tags["validation_seed"]), rows["customer_id"].to_numpy())
    unseen = rows.filter((pl.col("ds") > through) | pl.Series(validating < float(tags["validation_share"])))
    if unseen.height == 0:
        return {}, f"not evaluated: no matured customer v{held.version} did not train on"
    frame = with_features(unseen, warehouse, spec)
    sizes = [frame.filter(pl.col("arm") == arm).height for arm in (CONTACT, HOLDOUT)]
    if min(sizes) < 30:
        return (
            {},
            f"not evaluated: only {sizes[0]} contacted and {sizes[1]} holdout customers v{held.version} never saw",
        )
    scores = evaluate(frame, model.predict_frame(frame), offer_cost)
    table = pl.DataFrame(
        [{"policy": name, **scores[f"{name}_policy"], "qini": scores[f"qini_{name}"]} for name in ("uplift", "risk")]
    )
    return scores, (
        f"{name} v{held.version} against the churn score on {scores['rows']} matured targeted customers it never "
        f"trained on (its validation customers, or campaigns after {through}), contacting the top half by each:\n\n"
        + markdown_table(table)
    )
