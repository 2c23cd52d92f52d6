"""Benchmark: loading the code location as the dbt project grows.

Times a fresh Python process importing ``platform_assets.definitions`` (what every
`dagster dev` reload, run worker and step process does) with the real dbt project,
and with a copy that has 500 generated models more. The baseline is the same import
with the real project, so the figure to watch is the ratio, measured in one run.

    .venv/bin/python benchmarks/definitions_load.py --extra-models 500 --repeat 3
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from report import finish, ratio_bound  # benchmarks/report.py, beside this script

CHECKOUT = Path(__file__).resolve().parents[1]
PROBE = "import time; t = time.perf_counter(); import platform_assets.definitions; print(time.perf_counter() - t)"


def generate_models(project: Path, count: int) -> None:
    """Models that read the features, each documented with five columns, like a real mart."""
    folder = project / "models" / "generated"
    folder.mkdir(parents=True)
    columns = ["customer_id", "snapshot_date", "tenure_days", "sessions_30d", "minutes_30d"]
    docs = ["version: 2", "models:"]
    for n in range(count):
        name = f"generated_model_{n:03d}"
        source = "customer_features" if n % 10 == 0 else f"generated_model_{n - n % 10:03d}"
        (folder / f"{name}.sql").write_text(
            f"select {', '.join(columns)} from {{{{ ref('{source}') }}}} where tenure_days > {n}\n"
        )
        docs += [f"  - name: {name}", f"    description: Generated model {n}.", "    columns:"]
        docs += [f"      - name: {c}\n        description: {c} as in customer_features." for c in columns]
    (folder / "_generated.yml").write_text("\n".join(docs) + "\n")


def load_seconds(env: dict[str, str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        done = subprocess.run([sys.executable, "-c", PROBE], env=env, cwd=CHECKOUT, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(done.stderr[-2000:])
        times.append(float(done.stdout.strip().splitlines()[-1]))
    return statistics.median(times)


def prepare(env: dict[str, str]) -> None:
    subprocess.run(
        [str(Path(sys.executable).parent / "churn-platform"), "prepare"], env=env, check=True, capture_output=True
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--extra-models", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3)
    args = ratio_bound(parser)

    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "PLATFORM_HOME": str(Path(tmp) / "home")}
        env.pop("PLATFORM_DBT_PROJECT_DIR", None)
        prepare(env)
        real = load_seconds(env, args.repeat)

        grown = Path(tmp) / "dbt_project"
        shutil.copytree(CHECKOUT / "dbt_project", grown, ignore=shutil.ignore_patterns("target", "logs"))
        generate_models(grown, args.extra_models)
        grown_env = {**env, "PLATFORM_DBT_PROJECT_DIR": str(grown)}
        prepare(grown_env)
        nodes = len(json.loads((grown / "target" / "manifest.json").read_text())["nodes"])
        extra = load_seconds(grown_env, args.repeat)

    result = {
        "real_project_seconds": round(real, 2),
        "extra_models": args.extra_models,
        "manifest_nodes_with_extra": nodes,
        "with_extra_models_seconds": round(extra, 2),
        "ratio": round(extra / real, 2),
    }
    finish(result, "ratio", args.max_ratio)


if __name__ == "__main__":
    main()
