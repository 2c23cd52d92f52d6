"""Benchmark: the scoring API under fixed request rates, against `mlflow models serve`, bare LightGBM and a bare
ASGI app; and the memory of each worker at 100,000 and 1,000,000 customers, and during a swap.

Trains a champion through the real jobs on a small simulated business (as ``benchmarks/scoring.py``
does, at a small learning rate so it has hundreds of trees) in ``--home`` (a temp folder by
default; an existing home with a champion is reused, so a second run skips the training),
publishes an online store of ``--customers`` customers drawn with replacement from its last day
(new ids), and starts ``churn-platform serve`` on a free loopback port. A bounded open-loop load
generator (asyncio on uvloop + aiohttp, one process, loopback only) sends requests at fixed rates
for ``--seconds`` each; a latency is measured from the moment a request was due, so a server that
falls behind is charged for it (and the generator's own garbage collector is off while it times, so its pauses
are not). Each rate is held when p95 is within the SLA, no request failed,
and at least 95% of the rate was achieved; a ladder stops at the first rate whose p95 passes
``--stop-ms``. Each step also reports the share of a core the load generator itself used, and
the server's CPU time per request (all its processes): what sizing for more traffic multiplies.

Measured in the same run:

- ``bare``: in-process ``booster.predict`` and ``pred_contrib`` on one row, one thread;
- ``bare_asgi_1_worker``, ``bare_asgi_2_workers``: the same load generator against a bare ASGI
  app that answers a constant of the API's size (``bare_asgi.py``) under the same uvicorn: the
  ceiling of this machine with the load generator on the same cores;
- ``api_1_worker``: one customer id per request, with 3 SHAP reasons, audited; precomputed
  answers (the server is measured once every customer's answer is precomputed);
- ``api_batch_100``: 100 customer ids per request (its own SLA, ``--batch-sla-ms``);
- ``api_2_workers``: ``PLATFORM_SERVING_WORKERS=2``, one customer per request;
- ``mlflow_serve``: the same registered model under ``mlflow models serve --env-manager
  local``, one customer's features sent per request, probability only;
- ``memory``: each worker's RSS, PSS (its share of pages mapped by several processes: the
  store's files, the libraries), USS and the file-backed part of RSS, with 2 workers, after
  traffic over random customers, at ``--customers`` and ``--memory-customers`` customers in
  the store, and the peak while a new snapshot of the same size is swapped in (laid out by a
  child process, whose own peak is reported too, then precomputed and mapped);
- ``during_swap.under_load``: the ``--customers`` swap is made under ``--swap-rate`` lookups a
  second: its failed requests and its worst 5-second p95 and p99.

The last line of stdout is one JSON object.

    .venv/bin/python benchmarks/serving.py [--home /tmp/serving-bench]
"""

import argparse
import asyncio
import contextlib
import gc
import json
import math
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start(command: list[str], env: dict, ready_url: str, log: Path, timeout: float = 300) -> subprocess.Popen:
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
    """SIGTERM to the server's own process group, SIGKILL after 30 s."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
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
    used = resource.getrusage(resource.RUSAGE_SELF)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=10)) as session:

        async def one(i: int, due: float) -> None:
            try:
                async with session.post(url, data=bodies[i % len(bodies)], headers=headers) as response:
                    await response.read()
                    statuses[i] = response.status
            except (aiohttp.ClientError, TimeoutError):
                statuses[i] = -1
            latencies[i] = time.perf_counter() - due

        sending, start = [], time.perf_counter()
        for i in range(count):  # each request started when due (creating them all first delayed the first ones)
            due = start + i / rate
            if (delay := due - time.perf_counter()) > 0:
                await asyncio.sleep(delay)
            sending.append(asyncio.create_task(one(i, due)))
        await asyncio.gather(*sending)
        elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = after.ru_utime + after.ru_stime - used.ru_utime - used.ru_stime
    ok = latencies[statuses == 200] * 1000
    return {
        "rate": rate,
        "sent": count,
        "achieved_rate": round(count / elapsed, 1),
        "errors": int((statuses != 200).sum()),
        "p50_ms": round(float(np.percentile(ok, 50)), 2) if ok.size else None,
        "p95_ms": round(float(np.percentile(ok, 95)), 2) if ok.size else None,
        "p99_ms": round(float(np.percentile(ok, 99)), 2) if ok.size else None,
        "load_generator_cpu_share": round(cpu / elapsed, 2),
    }


@contextlib.contextmanager
def no_collector_pauses():
    """The load generator's cyclic garbage collector off while it times requests. A full collection walks every
    object of this process (about 300,000 once the platform is imported: ~150 ms), and each request due during
    it would be charged to the server: a bare ASGI app at 750 req/s showed p99 162 ms with it on, 2.2 ms off.
    Objects are still freed by reference counting; cycles wait for the end of the step."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def run(coroutine):
    """On uvloop when installed (uvicorn[standard] brings it): the load generator's own cost, lowest."""
    try:
        import uvloop
    except ImportError:
        uvloop = None
    with no_collector_pauses():
        return uvloop.run(coroutine) if uvloop else asyncio.run(coroutine)


def kept(step: dict, bound_ms: float) -> bool:
    """A rate is held at a bound: no failed request, p95 within it, 95% of the rate achieved."""
    return bool(
        step["errors"] == 0
        and step["p95_ms"] is not None
        and step["p95_ms"] <= bound_ms
        and step["achieved_rate"] >= 0.95 * step["rate"]
    )


def cpu_seconds(server: subprocess.Popen) -> float:
    """CPU time used so far by a server and every process under it (its workers)."""
    import psutil

    root = psutil.Process(server.pid)
    total = 0.0
    for process in (root, *root.children(recursive=True)):
        with contextlib.suppress(psutil.NoSuchProcess):
            times = process.cpu_times()
            total += times.user + times.system
    return total


def ladder(
    url: str,
    bodies: list[bytes],
    rates: list[float],
    seconds: float,
    sla_ms: float,
    stop_ms: float,
    server: subprocess.Popen,
) -> dict:
    """Step up the rates until one is not held even at ``stop_ms``; the highest rate held within the SLA. Each
    step also reports the server's CPU time per request answered (all its processes): the cost a core pays."""
    run(drive(url, bodies, 50, 2))  # warm the connections and the server
    steps = []
    for rate in rates:
        used = cpu_seconds(server)
        step = run(drive(url, bodies, rate, seconds))
        step["server_cpu_ms_per_request"] = round(1000 * (cpu_seconds(server) - used) / step["sent"], 3)
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


def workers_of(process: subprocess.Popen) -> list:
    """The processes that answer requests: uvicorn's spawned workers, or the server itself with one worker."""
    import psutil

    root = psutil.Process(process.pid)
    spawned = [c for c in root.children(recursive=True) if "spawn_main" in " ".join(c.cmdline())]
    return spawned or [root]


def builders_of(process: subprocess.Popen) -> list:
    """The child processes laying out a new snapshot (``platform_assets.serving.snapshot``), while they run."""
    import psutil

    root = psutil.Process(process.pid)
    return [c for c in root.children(recursive=True) if "platform_assets.serving.snapshot" in " ".join(c.cmdline())]


def memory(processes: list) -> list[dict]:
    """Each process's resident memory: RSS, its anonymous and file-backed parts, PSS and USS (MB)."""
    figures = []
    for process in processes:
        full = process.memory_full_info()
        status = dict(
            line.split(":", 1) for line in Path(f"/proc/{process.pid}/status").read_text().splitlines() if ":" in line
        )
        kib = {name: int(status[name].split()[0]) / 1024 for name in ("RssAnon", "RssFile")}
        figures.append(
            {
                "pid": process.pid,
                "rss_mb": round(full.rss / 2**20, 1),
                "rss_anon_mb": round(kib["RssAnon"], 1),
                "rss_file_mb": round(kib["RssFile"], 1),
                "pss_mb": round(full.pss / 2**20, 1),
                "uss_mb": round(full.uss / 2**20, 1),
            }
        )
    return figures


class PeakMemory:
    """Samples the workers' and the snapshot builders' memory every half second in a thread; the highest RSS and
    PSS seen per process."""

    def __init__(self, server: subprocess.Popen):
        self.server, self.peaks, self._stop = server, {"workers": {}, "snapshot_builders": {}}, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            for kind, processes in (("workers", workers_of), ("snapshot_builders", builders_of)):
                with contextlib.suppress(Exception):  # a process that just ended
                    for sample in memory(processes(self.server)):
                        peaks = self.peaks[kind]
                        peak = peaks.setdefault(sample["pid"], {"pid": sample["pid"], "rss_mb": 0, "pss_mb": 0})
                        peak["rss_mb"] = max(peak["rss_mb"], sample["rss_mb"])
                        peak["pss_mb"] = max(peak["pss_mb"], sample["pss_mb"])

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join()
        return {kind: list(peaks.values()) for kind, peaks in self.peaks.items()}


def ready_everywhere(url: str, condition, timeout: float = 3600, looks: int = 8) -> dict:
    """Wait until ``looks`` readiness answers in a row (fresh connections: any worker) meet ``condition``."""
    import httpx

    deadline, state = time.monotonic() + timeout, {}
    while time.monotonic() < deadline:
        states = []
        for _ in range(looks):
            with contextlib.suppress(httpx.TransportError):
                states.append(httpx.get(f"{url}/readyz", timeout=10).json())
        if len(states) == looks and all(condition(s) for s in states):
            return states[-1]
        state = states[-1] if states else state
        time.sleep(1)
    raise RuntimeError(f"not reached in {timeout} s: {state}")


def rates(text: str) -> list[float]:
    return [float(r) for r in text.split(",")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", help="the benchmark's PLATFORM_HOME (reused when it holds a champion)")
    parser.add_argument("--customers", type=int, default=100_000, help="customers in the online store")
    parser.add_argument("--memory-customers", type=int, default=1_000_000, help="customers of the memory run")
    parser.add_argument("--world-customers", type=int, default=2_000, help="customers of the simulated business")
    parser.add_argument("--world-days", type=int, default=150, help="days of its history")
    parser.add_argument("--learning-rate", type=float, default=0.005, help="small: hundreds of trees")
    parser.add_argument("--seconds", type=float, default=6.0, help="seconds per rate")
    parser.add_argument("--sla-ms", type=float, default=5.0, help="p95 SLA of single-customer requests")
    parser.add_argument("--batch-sla-ms", type=float, default=100.0, help="p95 SLA of 100-customer requests")
    parser.add_argument("--rates", default="100,250,500,750,1000,1250,1500,2000,2500", help="single-customer rates")
    parser.add_argument("--batch-rates", default="10,20,40,80,120", help="100-customer request rates")
    parser.add_argument("--mlflow-rates", default="5,10,25,50,75,100,150,200", help="mlflow models serve rates")
    parser.add_argument(
        "--stop-ms", type=float, default=50.0, help="a ladder stops at the first rate whose p95 passes this"
    )
    parser.add_argument("--swap-rate", type=float, default=500.0, help="lookups a second during the 2-worker swap")
    args = parser.parse_args()
    home = Path(args.home) if args.home else Path(tempfile.mkdtemp(prefix="serving-bench-")) / "home"
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
    from platform_assets.serving.store import online_table, publish_snapshot
    from resources import build_resources
    from resources.model_registry import CHAMPION
    from resources.settings import settings

    resources = build_resources()
    if resources["registry"].version(CHAMPION) is None:
        with contextlib.redirect_stdout(sys.stderr):
            resources, _ = train_champion(args.world_days, args.learning_rate)
    registry, lake, warehouse = resources["registry"], resources["lake"], resources["warehouse"]
    champion = registry.version(CHAMPION)
    model = registry.load(champion.version)
    last = warehouse.query("select max(snapshot_date) as last from customer_features")["last"].item()
    columns = ", ".join(f'"{name}"' for name in ["customer_id", "snapshot_date", *model.features])
    day = warehouse.query(f"select {columns} from customer_features where snapshot_date = ?", [last])
    table = online_table(default())

    def publish(customers: int, seed: int) -> pl.DataFrame:
        store = day.sample(customers, with_replacement=True, seed=seed).with_columns(
            pl.int_range(pl.len()).alias("customer_id")
        )
        publish_snapshot(settings(), lake, table, store)
        return store

    def bodies(customers: int, per_request: int = 1) -> list[bytes]:
        ids = np.random.default_rng(5).integers(0, customers, 20_000).tolist()
        if per_request == 1:
            return [json.dumps({"customer_id": i}).encode() for i in ids]
        return [json.dumps({"customer_ids": ids[k : k + per_request]}).encode() for k in range(0, 20_000, per_request)]

    store = publish(args.customers, 1)
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
    single, batches = bodies(args.customers), bodies(args.customers, 100)
    results: dict = {}

    for workers in (1, 2):  # the machine's ceiling with this load generator
        port = free_port()
        app = [str(BIN / "uvicorn"), "--app-dir", str(Path(__file__).parent), "bare_asgi:app", "--port", str(port)]
        quiet = ["--workers", str(workers), "--log-level", "warning", "--no-access-log"]
        url = f"http://127.0.0.1:{port}"
        bare_app = start([*app, *quiet], server_env, f"{url}/", logs / "bare_asgi.log")
        try:
            key = f"bare_asgi_{workers}_worker{'s' if workers > 1 else ''}"
            results[key] = ladder(url, single, rates(args.rates), args.seconds, args.sla_ms, args.stop_ms, bare_app)
        finally:
            stop(bare_app)

    def serve(workers: int) -> tuple[subprocess.Popen, str]:
        port = free_port()
        command = [str(BIN / "churn-platform"), "serve", "--port", str(port), "--workers", str(workers)]
        url = f"http://127.0.0.1:{port}"
        process = start(command, server_env, f"{url}/readyz", logs / f"api-{workers}.log", timeout=3600)
        started = time.monotonic()
        ready_everywhere(url, lambda s: champion.version in s["precomputed_versions"])
        print(f"  {workers} worker(s) precomputed in {time.monotonic() - started:.0f} s", file=sys.stderr)
        return process, url

    def swap(process: subprocess.Popen, url: str, customers: int, seed: int, rate: float = 0) -> dict:
        """Publish a new snapshot of the same size; each worker's peak memory until its answers are mapped. With
        ``rate``, lookups are sent at that rate from the publication until a worker serves the new snapshot
        from its answers (5 s steps): the latency a swap costs the traffic."""
        import httpx

        peak = PeakMemory(process)
        started = time.monotonic()
        version = lake.version(table) + 1
        publish(customers, seed)

        def swapped(state: dict) -> bool:
            return state["feature_snapshot_version"] == version and champion.version in state["precomputed_versions"]

        steps = []
        while rate and not swapped(httpx.get(f"{url}/readyz", timeout=10).json()):
            steps.append(run(drive(f"{url}/v1/score", single, rate, 5)))
        ready_everywhere(url, swapped)
        figures = {"seconds": round(time.monotonic() - started, 1), "peak": peak.stop()}
        if steps:
            figures["under_load"] = {
                "rate": rate,
                "sent": sum(s["sent"] for s in steps),
                "errors": sum(s["errors"] for s in steps),
                **{  # None when a step had no answered request at all
                    f"worst_step_{q}_ms": max((s[f"{q}_ms"] for s in steps), key=lambda v: math.inf if v is None else v)
                    for q in ("p95", "p99")
                },
                "steps": steps,
            }
        return figures

    api, url = serve(1)
    try:
        score = f"{url}/v1/score"
        results["api_1_worker"] = ladder(score, single, rates(args.rates), args.seconds, args.sla_ms, args.stop_ms, api)
        results["api_batch_100"] = ladder(
            score, batches, rates(args.batch_rates), args.seconds, args.batch_sla_ms, 10 * args.batch_sla_ms, api
        )
    finally:
        stop(api)

    figures: dict = {}
    api, url = serve(2)
    try:
        results["api_2_workers"] = ladder(
            f"{url}/v1/score", single, rates(args.rates), args.seconds, args.sla_ms, args.stop_ms, api
        )
        figures[str(args.customers)] = {"after_traffic": memory(workers_of(api))}
        figures[str(args.customers)]["during_swap"] = swap(api, url, args.customers, 2, args.swap_rate)
    finally:
        stop(api)
    audited = pl.scan_delta(lake.uri("serving/requests")).select(pl.len()).collect().item()

    mlflow_port = free_port()
    mlflow_env = {**server_env, "MLFLOW_TRACKING_URI": registry.tracking_uri}
    features = store.select(model.features).head(5000)
    mlflow_bodies = [
        json.dumps({"dataframe_split": {"columns": model.features, "data": [row]}}).encode() for row in features.rows()
    ]
    served = start(
        [
            *(str(BIN / "mlflow"), "models", "serve", "-m", f"models:/{registry.model_name}@{CHAMPION}"),
            *("--env-manager", "local", "-h", "127.0.0.1", "-p", str(mlflow_port)),
        ],
        mlflow_env,
        f"http://127.0.0.1:{mlflow_port}/ping",
        logs / "mlflow.log",
    )
    try:
        mlflow_url = f"http://127.0.0.1:{mlflow_port}/invocations"
        results["mlflow_serve"] = ladder(
            mlflow_url, mlflow_bodies, rates(args.mlflow_rates), args.seconds, args.sla_ms, args.stop_ms, served
        )
    finally:
        stop(served)

    many = args.memory_customers
    publish(many, 3)
    api, url = serve(2)
    try:
        run(drive(f"{url}/v1/score", bodies(many), 500, 20))  # 10,000 lookups over random customers
        figures[str(many)] = {"after_traffic": memory(workers_of(api))}
        figures[str(many)]["during_swap"] = swap(api, url, many, 4)
        figures[str(many)]["after_swap"] = memory(workers_of(api))
    finally:
        stop(api)

    def held(steps, bound):
        ok = [s for s in steps if kept(s, bound)]
        return max(ok, key=lambda s: s["rate"]) if ok else None

    mlflow_best = held(results["mlflow_serve"]["steps"], args.stop_ms)
    ours = held(results["api_1_worker"]["steps"], mlflow_best["p95_ms"]) if mlflow_best else None
    single_rate = {key: results[key]["highest_rate_held"] for key in results if key != "api_batch_100"}
    summary = {
        "customers_in_store": args.customers,
        "trees": model.booster.num_trees(),
        "features": len(model.features),
        "bare": floor,
        **results,
        "highest_rate_held_within_sla": single_rate,
        "scaling_2_workers_over_1": round(single_rate["api_2_workers"] / max(single_rate["api_1_worker"], 1), 2),
        "memory_mb_per_worker": figures,
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
