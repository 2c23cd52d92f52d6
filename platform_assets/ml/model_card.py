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
    sample: str,
    reference: dict,
    bands,
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
    entity = _described(spec.entity, spec.descriptions.get(spec.entity))
    label = _described(spec.label, spec.descriptions.get(spec.label))
    return f"""# Model card: {model_name} {f"v{version}" if version else ""}

## Purpose
Ranks the rows of `{spec.scoring_relation}`, one per {entity} and snapshot day, by the
predicted probability that {label} is true ({spec.label_horizon_days} days after the snapshot), so
that whoever acts on them can look at the highest risk first.{f" Learned from: {spec.description}" if spec.description else ""}
Scores come with their top reasons and a review flag for uncertain cases. Not for
decisions about individuals without human review.

## Training data
- Training relation: `{spec.training_relation}` ({rows["train"]} training rows, {rows["validation"]} validation rows)
- Rows read: {sample}
- Split: {split.describe()}
- Early stopping on `{spec.entity}` values held out of the training rows
- Lake versions the features were built from: {f"`{data_versions}`" if data_versions else "none (its dbt models read no lake table)"}
- MLflow run: `{run_id}`

## Monitoring reference and risk bands
- Drift reference: {reference["description"]}. A day that is part of it is reported as such, not compared.
- Risk bands: {bands.rule}. High and medium risk and the review band get reasons.

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
| positive rate (`{spec.label}`) | {fmt(metrics["base_rate"])} |

## Calibration (by score decile)
{markdown_table(calibration, 10)}

## Performance by segment
{markdown_table(segments, 40) if segments.height else "_no segment value had enough churners and non-churners_"}

{gap_line}

## Limitations
- Learned from the history in the lake; behaviour that changes (new channels, prices, product usage) degrades it, which the drift and performance checks watch.
- Categories unseen in training are treated as missing.
- Probabilities are calibrated on the validation window; the positive rate of later periods may differ.

## Owner
{OWNER}
"""


def _described(column: str, description: str | None) -> str:
    """A column named with its dbt description, when it has one."""
    text = (description or "").strip().rstrip(".")
    return f"`{column}` ({text})" if text else f"`{column}`"
