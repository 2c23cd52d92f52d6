"""churn-dbt stands in for dbt's own process: same output and exit code, signals passed on, and a
dbt that stops when the process that asked for it is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from resources import dbt_forkserver

BIN = Path(sys.executable).parent
PROJECT = Path(__file__).resolve().parents[1] / "dbt_project"
# A query DuckDB needs minutes for: dbt is busy in it when the signal comes.
LONG = "select sum(range) as total from range(1000000000000)"


def _command(executable: str, tmp: Path, *args: str) -> list[str]:
    paths = ["--project-dir", str(PROJECT), "--profiles-dir", str(PROJECT), "--target-path", str(tmp / "target")]
    return [str(BIN / executable), *args, *paths]


def _dbt_of(tmp: Path) -> psutil.Process:
    """The forked dbt working in ``tmp`` (its folder tells it from other tests' dbt commands)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        server = dbt_forkserver.server_pid()
        if server:
            try:  # the server forks a supervisor per command, which forks dbt
                for supervisor in psutil.Process(server).children():
                    for process in supervisor.children():
                        if Path(process.cwd()) == tmp:
                            return process
            except psutil.Error:
                pass
        time.sleep(0.1)
    raise AssertionError("no forked dbt started")


def _querying(dbt: psutil.Process) -> None:
    """Until ``dbt`` has the warehouse open: past its start-up, in the query."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if any(Path(f.path).name == "churn.duckdb" for f in dbt.open_files()):
            time.sleep(0.5)
            return
        time.sleep(0.1)
    raise AssertionError("dbt never opened the warehouse")


def _gone(process: psutil.Process, seconds: float = 15) -> bool:
    try:
        process.wait(timeout=seconds)
    except psutil.TimeoutExpired:
        return False
    return True


@pytest.fixture
def env(home):
    (home / "warehouse").mkdir(parents=True)
    return {**os.environ, "PLATFORM_HOME": str(home)}


def test_a_usage_error_reads_and_exits_as_dbts_own(tmp_path, env):
    runs = [
        subprocess.run(_command(name, tmp_path, "build", "--no-such-flag"), env=env, capture_output=True, text=True)
        for name in ("dbt", "churn-dbt")
    ]
    assert runs[0].returncode == runs[1].returncode == 2
    assert runs[1].stderr == runs[0].stderr and "No such option" in runs[1].stderr
    assert runs[1].stdout == runs[0].stdout


def test_a_signal_to_the_client_reaches_dbt_and_its_end_comes_back(tmp_path, env):
    """A stop sent to the command (dagster-dbt sends SIGINT on a cancelled run, a scheduler SIGTERM) is dbt's:
    dbt ends by it, and the client ends as dbt's own process would have. SIGTERM, whose end does not depend on
    where dbt is (its SIGINT handling waits for a running DuckDB query in some phases, not in others)."""
    client = subprocess.Popen(_command("churn-dbt", tmp_path, "show", "--inline", LONG), cwd=tmp_path, env=env)
    try:
        dbt = _dbt_of(tmp_path)
        _querying(dbt)
        client.send_signal(signal.SIGTERM)
        client.wait(timeout=30)
    finally:
        client.kill()
    assert client.returncode == -signal.SIGTERM
    assert _gone(dbt, 0)


def test_a_killed_client_takes_its_dbt_with_it(tmp_path, env):
    """``kill -9`` of a run's process group reaches only the client: its dbt must not run on, holding the
    warehouse."""
    client = subprocess.Popen(_command("churn-dbt", tmp_path, "show", "--inline", LONG), cwd=tmp_path, env=env)
    try:
        dbt = _dbt_of(tmp_path)
    finally:
        client.kill()
    client.wait(timeout=10)
    assert _gone(dbt), "dbt ran on after its client was killed"


def test_a_command_left_in_an_ending_servers_backlog_is_run_by_the_next_server(tmp_path, env):
    """A server ends (its idle time out, ``stop``) while a client's connection waits in its backlog: the client
    connects again, to a new server, and its command runs as dbt's own would have (it failed before)."""
    usage_error = _command("churn-dbt", tmp_path, "build", "--no-such-flag")
    subprocess.run(usage_error, env=env, capture_output=True, check=False)  # a server is up
    server = dbt_forkserver.server_pid()
    os.kill(server, signal.SIGSTOP)  # it accepts nothing more
    try:
        client = subprocess.Popen(usage_error, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        while not psutil.Process(client.pid).net_connections("unix") and time.monotonic() < deadline:
            time.sleep(0.05)  # until it has connected: its request is in the stopped server's backlog
    finally:
        os.kill(server, signal.SIGKILL)
    _, stderr = client.communicate(timeout=60)
    assert client.returncode == 2 and "No such option" in stderr, stderr
    assert dbt_forkserver.server_pid() not in (None, server)
