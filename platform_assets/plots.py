"""Plots for the catalog: small PNGs where a picture says more than a table."""

from __future__ import annotations

import base64
import io
from functools import cache

import dagster as dg
import numpy as np
import polars as pl


@cache
def _pyplot():
    """matplotlib.pyplot on the file-only backend, imported on first use: every process that
    loads the definitions (each CLI command, run worker and code server) would otherwise pay
    about a second for it, while only the runs that draw need it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _figure(width: float = 6.0, height: float = 3.6):
    figure, axes = _pyplot().subplots(figsize=(width, height))
    axes.spines[["top", "right"]].set_visible(False)
    return figure, axes


def feature_importance(importance: pl.DataFrame, top: int = 20):
    shown = importance.head(top).reverse()
    figure, axes = _figure(6.0, 0.28 * shown.height + 1.0)
    axes.barh(shown["feature"].to_list(), shown["gain"].to_numpy(), color="#3b6ea5")
    axes.set_xlabel("total gain")
    axes.set_title("Feature importance")
    return figure


def calibration(table: pl.DataFrame):
    figure, axes = _figure(4.2, 4.0)
    top = max(table["predicted"].max(), table["observed"].max()) * 1.05
    axes.plot([0, top], [0, top], color="#999999", linestyle="--", linewidth=1, label="perfect")
    axes.plot(table["predicted"].to_numpy(), table["observed"].to_numpy(), marker="o", color="#3b6ea5", label="model")
    axes.set_xlabel("predicted churn rate")
    axes.set_ylabel("observed churn rate")
    axes.set_title("Calibration by score decile")
    axes.legend(frameon=False)
    return figure


def score_distribution(scores: np.ndarray, thresholds: list[float] | None = None, title: str = "Churn probability"):
    figure, axes = _figure()
    axes.hist(scores, bins=50, color="#3b6ea5")
    for threshold in thresholds or []:
        axes.axvline(threshold, color="#c0392b", linestyle="--", linewidth=1)
    axes.set_xlabel("churn probability")
    axes.set_ylabel("customers")
    axes.set_title(title)
    return figure


def drift_heatmap(history: pl.DataFrame, row: str, value: str, warn: float, error: float):
    """Drift per feature (rows) and day (columns); cells past the thresholds stand out."""
    table = history.pivot(on="ds", index=row, values=value, aggregate_function="max").sort(row)
    days = sorted(c for c in table.columns if c != row)
    grid = table.select(days).to_numpy().astype(np.float64)
    figure, axes = _figure(max(4.0, 0.25 * len(days) + 3.0), 0.3 * table.height + 1.4)
    image = axes.imshow(grid, aspect="auto", cmap="Reds", vmin=0.0, vmax=max(error * 1.6, np.nanmax(grid, initial=0)))
    axes.set_yticks(range(table.height), table[row].to_list(), fontsize=8)
    step = max(1, len(days) // 8)
    axes.set_xticks(range(0, len(days), step), [str(d)[5:] for d in days[::step]], fontsize=8)
    axes.set_title(f"{value.upper()} per {row} and day (warn {warn}, error {error})")
    figure.colorbar(image, ax=axes, fraction=0.03)
    return figure


def metric_over_time(history: pl.DataFrame, column: str, title: str, lines: list[float] | None = None):
    ordered = history.sort("ds")
    figure, axes = _figure()
    axes.plot(ordered["ds"].to_list(), ordered[column].to_numpy(), marker="o", color="#3b6ea5")
    for line in lines or []:
        axes.axhline(line, color="#c0392b", linestyle="--", linewidth=1)
    axes.set_title(title)
    figure.autofmt_xdate()
    return figure


def png_bytes(figure) -> bytes:
    """The figure as PNG bytes; the figure is closed (matplotlib keeps open ones alive)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(figure)
    return buffer.getvalue()


def as_metadata(png: bytes) -> dg.MetadataValue:
    """A PNG shown inline in the Dagster UI's metadata panel."""
    return dg.MetadataValue.md(f"![plot](data:image/png;base64,{base64.b64encode(png).decode()})")


def effect_over_time(history: pl.DataFrame):
    """The stratified churn difference (contacted - holdout) with its fixed-sample 95% interval, per reporting day."""
    ordered = history.sort("ds")
    figure, axes = _figure()
    middle = ordered["difference"].to_numpy()
    errors = np.vstack([middle - ordered["difference_low"].to_numpy(), ordered["difference_high"].to_numpy() - middle])
    axes.errorbar(ordered["ds"].to_list(), middle, yerr=errors, marker="o", color="#3b6ea5", capsize=3)
    axes.axhline(0.0, color="#c0392b", linestyle="--", linewidth=1)
    axes.set_ylabel("churn difference, contacted - holdout")
    axes.set_title("Campaign effect stratified by campaign, fixed-sample 95% CI")
    figure.autofmt_xdate()
    return figure
