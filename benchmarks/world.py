"""Benchmark: how fast the simulator generates a business, against a bare baseline.

The baseline draws the same number of customer-days of Poisson session counts and
expands them into session rows with numpy, nothing else: the floor for generating
that many rows. The ratio says how much the realism (hidden state, tickets, offers,
plan changes, churn, string columns) costs on top, on the same machine in the same run.

    .venv/bin/python benchmarks/world.py --customers 1000000 --days 180
"""

import argparse
import time

import numpy as np
from report import finish, ratio_bound  # benchmarks/report.py, beside this script

from simulator.config import SimulatorConfig
from simulator.world import simulate


def baseline(customers: int, days: int, seed: int = 0) -> int:
    rows = 0
    for day in range(days):
        rng = np.random.default_rng([seed, day])
        counts = rng.poisson(0.35, customers)
        who = np.repeat(np.arange(customers), counts)
        minutes = rng.lognormal(3.0, 0.5, len(who))
        rows += minutes.size
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=180)
    args = ratio_bound(parser)

    config = SimulatorConfig(customers=args.customers, days=args.days)
    started = time.perf_counter()
    frames = simulate(config, config.start, config.end)
    simulated = time.perf_counter() - started
    rows = sum(frame.height for frame in frames.values())

    started = time.perf_counter()
    baseline(round(args.customers * 0.85), args.days)
    bare = time.perf_counter() - started

    result = {
        "customers": args.customers,
        "days": args.days,
        "rows": rows,
        "rows_by_table": {name: frame.height for name, frame in frames.items()},
        "simulator_seconds": round(simulated, 2),
        "rows_per_second": round(rows / simulated),
        "baseline_seconds": round(bare, 2),
        "ratio_to_baseline": round(simulated / bare, 2),
    }
    finish(result, "ratio_to_baseline", args.max_ratio)


if __name__ == "__main__":
    main()
