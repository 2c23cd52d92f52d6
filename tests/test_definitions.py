"""The code location loads, and its graph is one connected, documented lineage."""

import subprocess
import sys
from importlib.metadata import version

import dagster as dg
from packaging.version import Version

from platform_assets.definitions import build_definitions
from platform_assets.defs.raw.assets import raw_key
from platform_assets.partitions import daily_partitions


def test_definitions_load_and_validate(resources):
    defs = build_definitions()
    dg.Definitions.validate_loadable(defs)
    assert {"ingest_raw", "train_model", "score_day"} <= {job.name for job in defs.resolve_all_job_defs()}


def test_one_graph_from_raw_tables_through_dbt(resources):
    graph = build_definitions().resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert {"raw_sessions", "stg_sessions", "customer_features", "training_set"} <= keys
    assert "lake/raw_sessions" not in keys  # dbt sources are the raw assets, not stubs beside them
    upstream = graph.get(dg.AssetKey("training_set")).parent_keys
    seen, frontier = set(), set(upstream)
    while frontier:
        key = frontier.pop()
        seen.add(key)
        frontier |= set(graph.get(key).parent_keys) - seen
    assert {
        raw_key(t) for t in ("customers", "sessions", "support_tickets", "promotions", "plan_changes", "cancellations")
    } <= seen


def test_every_asset_says_what_it_is_who_owns_it_and_where_it_sits(resources):
    graph = build_definitions().resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        name = key.to_user_string()
        assert node.description and len(node.description) > 20, name
        assert node.owners, name
        groups = {"raw", "staging", "features", "ml", "predictions", "monitoring", "serving", "decisions"}
        assert node.group_name in groups, name
        if node.group_name in {"raw", "staging", "features"}:
            assert node.metadata.get("dagster/column_schema") is not None, name


def test_dbt_tests_are_asset_checks_and_contracts_block(resources):
    graph = build_definitions().resolve_asset_graph()
    checks = {(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys}
    assert ("customer_features", "features_use_no_future_data") in checks
    assert ("raw_sessions", "contract") in checks
    contract = graph.get_check_spec(dg.AssetCheckKey(raw_key("sessions"), "contract"))
    assert contract.blocking


def test_the_manifest_is_read_once_per_process(resources):
    from platform_assets.ml import feature_spec
    from resources.dbt import dbt_project

    feature_spec.discover(dbt_project().manifest_path, "training_set", "customer_features")
    before = feature_spec._manifest.cache_info()
    for _ in range(3):
        feature_spec.discover(dbt_project().manifest_path, "training_set", "customer_features")
    after = feature_spec._manifest.cache_info()
    assert after.misses == before.misses and after.hits == before.hits + 3


def test_the_ml_assets_depend_on_the_dbt_models_the_dataset_declares(resources):
    graph = build_definitions().resolve_asset_graph()

    def parents(name: str) -> set[str]:
        return {k.to_user_string() for k in graph.get(dg.AssetKey(name)).parent_keys}

    assert parents("candidate_model") == {"training_set"}
    assert parents("champion_model") == {"candidate_model", "training_set"}
    assert parents("churn_predictions") == {"champion_model", "customer_features"}
    assert parents("feature_drift_report") == {"churn_predictions", "customer_features"}
    assert parents("model_performance") == parents("business_impact") == {"churn_predictions", "churn_outcomes"}
    assert "raw_cancellations" not in parents("model_performance")  # outcomes come from dbt, not the simulator
    train = build_definitions().resolve_job_def("train_model").asset_layer.selected_asset_keys
    assert {dg.AssetKey(k) for k in ("training_set", "churn_outcomes", "candidate_model", "champion_model")} <= train


def test_no_asset_takes_the_dataset_as_run_config(resources):
    """The dataset is declared once, in dbt: no run config repeats the models or the segments."""
    defs = build_definitions()
    for name in (
        "candidate_model",
        "champion_model",
        "churn_predictions",
        "feature_drift_report",
        "prediction_drift_report",
        "model_performance",
        "business_impact",
    ):
        fields = defs.get_assets_def(name).op.config_schema.as_field().config_type.fields
        assert not {"training_model", "scoring_model", "segments"} & set(fields), name


def test_matured_performance_judges_the_predictions_of_one_horizon_before(resources):
    """Day D of model_performance reads the predictions of D - 30 (the label horizon); the built-in
    features are built by day, so its partitions are the daily ones and it stays in the daily jobs."""
    defs = build_definitions()
    graph = defs.resolve_asset_graph()
    performance, predictions = dg.AssetKey("model_performance"), dg.AssetKey("churn_predictions")
    assert graph.get(performance).partitions_def == daily_partitions()
    mapping = graph.get_partition_mapping(performance, predictions)
    assert (mapping.start_offset, mapping.end_offset) == (-30, -30)
    assert performance in defs.resolve_job_def("daily_pipeline").asset_layer.selected_asset_keys
    assert performance in defs.resolve_job_def("score_day").asset_layer.selected_asset_keys


def test_loading_the_definitions_leaves_the_heavy_libraries_to_the_runs_that_use_them(resources):
    """Every CLI command, run worker, code server and daemon loads the definitions; LightGBM, MLflow,
    matplotlib, scikit-learn, scipy.stats and statsmodels (3 to 5 s of the 13 to 15 s it took here) load
    only in the runs that train, draw or test."""
    probe = "import sys, platform_assets.definitions; print(*sorted(set(sys.modules) & set(sys.argv[1:])))"
    heavy = ["lightgbm", "mlflow", "matplotlib", "scipy.stats", "sklearn", "statsmodels"]
    done = subprocess.run([sys.executable, "-c", probe, *heavy], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == []


def test_dbt_runs_without_a_dbt_start_up_to_ask_its_version(resources, monkeypatch):
    """dagster-dbt runs ``dbt --version`` once per resource instance, so once per run: the resource reads
    the installed package instead."""
    import dagster_dbt.core.resource

    from resources.dbt import dbt_resource

    def started(command, *args, **kwargs):
        raise AssertionError(f"started a process: {command}")

    monkeypatch.setattr(dagster_dbt.core.resource, "check_output", started)
    assert dbt_resource()._cli_version == Version(version("dbt-core"))
