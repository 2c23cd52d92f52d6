"""Benchmark: the scoring API under fixed request rates, against `mlflow models serve` and bare LightGBM.

Trains a champion through the real jobs on a small simulated business in a temp home
(as ``benchmarks/scoring.py`` does, at a small learning rate so it has hundreds of
trees), publishes an online store of ``--customers`` customers drawn with replacement
from its last day (new ids), and starts ``churn-platform serve`` on a free loopback
port. A bounded open-loop load generator (asyncio + aiohttp, one process, loopback
only) sends requests at fixed rates for ``--seconds`` each; a latency is measured from
the moment a request was due, so a server that falls behind is charged for it. Each
rate is held when p95 is within the SLA, no request failed, and at least 95% of the
rate was achieved; the ladder stops at the first rate not held.

Measured in the same run:

- ``api_single``: one customer id per request; the API looks it up, scores it, explains
  it (top 3 SHAP reasons) and audits it;
- ``api_batch``: 100 customer ids per request (its own SLA, ``--batch-sla-ms``);
- ``mlflow_serve``: the same registered model under ``mlflow models serve --env-manager
  local``, one customer's features sent per request, probability only;
- ``bare``: in-process ``booster.predict`` and ``pred_contrib`` on one row, one thread.

The client shares the 2 cores with the server, so figures are a floor of what the
server does alone. The last line of stdout is one JSON object.

    .venv/bin/python benchmarks/serving.py
"""

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start(command: list[str], env: dict, ready_url: str, log: Path, timeout: float = 180) -> subprocess.Popen:
    """A server in its own process group (so ``stop`` reaches what it execs or forks), ready."""
    import httpx

    process = subprocess.Popen(
        command, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{command[0]} exited: {log.read_text()[-2000:]}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(ready_url, timeout=2).status_code == 200:
                return process
        time.sleep(0.5)
    stop(process)
    raise RuntimeError(f"{command} not ready in {timeout} s: {log.read_text()[-2000:]}")


def stop(process: subprocess.Popen) -> None:
    """SIGTERM to the server's own process group, SIGKILL after 20 s."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


async def drive(url: str, bodies: list[bytes], rate: float, seconds: float, limit: int = 256) -> dict:
    """Send ``rate`` requests a second for ``seconds`` (open loop, at most ``limit`` in flight)."""
    import aiohttp

    count = max(1, int(rate * seconds))
    latencies, statuses = np.full(count, np.nan), np.zeros(count, dtype=np.int64)
    headers = {"content-type": "application/json"}
    connector = aiohttp.TCPConnector(limit=limit)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=10)) as session:
        start = time.perf_counter()

        async def one(i: int) -> None:
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            try:
                async with session.post(url, data=bodies[i % len(bodies)], headers=headers) as response:
                    await response.read()
                    statuses[i] = response.status
            except (aiohttp.ClientError, TimeoutError):
                statuses[i] = -1
            latencies[i] = time.perf_counter() - due

        await asyncio.gather(*(one(i) for i in range(count)))
        elapsed = time.perf_counter() - start
    ok = latencies[statuses == 200] * 1000
    return {
        "rate": rate,
        "sent": count,
        "achieved_rate": round(count / elapsed, 1),
        "errors": int((statuses != 200).sum()),
        "p50_ms": round(float(np.percentile(ok, 50)), 2) if ok.size else None,
        "p95_ms": round(float(np.percentile(ok, 95)), 2) if ok.size else None,
        "p99_ms": round(float(np.percentile(ok, 99)), 2) if ok.size else None,
    }


def kept(step: dict, bound_ms: float) -> bool:
    """A rate is held at a bound: no failed request, p95 within it, 95% of the rate achieved."""
    return bool(
        step["errors"] == 0
        and step["p95_ms"] is not None
        and step["p95_ms"] <= bound_ms
        and step["achieved_rate"] >= 0.95 * step["rate"]
    )


def ladder(url: str, bodies: list[bytes], rates: list[float], seconds: float, sla_ms: float, stop_ms: float) -> dict:
    """Step up the rates until one is not held even at ``stop_ms``; the highest rate held within the SLA."""
    asyncio.run(drive(url, bodies, 50, 2))  # warm the connections and the server
    steps = []
    for rate in rates:
        step = asyncio.run(drive(url, bodies, rate, seconds))
        step["within_sla"] = kept(step, sla_ms)
        steps.append(step)
        print(f"  {url} {json.dumps(step)}", file=sys.stderr, flush=True)
        if not kept(step, stop_ms):
            break
    held = [s["rate"] for s in steps if s["within_sla"]]
    return {"sla_ms": sla_ms, "highest_rate_held": max(held) if held else 0, "steps": steps}


def bare(model, matrix: np.ndarray, rows: int = 2000) -> dict:
    """In-process one-row LightGBM calls, one thread: the floor under any server."""
    rng = np.random.default_rng(3)
    picks = rng.integers(0, matrix.shape[0], rows)
    figures = {}
    for name, kwargs in (("predict", {}), ("pred_contrib", {"pred_contrib": True})):
        times = np.empty(rows)
        for n, i in enumerate(picks):
            started = time.perf_counter()
            model.booster.predict(matrix[i : i + 1], num_threads=1, **kwargs)
            times[n] = time.perf_counter() - started
        figures[name] = {
            q: round(float(np.percentile(times * 1e6, p)), 1)
            for q, p in (("p50_us", 50), ("p95_us", 95), ("p99_us", 99))
        }
    return figures


def rates(text: str) -> list[float]:
    return [float(r) for r in text.split(",")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000, help="customers in the online store")
    parser.add_argument("--world-customers", type=int, default=2_000, help="customers of the simulated business")
    parser.add_argument("--world-days", type=int, default=150, help="days of its history")
    parser.add_argument("--learning-rate", type=float, default=0.005, help="small: hundreds of trees")
    parser.add_argument("--seconds", type=float, default=6.0, help="seconds per rate")
    parser.add_argument("--sla-ms", type=float, default=5.0, help="p95 SLA of single-customer requests")
    parser.add_argument("--batch-sla-ms", type=float, default=100.0, help="p95 SLA of 100-customer requests")
    parser.add_argument("--rates", default="100,250,500,750,1000,1500,2000", help="single-customer rates")
    parser.add_argument("--batch-rates", default="5,10,20,40,80", help="100-customer request rates")
    parser.add_argument("--mlflow-rates", default="25,50,100,150,200,300,500", help="mlflow models serve rates")
    parser.add_argument(
        "--stop-ms", type=float, default=50.0, help="a ladder stops at the first rate whose p95 passes this"
    )
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="serving-bench-")) / "home"
    env = {
        "PLATFORM_HOME": str(home),
        "PLATFORM_SIM_CUSTOMERS": str(args.world_customers),
        "PLATFORM_SIM_DAYS": str(args.world_days),
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    os.environ.update(env)
    os.environ.pop("DAGSTER_HOME", None)
    sys.path.insert(0, str(Path(__file__).parent))
    import polars as pl
    from scoring import train_champion

    from platform_assets.defs.datasets import default
    from platform_assets.serving.store import online_table
    from resources.model_registry import CHAMPION

    with contextlib.redirect_stdout(sys.stderr):
        resources, last = train_champion(args.world_days, args.learning_rate)
    registry, lake = resources["registry"], resources["lake"]
    champion = registry.version(CHAMPION)
    model = registry.load(champion.version)
    columns = ", ".join(f'"{name}"' for name in ["customer_id", "snapshot_date", *model.features])
    day = resources["warehouse"].query(f"select {columns} from customer_features where snapshot_date = ?", [last])
    store = day.sample(args.customers, with_replacement=True, seed=1).with_columns(
        pl.int_range(pl.len()).alias("customer_id")
    )
    lake.overwrite(online_table(default()), store)
    rng = np.random.default_rng(5)
    ids = rng.integers(0, args.customers, 20_000).tolist()
    single = [json.dumps({"customer_id": i}).encode() for i in ids]
    batches = [json.dumps({"customer_ids": ids[k : k + 100]}).encode() for k in range(0, 20_000, 100)]
    features = store.select(model.features).head(20_000)
    mlflow_bodies = [
        json.dumps({"dataframe_split": {"columns": model.features, "data": [row]}}).encode()
        for row in features.head(5000).rows()
    ]
    floor = bare(model, model.matrix(store.head(20_000)))
    print(f"bare LightGBM, one row, one thread: {json.dumps(floor)}", file=sys.stderr, flush=True)

    logs = home / "bench-logs"
    logs.mkdir(parents=True, exist_ok=True)
    server_env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "PLATFORM_SERVING_CHALLENGER_MODE": "off",
        "PLATFORM_SERVING_MAX_IN_FLIGHT": "256",
    }
    port = free_port()
    api = start(
        [str(BIN / "churn-platform"), "serve", "--port", str(port)],
        server_env,
        f"http://127.0.0.1:{port}/readyz",
        logs / "api.log",
    )
    try:
        url = f"http://127.0.0.1:{port}/v1/score"
        results = {
            "api_single": ladder(url, single, rates(args.rates), args.seconds, args.sla_ms, args.stop_ms),
            "api_batch_100": ladder(
                url, batches, rates(args.batch_rates), args.seconds, args.batch_sla_ms, 10 * args.batch_sla_ms
            ),
        }
    finally:
        stop(api)
    audited = pl.read_delta(lake.uri("serving/requests")).height if lake.exists("serving/requests") else 0

    mlflow_port = free_port()
    mlflow_env = {**server_env, "MLFLOW_TRACKING_URI": registry.tracking_uri}
    served = start(
        [
            str(BIN / "mlflow"),
            "models",
            "serve",
            "-m",
            f"models:/{registry.model_name}@{CHAMPION}",
            "--env-manager",
            "local",
            "-h",
            "127.0.0.1",
            "-p",
            str(mlflow_port),
        ],
        mlflow_env,
        f"http://127.0.0.1:{mlflow_port}/ping",
        logs / "mlflow.log",
    )
    try:
        mlflow_url = f"http://127.0.0.1:{mlflow_port}/invocations"
        results["mlflow_serve"] = ladder(
            mlflow_url, mlflow_bodies, rates(args.mlflow_rates), args.seconds, args.sla_ms, args.stop_ms
        )
    finally:
        stop(served)

    def held(steps, bound):
        ok = [s for s in steps if kept(s, bound)]
        return max(ok, key=lambda s: s["rate"]) if ok else None

    mlflow_best = held(results["mlflow_serve"]["steps"], args.stop_ms)
    ours = held(results["api_single"]["steps"], mlflow_best["p95_ms"]) if mlflow_best else None
    summary = {
        "customers_in_store": args.customers,
        "trees": model.booster.num_trees(),
        "features": len(model.features),
        "bare": floor,
        **results,
        "audit_rows_written": audited,
        "mlflow_best": mlflow_best,
        "api_best_at_mlflow_p95": ours,
        "throughput_ratio_at_equal_or_lower_p95": round(ours["rate"] / mlflow_best["rate"], 2)
        if ours and mlflow_best
        else None,
        "cpu_count": os.cpu_count(),
        "load_average_at_end": os.getloadavg()[0],
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
