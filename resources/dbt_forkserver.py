"""dbt started from a process that has already imported it (``PLATFORM_DBT_PRELOAD``).

Every dbt command costs about 2.3 s of imports before it reads a file (dbt-core builds its
mashumaro schemas at import), the larger part of a daily build's fixed cost and, in the test
suite's 50 dbt commands, a tenth of its CPU. With the setting on, dagster-dbt starts
``churn-dbt`` instead of ``dbt``: a client that asks a server holding the imports to fork a
child, which runs dbt's own CLI with the client's arguments, environment, working folder and
standard streams. dbt's work is the same; only its start-up is shared.

The client stands in for dbt's process: it forwards SIGINT, SIGTERM and SIGHUP to the child
and exits with its code; a client that dies (``kill -9`` of a run's process group) makes the
child stop too, so a killed run leaves no dbt holding the warehouse. The server listens on an
abstract Unix socket (no file to clean up) named for this Python and this dbt, exits after
``IDLE_SECONDS`` without a request, and is started by the first client that finds none.

Hand-written: ``multiprocessing``'s forkserver preloads modules but runs Python functions
with pickled arguments, not a command with its caller's streams and signals.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

IDLE_SECONDS = 600
PRELOAD = ("dbt.cli.main", "dbt.adapters.duckdb", "dbt.adapters.duckdb.impl", "platform_assets.delta_source")
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def address() -> str:
    """The server's abstract socket: one per Python environment, dbt version and version of the platform's dbt
    plugin (a server holding an edited plugin's old code is not asked again)."""
    plugin = Path(importlib.util.find_spec("platform_assets.delta_source").origin).stat()
    key = f"{sys.executable}|{version('dbt-core')}|{version('dbt-duckdb')}|{plugin.st_mtime_ns}|{plugin.st_size}"
    return "\0churn-dbt-" + hashlib.sha256(key.encode()).hexdigest()[:16]


# --- the client: stands in for the dbt process --------------------------------------------


def main() -> None:
    """``churn-dbt ARGS``: dbt ARGS, run by a child of the preloaded server."""
    dbt: list[int] = []  # its pid, once the server has said it
    early: list[int] = []  # signals that came before

    def forward(signum, _frame):
        if not dbt:
            early.append(signum)
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(dbt[0], signum)

    for signum in FORWARDED:
        signal.signal(signum, forward)
    request = json.dumps({"argv": sys.argv[1:], "cwd": os.getcwd(), "env": dict(os.environ)}).encode()
    for _ in range(3):  # a server that ended (idle, stopped) with this request still in its backlog: the next one
        connection = _connect()
        with contextlib.suppress(OSError):
            socket.send_fds(connection, [len(request).to_bytes(8, "big")], [0, 1, 2])
            connection.sendall(request)
        replies = connection.makefile("r")
        with contextlib.suppress(OSError):
            if pid := replies.readline():
                break
        connection.close()
    else:
        sys.exit("churn-dbt: three dbt servers in a row ended before taking the command")
    dbt.append(int(pid))
    for signum in early:
        forward(signum, None)
    line = replies.readline()
    if not line:
        sys.exit("churn-dbt: the dbt server ended without an exit code")
    code = int(line)
    if code < 0:  # killed by a signal: end the same way, as dbt's own process would have
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    sys.exit(code)


def _connect() -> socket.socket:
    """A connection to the server, starting it when there is none (a second client racing this
    one fails to bind and connects to the first's)."""
    deadline = time.monotonic() + 60
    started = False
    while True:
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            connection.connect(address())
            return connection
        except (ConnectionRefusedError, FileNotFoundError):
            connection.close()
            if time.monotonic() > deadline:
                raise SystemExit("churn-dbt: the preloaded dbt server did not start within 60 s") from None
            if not started:
                subprocess.Popen(
                    [sys.executable, "-m", "resources.dbt_forkserver"],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
                started = True
            time.sleep(0.05)


def server_pid() -> int | None:
    """The running server's pid (the kernel's record of who listens), or None."""
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        connection.connect(address())
    except (ConnectionRefusedError, FileNotFoundError):
        return None
    with connection:
        return struct.unpack("3i", connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))[0]


def stop() -> None:
    """Stop the running server, if any, by its pid; the commands it started run on."""
    pid = server_pid()
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):  # gone already
            process = os.pidfd_open(pid)
            try:
                _end(process)
            finally:
                os.close(process)  # the caller (a test session) lives on


def _end(process: int, grace: float = 5) -> None:
    """SIGTERM to the process of the pidfd ``process``, SIGKILL if it is still there after ``grace`` seconds.
    The pidfd turns readable when the process ends (child or not), so nothing polls, and a pid the
    kernel reused meanwhile is never signalled."""
    with contextlib.suppress(ProcessLookupError):
        signal.pidfd_send_signal(process, signal.SIGTERM)
        if not select.select([process], [], [], grace)[0]:
            signal.pidfd_send_signal(process, signal.SIGKILL)


# --- the server: holds the imports, forks one child per command ----------------------------


def serve() -> None:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(address())
    except OSError:
        return  # another server has it
    for module in PRELOAD:
        __import__(module)
    listener.listen(64)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children reaped by the kernel
    while select.select([listener], [], [], IDLE_SECONDS)[0]:
        connection, _ = listener.accept()
        if os.fork() == 0:
            listener.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            os._exit(_supervise(connection))
        connection.close()


def _supervise(connection: socket.socket) -> int:
    """In a fork: start dbt in a fork of its own, tell the client its pid, pass on the client's
    signals, stop dbt if the client goes away, and send back dbt's exit code."""
    message, fds, _, _ = socket.recv_fds(connection, 8, 3)
    if not message:  # a look at who serves (server_pid), not a command
        return 0
    size, request = int.from_bytes(message, "big"), b""
    while len(request) < size:
        request += connection.recv(size - len(request))
    request = json.loads(request)
    child = os.fork()
    if child == 0:
        connection.close()
        _run_dbt(request, fds)
    for fd in fds:
        os.close(fd)
    connection.sendall(f"{child}\n".encode())
    watch = os.pidfd_open(child)
    while True:
        ready = select.select([connection, watch], [], [])[0]
        if watch in ready:
            code = os.waitstatus_to_exitcode(os.waitpid(child, 0)[1])
            connection.sendall(f"{code}\n".encode())
            return 0
        if not connection.recv(1):  # the client is gone: so is the run that started it
            _end(watch)
            return 0


def _run_dbt(request: dict, fds: list[int]) -> None:
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    for signum in (*FORWARDED, signal.SIGCHLD):
        signal.signal(signum, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.argv = ["dbt", *request["argv"]]
    from dbt.cli.main import cli

    # Its SystemExit (or error) goes up through the server's frames to Python's own shutdown, as dbt's ends.
    cli.main(args=request["argv"], prog_name="dbt")


if __name__ == "__main__":
    serve()
