"""The Dagster UI as a reader meets it, in headless Chromium, on a materialized graph."""

import json
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import CHECKOUT, demo_env
from tests.test_daemon import _stop

ARTIFACTS = CHECKOUT / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _graphql(url: str, query: str) -> dict:
    request = urllib.request.Request(
        f"{url}/graphql", data=json.dumps({"query": query}).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def _wait_for(url: str, process: subprocess.Popen, seconds: int = 180) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, "dagster dev exited"
        try:
            with urllib.request.urlopen(f"{url}/server_info", timeout=5):
                return
        except OSError:
            time.sleep(2)
    raise TimeoutError(f"{url} did not answer within {seconds} s")


@pytest.fixture(scope="module")
def ui(demo_home):
    """The demo's home (built once for the session), browsed with `dagster dev` on a free loopback port."""
    if not Path(CHROMIUM).exists():
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium); .ci/run installs it")
    home = demo_home[0]
    env = demo_env(home)
    bin_dir = Path(sys.executable).parent
    env["DAGSTER_HOME"] = str(home / "dagster")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    dev = subprocess.Popen(
        [str(bin_dir / "dagster"), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=CHECKOUT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for(url, dev)
        _graphql(url, "mutation { setNuxSeen }")  # the community pop-up would cover the catalog
        yield url
    finally:
        _stop(dev)


@pytest.fixture(scope="module")
def page(ui):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1500, "height": 2600})
        yield page
        browser.close()


def _open(page, url: str, *expected: str | re.Pattern):
    """Open a page and wait until every ``expected`` text or pattern shows in it.

    The UI renders in stages (code location, then runs, then each check's latest evaluation), so reading
    the page as soon as the first text shows can catch a section still empty; expect() retries until then.
    """
    from playwright.sync_api import expect

    page.goto(url)
    body = page.locator("body")
    for text in expected:
        expect(body).to_contain_text(text, use_inner_text=True, timeout=90_000)
    return body.inner_text()


@pytest.mark.slow
def test_the_catalog_lists_every_asset_with_its_group(ui, page):
    text = _open(page, f"{ui}/assets", "feature_drift_report")
    for name in (
        "raw_sessions",
        "stg_sessions",
        "customer_features",
        "training_set",
        "candidate_model",
        "champion_model",
        "churn_predictions",
        "feature_drift_report",
        "model_performance",
        "business_impact",
    ):
        assert name in text, name
    for group in ("raw", "staging", "features", "ml", "predictions", "monitoring"):
        assert f"\n{group}\n" in text, group
    page.screenshot(path=str(ARTIFACTS / "catalog.png"), full_page=True)


@pytest.mark.slow
def test_an_asset_page_shows_its_description_metadata_and_checks(ui, page):
    # the latest evaluation says what it found, before the section that follows it
    found = re.compile(r"Latest execution(?:(?!Evaluation result).)*?(?:no feature drifted|drifted \(PSI)", re.S)
    text = _open(page, f"{ui}/assets/feature_drift_report?view=checks", "Evaluation result", "max_psi", found)
    assert "feature_drift" in text and "Passed" in text
    assert "thresholds" in text and "max_psi" in text  # and its figures against which thresholds
    page.screenshot(path=str(ARTIFACTS / "feature_drift_report_checks.png"), full_page=True)

    # The description renders apart from the metadata: waited for too (a full run once read the page without it).
    description = "LightGBM trained on the dbt model"
    text = _open(page, f"{ui}/assets/candidate_model", "validation_roc_auc", "mlflow_run", description)
    assert description in text and "training_set" in text
    assert "validation_roc_auc" in text and "mlflow_run" in text
    page.screenshot(path=str(ARTIFACTS / "candidate_model.png"), full_page=True)

    text = _open(page, f"{ui}/assets/raw_sessions?view=checks", "Evaluation result", "rows meet the contract")
    assert "contract" in text and "rows meet the contract" in text
    page.screenshot(path=str(ARTIFACTS / "raw_sessions_checks.png"), full_page=True)


@pytest.mark.slow
def test_the_lineage_connects_raw_data_to_the_reports(ui, page):
    _open(page, f"{ui}/asset-groups", "monitoring")
    page.wait_for_timeout(3000)
    page.screenshot(path=str(ARTIFACTS / "lineage.png"), full_page=True)
    lineage = _graphql(
        ui,
        '{ assetNodeOrError(assetKey: {path: ["feature_drift_report"]}) { ... on AssetNode { dependencyKeys { path } } } }',
    )
    parents = {tuple(k["path"]) for k in lineage["data"]["assetNodeOrError"]["dependencyKeys"]}
    assert ("churn_predictions",) in parents and ("customer_features",) in parents
