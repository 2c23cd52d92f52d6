"""docs/onboarding.md as the tests read it: its two worked examples, each with its own blocks.

The page's first part onboards the Telco extract, its last section (``SECOND``) a weekly
dataset built from an event log. Each test follows one example, so it takes the blocks of
that part only.
"""

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[1]
PAGE = CHECKOUT / "docs" / "onboarding.md"
SECOND = "\n## A second example: weekly snapshots from an event log\n"


def page_blocks(language: str, example: int = 1) -> list[str]:
    """The ```language blocks of one example (1: the Telco extract, 2: the event log)."""
    first, second = PAGE.read_text().split(SECOND)
    return re.findall(rf"```{language}\n(.*?)```", first if example == 1 else second, flags=re.S)


def write_blocks(project: Path, example: int) -> str:
    """Every SQL and YAML block of the example written where its first line says; returns its one bash block."""
    for block in page_blocks("sql", example) + page_blocks("yaml", example):
        path = re.match(r"(?:--|#) ((?:models|seeds)/\S+)\n", block).group(1)
        (project / path).parent.mkdir(parents=True, exist_ok=True)
        (project / path).write_text(block)
    [commands] = page_blocks("bash", example)
    return commands


def run_example(tmp: Path, example: int, seed: Callable[[Path], None] | None = None) -> dict:
    """An example as a new user performs it: its blocks join a copy of the platform's dbt project (after ``seed``
    puts any data file in place), then its bash block runs from the checkout in a fresh home."""
    project = tmp / "dbt_project"
    shutil.copytree(CHECKOUT / "dbt_project", project, ignore=shutil.ignore_patterns("target", "logs"))
    env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "PLATFORM_HOME")}
    env |= {"PLATFORM_HOME": str(tmp / "home"), "PLATFORM_DBT_PROJECT_DIR": str(project)}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    started = time.monotonic()
    if seed:
        seed(project)
    commands = write_blocks(project, example)
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", commands], cwd=CHECKOUT, env=env, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    assert "SupersessionWarning" not in done.stderr, done.stderr[-5000:]  # the documented commands are current
    return {"home": tmp / "home", "env": env, "seconds": time.monotonic() - started}
