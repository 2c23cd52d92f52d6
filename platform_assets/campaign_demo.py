"""``churn-platform campaign-demo``: campaigns run, the world reacts, outcomes mature, value is measured.

The default world is built as in ``demo``; then weekly campaigns run on real predictions
(each week: the days since land, their features are built, the campaign day is scored
and the campaign exports its contacts, which the simulator reads for every later day).
Once the label horizon has passed, ``campaign_impact`` measures contacted against
holdout, ``uplift_model`` learns from the arms, and on a fresh day both policies choose
the same number of customers; the simulator, which knows every customer's true effect,
says what each choice is worth. ``benchmarks/uplift.py`` runs the same and prints JSON.
"""

from __future__ import annotations

import time
from datetime import date, timedelta

import polars as pl

from platform_assets.runs import QUIET, range_tags


def _materialize(assets, defs, instance, day: date | None, run_config: dict | None = None):
    import dagster as dg

    result = dg.materialize(
        assets,
        instance=instance,
        resources=defs.resources,
        partition_key=day.isoformat() if day else None,
        run_config={**QUIET, **(run_config or {})},
        raise_on_error=False,
    )
    if not result.success:
        errors = [e.event_specific_data.error.message for e in result.all_events if e.is_step_failure]
        raise RuntimeError(f"materializing {[a.key.to_user_string() for a in assets]} failed: {errors}")
    return result


def _metadata(result, name: str) -> dict:
    import dagster as dg

    event = next(e for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey(name))
    return {k: v.value for k, v in event.event_specific_data.materialization.metadata.items()}


def true_policy_values(defs, day: date, choices: dict[str, pl.DataFrame], offer_cost: float, value_months: float):
    """What each policy's choice on ``day`` is truly worth: the simulator's individual effects of contacting them.

    One replay contacts the union of the choices on ``day`` (on top of every exported
    contact); each customer's true effect is individual (no interference), so each
    policy's worth is the sum over its own customers of effect x value, minus the cost.
    """
    from simulator.treatment import EFFECT_DAYS, read_contacts
    from simulator.world import simulate_windows

    source = defs.resources["source"].simulator
    union = pl.concat([c.select("customer_id") for c in choices.values()]).unique()
    contacts = pl.concat(
        [
            read_contacts(source.contacts_dir).filter(pl.col("contacted_on") < day),
            union.with_columns(contacted_on=pl.lit(day)),
        ]
    )
    truth: list[pl.DataFrame] = []
    last = day + timedelta(days=EFFECT_DAYS)
    list(simulate_windows(source, [(last, last)], contacts=contacts, truth=truth))
    effects = truth[0].filter(pl.col("contacted_on") == day)
    out = {}
    for name, chosen in choices.items():
        joined = chosen.join(effects, on="customer_id", how="left").with_columns(pl.col("effect").fill_null(0.0))
        saved = float((-joined["effect"] * joined["monthly_charge"] * value_months).sum())
        out[name] = {
            "customers": chosen.height,
            "true_reduction": float(-joined["effect"].mean()),
            "true_net_saving_eur": saved - chosen.height * offer_cost,
            "sleeping_dogs": int((joined["segment"] == "sleeping_dog").sum()),
            "persuadables": int((joined["segment"] == "persuadable").sum()),
        }
    return out


def policy_choices(
    defs,
    day: date,
    budget_contacts: int,
    offer_effect: float,
    value_months: float,
    offer_cost: float,
    alias: str = "champion",
):
    """The customers risk and uplift targeting would contact on ``day`` at the same budget (no export, no log)."""
    from platform_assets.decisions.campaign import CampaignConfig, rank_candidates
    from platform_assets.decisions.scope import DecisionScope
    from platform_assets.decisions.uplift import predict_uplift
    from platform_assets.defs.datasets import default, spec_of

    spec, scope = spec_of(default()), DecisionScope.of(default())
    lake, warehouse, registry = defs.resources["lake"], defs.resources["warehouse"], defs.resources["registry"]
    predictions = lake.read_days(scope.predictions, day).rename({spec.entity: "customer_id"})
    features = warehouse.query(f"select * from {spec.scoring_relation} where {spec.snapshot} = ?", [day]).rename(
        {spec.entity: "customer_id"}
    )
    scored = features.join(predictions.select("customer_id", "churn_probability"), on="customer_id")
    version, uplift = predict_uplift(registry, scored, scope.uplift_model, alias)
    candidates = predictions.join(features.select("customer_id", scope.value_column), on="customer_id").join(
        uplift, on="customer_id"
    )
    choices = {}
    for policy in ("risk", "uplift"):
        config = CampaignConfig(
            targeting=policy, offer_effect=offer_effect, value_months=value_months, offer_cost=offer_cost
        )
        # The same budget for both: each policy's top customers by its own ranking, worth it or not by its estimate.
        choices[policy] = rank_candidates(candidates, config, scope.value_column, positive_only=False).head(
            budget_contacts
        )
    return version, choices


def run_campaign_demo(customers: int, history_days: int, campaigns: int, every: int, contacts: int, log) -> dict:
    """The whole loop; returns every figure it prints."""
    import dagster as dg

    from platform_assets.definitions import defs
    from platform_assets.defs.datasets import default
    from platform_assets.defs.decisions.assets import decision_assets
    from platform_assets.defs.features.assets import materialize_features
    from platform_assets.defs.predictions.assets import predictions_asset
    from resources.settings import settings
    from simulator.treatment import EFFECT_DAYS, read_contacts
    from simulator.world import simulate_windows

    decisions = {a.key.to_user_string(): a for a in decision_assets(default())[0]}
    churn_predictions = predictions_asset(default())
    review_decisions, retention_campaign, campaign_impact, uplift_model = (
        decisions[name] for name in ("review_decisions", "retention_campaign", "campaign_impact", "uplift_model")
    )
    start = settings().start_date
    first_campaign = start + timedelta(days=history_days - 1)
    campaign_days = [first_campaign + timedelta(days=every * k) for k in range(campaigns)]
    matured = campaign_days[-1] + timedelta(days=EFFECT_DAYS)
    evaluation = matured + timedelta(days=1)
    campaign = {
        "max_contacts": contacts,
        "daily_budget": contacts * 15.0,
        "planned_contacts": contacts * campaigns,
        "min_detectable_effect": 0.03,
    }
    figures: dict = {"campaign_days": [d.isoformat() for d in campaign_days]}
    started = time.monotonic()
    with dg.DagsterInstance.get() as instance:

        def job(name: str, first: date, last: date):
            tags = range_tags(first, last) if first != last else {}
            result = defs.resolve_job_def(name).execute_in_process(
                instance=instance,
                run_config=QUIET,
                partition_key=first.isoformat() if first == last else None,
                tags=tags,
                raise_on_error=False,
            )
            if not result.success:
                raise RuntimeError(f"{name} {first}..{last} failed")

        def land(first: date, last: date):
            """Days first..last land (the simulator reading every contact so far) and get their features."""
            job("ingest_raw", first, last)
            result = materialize_features(defs.resources, instance, tags=range_tags(first, last), run_config=QUIET)
            if not result.success:
                raise RuntimeError(f"dbt models {first}..{last} failed")

        log(f"History {start}..{first_campaign}, about {customers} customers; training the churn model")
        job("ingest_raw", start, first_campaign)
        job("train_model", start, first_campaign)
        loaded = first_campaign
        for day in campaign_days:
            if day > loaded:
                land(loaded + timedelta(days=1), day)
                loaded = day
            _materialize([churn_predictions], defs, instance, day)
            _materialize([review_decisions], defs, instance, day)
            result = _materialize(
                [retention_campaign], defs, instance, day, {"ops": {"retention_campaign": {"config": campaign}}}
            )
            meta = _metadata(result, "retention_campaign")
            log(
                f"{day}: campaign {meta['campaign']}: {meta['contacted']} contacted, {meta['held_out']} held out "
                f"(holdout share {meta['holdout_share']:.3f} from the power analysis)"
            )
        land(loaded + timedelta(days=1), evaluation)
        impact = _metadata(_materialize([campaign_impact], defs, instance, matured), "campaign_impact")
        figures["impact"] = {k: v for k, v in impact.items() if not str(v).startswith("![")}
        truth: list[pl.DataFrame] = []
        source = defs.resources["source"].simulator
        list(simulate_windows(source, [(matured, matured)], truth=truth))
        contacted = read_contacts(source.contacts_dir)
        figures["true_average_effect"] = float(truth[0]["effect"].mean())
        figures["true_segments"] = (
            truth[0].group_by("segment").agg(pl.len().alias("customers"), pl.col("effect").mean()).sort("segment")
        ).to_dicts()
        figures["contacts_exported"] = contacted.height
        uplift = _metadata(_materialize([uplift_model], defs, instance, None), "uplift_model")
        figures["uplift_model"] = uplift
        if uplift.get("status") == "trained":
            # Not promoted: still compared (as the challenger it is), so the figure is known and labelled.
            alias = "champion" if uplift.get("promoted") else "challenger"
            if alias == "champion":
                again = _metadata(_materialize([campaign_impact], defs, instance, matured), "campaign_impact")
                figures["impact_policies"] = again.get("policies")
            _materialize([churn_predictions], defs, instance, evaluation)
            version, choices = policy_choices(defs, evaluation, contacts, 0.3, 12.0, 15.0, alias)
            figures["policies"] = true_policy_values(defs, evaluation, choices, 15.0, 12.0)
            figures["policies"]["uplift_model"] = f"v{version} ({alias})"
        figures["seconds"] = round(time.monotonic() - started)
    return figures


def print_figures(figures: dict) -> None:
    impact = figures["impact"]
    if "absolute_reduction" in impact:
        low, high = impact["absolute_reduction_95ci"]
        pooled_low, pooled_high = impact["pooled_absolute_reduction_95ci"]
        ratio_low, ratio_high = ("unbounded" if v is None else f"{v:.3f}" for v in impact["odds_ratio_mh_95ci"])
        fraction = impact["information_fraction"]
        fraction = f"{fraction:.2f}" if isinstance(fraction, float) else fraction
        print(
            f"\nMeasured ({impact['contacted_outcomes']} contacted vs {impact['holdout_outcomes']} holdout outcomes):\n"
            f"  pooled over campaigns (not decided on): churn {impact['churn_contacted']:.3f} contacted vs "
            f"{impact['churn_holdout']:.3f} holdout, reduction {impact['pooled_absolute_reduction']:+.4f} "
            f"(95% CI {pooled_low:+.4f}..{pooled_high:+.4f}), p = {impact['pooled_p_value']:.3g}\n"
            f"  stratified by campaign ({len(impact['strata'])} campaigns): reduction "
            f"{impact['absolute_reduction']:+.4f} (95% CI {low:+.4f}..{high:+.4f}), MH odds ratio "
            f"{impact['odds_ratio_mh']:.3f} (95% CI {ratio_low}..{ratio_high}), CMH p = {impact['p_value']:.3g}\n"
            f"  sequential test: look {impact['look']}, information fraction {fraction}, "
            f"alpha {impact['alpha_at_look']:.2g} at this look, {impact['alpha_spent']:.2g} spent; "
            f"declared at look: {impact['verdict_look']}\n"
            f"  customers retained {impact['customers_retained']:.1f}, retained revenue "
            f"{impact['retained_revenue_eur']:,.0f} EUR, offer cost {impact['offer_cost_eur']:,.0f} EUR\n"
            f"  net saving {impact['net_saving_eur']:,.0f} EUR (95% CI {impact['net_saving_eur_low']:,.0f}.."
            f"{impact['net_saving_eur_high']:,.0f}), ROI {impact['roi']:.2f}, annualized "
            f"{impact['annualized_saving_eur']:,.0f} EUR, NPV {impact['npv_eur']:,.0f} EUR"
        )
    else:
        print(f"\nMeasured: {impact.get('figures', impact.get('status'))}")
    print(
        f"Simulator's true average effect on the contacted: {-figures['true_average_effect']:+.4f} "
        f"(churn reduction; {figures['contacts_exported']} contacts)"
    )
    for segment in figures["true_segments"]:
        print(  # the simulator's effect is the change in churn; shown as a reduction, like the line above
            f"  {segment['segment']:<13} {segment['customers']:>6} contacted, true reduction {0.0 - round(segment['effect'], 4):+.4f}"
        )
    uplift = figures["uplift_model"]
    print(
        f"Uplift model: {uplift.get('status')}"
        + (f", {uplift['promotion_reason']}" if "promotion_reason" in uplift else "")
    )
    if figures.get("impact_policies"):
        print(f"campaign_impact, both policies on the holdout: {figures['impact_policies']}")
    policies = figures.get("policies")
    if policies:
        risk, lift = policies["risk"], policies["uplift"]
        ratio = lift["true_net_saving_eur"] / risk["true_net_saving_eur"] if risk["true_net_saving_eur"] > 0 else None
        print(
            f"Same budget ({risk['customers']} contacts; uplift_model {policies['uplift_model']}), "
            "true net saving by the simulator's individual effects:\n"
            f"  risk targeting   {risk['true_net_saving_eur']:>12,.0f} EUR (true reduction {risk['true_reduction']:+.4f}, "
            f"{risk['sleeping_dogs']} sleeping dogs)\n"
            f"  uplift targeting {lift['true_net_saving_eur']:>12,.0f} EUR (true reduction {lift['true_reduction']:+.4f}, "
            f"{lift['sleeping_dogs']} sleeping dogs)\n"
            f"  uplift / risk    {ratio:.2f}x"
            if ratio is not None
            else "  uplift / risk: risk targeting saved nothing"
        )
    print(f"\nDone in {figures['seconds']} s.")


def campaign_demo(args) -> None:
    """The CLI command: a fresh home, the loop, the figures."""
    import json
    import sys

    from resources.settings import platform_home

    home = platform_home()
    if (home / "exports" / "contacts").exists():
        sys.exit(f"campaign-demo needs a fresh PLATFORM_HOME; {home} already has campaigns")
    log_path = home / "campaign-demo.log"
    print(f"Campaign demo in {home} (run logs go to {log_path})", flush=True)
    with log_path.open("a") as out:
        import contextlib

        def say(text: str) -> None:
            print(text, file=sys.__stdout__, flush=True)

        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            figures = run_campaign_demo(args.customers, args.days, args.campaigns, args.every, args.contacts, say)
    print_figures(figures)
    (home / "campaign-demo.json").write_text(json.dumps(figures, default=str, indent=1))


def add_command(commands, settle, world_options) -> None:
    demo = world_options(
        commands.add_parser("campaign-demo", help="campaigns with a holdout, the world reacts, value is measured"),
        days="history before the first campaign",
    )
    demo.add_argument("--campaigns", type=int, default=4, help="campaign days")
    demo.add_argument("--every", type=int, default=7, help="days between campaigns")
    demo.add_argument("--contacts", type=int, default=800, help="contacts per campaign day (the budget)")
    demo.set_defaults(func=lambda a: (settle(a), campaign_demo(a)))
