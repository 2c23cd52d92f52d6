"""Access control of the scoring API, as a client meets it: a real ``churn-platform serve`` process with API
keys configured, a real MLflow registry and Delta lake in a temp home.

The world is small and built without Dagster (seconds): a LightGBM booster on random data, registered with
the platform's own MLflow model code as the champion, and an online snapshot of 200 customers.
"""

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import httpx
import lightgbm as lgb
import mlflow
import numpy as np
import polars as pl
import pytest

from platform_assets.defs.datasets import default, spec_of
from platform_assets.ml.registration import log_booster, models_from_code
from platform_assets.serving.access import ApiKeys, KeysInvalid, hash_key, new_key, parse_lines
from platform_assets.serving.store import online_table, requests_table
from resources.lake import Lake
from resources.model_registry import CHAMPION, ModelRegistry
from resources.settings import Settings

CHURN_PLATFORM = str(Path(sys.executable).parent / "churn-platform")
SNAPSHOT = date(2026, 4, 20)
ROUTES = [("post", "/v1/score"), ("get", "/readyz"), ("get", "/metrics"), ("get", "/docs"), ("get", "/openapi.json")]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """A temp home with a registered champion and an online snapshot, as the server finds them."""
    home = tmp_path_factory.mktemp("auth") / "home"
    settings = Settings(home=home)
    spec = spec_of(default())
    features = list(spec.features)
    rng = np.random.default_rng(7)
    values = {name: rng.normal(0, 1, 200) for name in features}
    frame = pl.DataFrame({spec.entity: [f"c{i}" for i in range(200)], spec.snapshot: [SNAPSHOT] * 200, **values})
    label = (frame[features[0]] + rng.normal(0, 1, 200) > 0).cast(pl.Int64).to_numpy()
    data = lgb.Dataset(frame.select(features).to_numpy(), label, feature_name=features)
    booster = lgb.train({"objective": "binary", "verbosity": -1, "num_threads": 1, "num_leaves": 4}, data, 5)
    registry = ModelRegistry(
        tracking_uri=settings.tracking_uri,
        artifact_location=settings.artifact_location,
        model_name=default().registered_model,
    )
    registry.activate()
    with mlflow.start_run(run_name="auth test model"):
        mlflow.log_dict({"features": {}}, "reference_profile.json")
        pyfunc = models_from_code("platform_assets.ml.pyfunc_model")
        info = log_booster(booster, features, {}, pyfunc, registry.model_name)
    registry.activate().set_registered_model_alias(registry.model_name, CHAMPION, info.registered_model_version)
    Lake(root=settings.lake).overwrite(online_table(default()), frame.with_columns(ds=pl.lit(SNAPSHOT)))
    return home


class Server:
    """A ``churn-platform serve`` process with its own log, stopped by its PID (SIGTERM)."""

    def __init__(self, home: Path, log: Path, **settings: str):
        self.port, self.log = _free_port(), log
        env = {**os.environ, "PLATFORM_HOME": str(home), "PLATFORM_SERVING_AUDIT_FLUSH_SECONDS": "0.2"}
        env |= {f"PLATFORM_SERVING_{k.upper()}": v for k, v in settings.items()}
        env.pop("DAGSTER_HOME", None)
        self.process = subprocess.Popen(
            [CHURN_PLATFORM, "serve", "--port", str(self.port)],
            env=env,
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
        )
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=30)

    def wait_ready(self, **headers: str) -> "Server":
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"the server exited: {self.log.read_text()[-3000:]}"
            with contextlib.suppress(httpx.TransportError):
                if self.client.get("/readyz", headers=headers).status_code == 200:
                    return self
            time.sleep(0.3)
        raise AssertionError(f"the server was not ready in 120 s: {self.log.read_text()[-3000:]}")

    def call(self, method: str, path: str, headers: dict | None = None) -> httpx.Response:
        body = {"json": {"customer_id": "c1"}} if method == "post" else {}
        return self.client.request(method.upper(), path, headers=headers or {}, **body)

    def stop(self) -> int:
        """SIGTERM; a server still running a minute later is killed (no test leaves one behind) and fails the test."""
        self.client.close()
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
                raise AssertionError(f"the server ignored SIGTERM for 60 s: {self.log.read_text()[-3000:]}") from None
        return self.process.returncode


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """Three keys: ``ops`` in the JSON setting, ``batch`` in the keys file, ``later`` not configured yet."""
    folder = tmp_path_factory.mktemp("keys")
    made = {name: new_key() for name in ("ops", "batch", "later")}
    keys_file = folder / "api_keys"
    keys_file.write_text(f"# scoring API keys\nbatch {hash_key(made['batch'])}\n")
    return made, keys_file


@pytest.fixture(scope="module")
def server(home, keys, tmp_path_factory):
    made, keys_file = keys
    log = tmp_path_factory.mktemp("logs") / "server.log"
    running = Server(
        home,
        log,
        api_keys=json.dumps({"ops": hash_key(made["ops"])}),
        api_keys_file=str(keys_file),
    ).wait_ready(authorization=f"Bearer {made['ops']}")
    yield running
    running.stop()


def _bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def test_every_route_but_healthz_needs_a_key_401_without_403_wrong_200_right(server, keys):
    made, _ = keys
    assert server.call("get", "/healthz").json() == {"status": "ok"}
    for method, path in ROUTES:
        missing = server.call(method, path)
        assert missing.status_code == 401, (path, missing.text)
        assert "API key is required" in missing.json()["detail"] and missing.headers["www-authenticate"]
        for wrong in (_bearer(made["later"]), {"X-API-Key": "not-a-key"}, {"Authorization": f"Basic {made['ops']}"}):
            refused = server.call(method, path, wrong)
            expected = 401 if wrong.get("Authorization", "").startswith("Basic") else 403  # not a bearer: no key
            assert refused.status_code == expected, (path, wrong, refused.text)
            assert refused.json()["detail"]
        for right in (_bearer(made["ops"]), {"X-API-Key": made["batch"]}):
            answered = server.call(method, path, right)
            assert answered.status_code == 200, (path, answered.text)
    scored = server.call("post", "/v1/score", {"X-API-Key": made["ops"]}).json()["results"][0]
    assert scored["customer_id"] == "c1" and 0 <= scored["churn_probability"] <= 1
    metrics = server.call("get", "/metrics", _bearer(made["ops"])).text
    assert 'churn_serving_auth_refused_total{status="401"}' in metrics
    assert 'churn_serving_auth_refused_total{status="403"}' in metrics
    schema = server.call("get", "/openapi.json", _bearer(made["ops"])).json()
    assert {"bearer", "apiKey"} <= set(schema["components"]["securitySchemes"])
    assert {"401", "403"} <= set(schema["paths"]["/v1/score"]["post"]["responses"])


def test_keys_rotate_through_the_file_without_a_restart(server, keys):
    made, keys_file = keys
    assert server.call("post", "/v1/score", _bearer(made["later"])).status_code == 403
    keys_file.write_text(f"batch {hash_key(made['batch'])}\nlater {hash_key(made['later'])}\n")
    assert server.call("post", "/v1/score", _bearer(made["later"])).status_code == 200  # the very next request
    keys_file.write_text(f"later {hash_key(made['later'])}\n")  # batch revoked
    assert server.call("post", "/v1/score", {"X-API-Key": made["batch"]}).status_code == 403
    assert server.call("post", "/v1/score", _bearer(made["later"])).status_code == 200
    keys_file.write_text("later not-a-hash\n")  # a bad edit keeps the last good keys
    assert server.call("post", "/v1/score", _bearer(made["later"])).status_code == 200
    assert server.call("post", "/v1/score", {"X-API-Key": made["batch"]}).status_code == 403
    assert server.call("post", "/v1/score", _bearer(made["ops"])).status_code == 200  # the setting's key stays
    keys_file.write_text(f"batch {hash_key(made['batch'])}\nlater {hash_key(made['later'])}\n")
    assert server.call("post", "/v1/score", {"X-API-Key": made["batch"]}).status_code == 200
    assert server.process.poll() is None  # one process throughout: no restart


def test_the_audit_names_the_key_and_no_log_or_audit_row_holds_a_key_or_its_hash(server, keys, home):
    made, _ = keys
    for name in ("ops", "later"):
        assert server.call("post", "/v1/score", _bearer(made[name])).status_code == 200
    assert server.stop() in (0, -signal.SIGTERM)  # SIGTERM writes every audit row (uvicorn may re-raise it)
    assert "audit log flushed" in server.log.read_text()
    rows = pl.read_delta(Lake(root=Settings(home=home).lake).uri(requests_table(default())))
    assert rows.height > 0 and rows["api_key_name"].null_count() == 0
    assert {"ops", "later", "batch"} <= set(rows["api_key_name"])
    everything = rows.write_ndjson() + server.log.read_text()
    assert "later" in server.log.read_text()  # the reload said which names it holds
    for key in made.values():
        secret_hash = hash_key(key)
        assert key not in everything and secret_hash not in everything and secret_hash[7:] not in everything


def test_keyless_on_loopback_says_so_and_a_keyless_public_bind_is_refused(home, tmp_path):
    refused = subprocess.run(
        [CHURN_PLATFORM, "serve", "--host", "0.0.0.0", "--port", str(_free_port())],
        env={**os.environ, "PLATFORM_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode != 0
    assert "refusing to serve 0.0.0.0" in refused.stderr and "PLATFORM_SERVING_ALLOW_KEYLESS_REMOTE" in refused.stderr
    keyless = Server(home, tmp_path / "keyless.log")  # scoring keyless is what tests/test_serving.py does
    said = f"no API keys configured: every process that reaches 127.0.0.1:{keyless.port} can score"
    deadline = time.monotonic() + 120
    try:
        while said not in keyless.log.read_text():
            assert keyless.process.poll() is None and time.monotonic() < deadline, keyless.log.read_text()[-3000:]
            time.sleep(0.2)
        keyless.wait_ready()  # then stopped as every other server here is, once serving
    finally:
        keyless.stop()


def test_a_key_configured_in_clear_is_refused_without_repeating_it():
    key = new_key()
    for named, path in (({"ops": key}, None), ({}, Path("/nonexistent/api_keys"))):
        with pytest.raises(KeysInvalid) as refused:
            ApiKeys(named, path)
        assert key not in str(refused.value)
    with pytest.raises(KeysInvalid, match="line 2: expected"):
        parse_lines(f"ops {hash_key(key)}\n{key}\n", "keys")
    assert parse_lines(f"ops {hash_key(key)}  # rotated 2026-12\n", "keys") == {hash_key(key): "ops"}
