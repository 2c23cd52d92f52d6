"""Uplift benchmark: net saving of uplift targeting against risk targeting at the same budget, by the known truth.

    .venv/bin/python benchmarks/uplift.py --customers 20000 --days 150

Runs the campaign demo's loop in a fresh home (a temp dir, or ``--home``): history, a
churn model, weekly risk-targeted campaigns with a power-sized holdout that the
simulated world reacts to, matured outcomes, ``campaign_impact``, and an uplift model
learned from the campaigns' arms. On the next day both policies pick the same number of
customers from the same predictions; the simulator, which knows every customer's true
effect of contact (sleeping dogs included), values each choice. The last line is one
JSON object: both true net savings, their ratio (goal at least 1.2), the measured
reduction with its interval and the true average effect.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(CHECKOUT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--days", type=int, default=150, help="history before the first campaign")
    parser.add_argument("--campaigns", type=int, default=4)
    parser.add_argument("--every", type=int, default=7)
    parser.add_argument("--contacts", type=int, default=800, help="contacts per campaign day, and the compared budget")
    parser.add_argument("--home", type=Path, default=None)
    args = parser.parse_args()
    home = args.home or Path(tempfile.mkdtemp(prefix="uplift-benchmark-"))
    os.environ.update(
        PLATFORM_HOME=str(home),
        DAGSTER_HOME=str(home / "dagster"),
        PLATFORM_SIM_CUSTOMERS=str(args.customers),
        PLATFORM_SIM_DAYS=str(args.days),
        MLFLOW_DISABLE_TELEMETRY="true",
    )
    from platform_assets.cli import _ready

    _ready()
    from platform_assets.campaign_demo import print_figures, run_campaign_demo

    figures = run_campaign_demo(
        args.customers, args.days, args.campaigns, args.every, args.contacts, lambda text: print(text, flush=True)
    )
    print_figures(figures)
    impact, policies = figures["impact"], figures.get("policies", {})
    risk = policies.get("risk", {}).get("true_net_saving_eur")
    uplift = policies.get("uplift", {}).get("true_net_saving_eur")
    summary = {
        "customers": args.customers,
        "history_days": args.days,
        "campaign_days": figures["campaign_days"],
        "contacts_per_day": args.contacts,
        "measured_reduction": impact.get("absolute_reduction"),
        "measured_reduction_95ci": impact.get("absolute_reduction_95ci"),
        "pooled_reduction": impact.get("pooled_absolute_reduction"),
        "sequential_verdict_look": impact.get("verdict_look"),
        "true_average_reduction": -figures["true_average_effect"],
        "measured_net_saving_eur": impact.get("net_saving_eur"),
        "uplift_model": figures["uplift_model"].get("status"),
        "uplift_promoted": figures["uplift_model"].get("promoted"),
        "compared_uplift_model": policies.get("uplift_model"),
        "budget_contacts": policies.get("risk", {}).get("customers"),
        "risk_true_net_saving_eur": risk,
        "uplift_true_net_saving_eur": uplift,
        "uplift_over_risk": uplift / risk if risk and uplift is not None and risk > 0 else None,
        "seconds": figures["seconds"],
        "home": str(home),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
