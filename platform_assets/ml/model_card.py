"""The model card: what a model is for, what it learned from and how well it does."""

from __future__ import annotations

import polars as pl

from platform_assets.metadata import OWNER, markdown_table


def model_card(
    *,
    model_name: str,
    version: str | None,
    run_id: str,
    spec,
    split,
    data_versions: dict,
    metrics: dict[str, float],
    calibration: pl.DataFrame,
    segments: pl.DataFrame,
    gap: dict,
    importance: pl.DataFrame,
    rows: dict[str, int],
) -> str:
    def fmt(value: float) -> str:
        return f"{value:.3f}"

    top = ", ".join(importance.head(5)["feature"].to_list())
    gap_line = (
        f"Largest gap: **{fmt(gap['gap'])}** ROC AUC across `{gap['segment']}` "
        f"(best `{gap['best']}`, worst `{gap['worst']}`)."
        if gap.get("segment")
        else f"Not evaluated: {gap['reason']}."
    )
    return f"""# Model card: {model_name} {f"v{version}" if version else ""}

## Purpose
Ranks active customers by their probability of cancelling within the label horizon after a
snapshot day, so retention teams can contact the most at-risk customers first. Scores come
with their top reasons and a review flag for uncertain cases. Not for decisions about
individuals without human review, and not for pricing.

## Training data
- Training relation: `{spec.training_relation}` ({rows["train"]} training rows, {rows["validation"]} validation rows)
- Split: {split.describe()}
- Early stopping on customers held out of the training days
- Lake versions the features were built from: {f"`{data_versions}`" if data_versions else "none (its dbt models read no lake table)"}
- MLflow run: `{run_id}`

## Features ({len(spec.features)}, declared in dbt)
{", ".join(f"`{f}`" for f in spec.features)}

Most important: {top}.

## Validation metrics (rows never seen in training)
| metric | value |
|---|---|
| ROC AUC | {fmt(metrics["roc_auc"])} |
| PR AUC | {fmt(metrics["pr_auc"])} |
| log loss | {fmt(metrics["log_loss"])} |
| Brier score | {fmt(metrics["brier"])} |
| lift in the top decile | {fmt(metrics["lift_top_decile"])} |
| expected calibration error | {fmt(metrics["calibration_error"])} |
| churn rate | {fmt(metrics["base_rate"])} |

## Calibration (by score decile)
{markdown_table(calibration, 10)}

## Performance by segment
{markdown_table(segments, 40) if segments.height else "_no segment value had enough churners and non-churners_"}

{gap_line}

## Limitations
- Learned from the history in the lake; behaviour that changes (new channels, prices, product usage) degrades it, which the drift and performance checks watch.
- Categories unseen in training (a new acquisition channel) are treated as missing.
- Probabilities are calibrated on the validation window; the churn rate of later periods may differ.

## Owner
{OWNER}
"""
