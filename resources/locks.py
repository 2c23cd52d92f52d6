"""Locks that die with the process holding them, and say who holds them.

A Dagster concurrency-pool slot outlives a killed run and blocks every later run
(docs/design.md, "Crashed runs and pools"). An OS file lock does not: the kernel drops an
``flock`` when its process dies, however it dies. filelock's ``FileLock`` is ``flock``
on Unix and already installed with Dagster; its ``on_acquired`` hook writes the holder
(pid, host, what it does) into the lock file, so a waiter can name whom it waits for.
``preserve_lock_file`` also refuses filelock's fallback to an existence lock on a
filesystem without ``flock``: that lock would outlive a killed holder.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from filelock import FileLock, Timeout


class LockTimeout(TimeoutError):
    """A lock was still held by another process when the wait ran out."""


def holder_of(path: Path) -> str:
    """The note the current holder left in the lock file, or a word saying there is none."""
    try:
        return path.read_text().strip() or "unknown (no note)"
    except FileNotFoundError:
        return "nobody"


@contextmanager
def hold(path: Path, purpose: str, timeout: float, log: logging.Logger | logging.LoggerAdapter) -> Iterator[None]:
    """Hold the OS lock on ``path`` while the block runs, waiting up to ``timeout`` seconds.

    A wait is logged at INFO with the holder's note; running out of time raises
    ``LockTimeout`` naming the file, the holder and the setting that sets the wait.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    note = f"pid {os.getpid()} on {socket.gethostname()} since {datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}: {purpose}\n"
    descriptor: list[int] = []

    def on_acquired(fd: int) -> None:
        descriptor.append(fd)
        _write_note(fd, note)

    lock = FileLock(path, on_acquired=on_acquired, preserve_lock_file=True, thread_local=False)
    try:
        lock.acquire(blocking=False)
    except Timeout:
        log.info(f"Waiting up to {timeout:.0f} s for the lock {path}, held by {holder_of(path)}")
        started = time.monotonic()
        try:
            lock.acquire(timeout=timeout)
        except Timeout:
            raise LockTimeout(
                f"Gave up after {timeout:.0f} s waiting for the lock {path} ({purpose}); it is held by "
                f"{holder_of(path)}. Wait for that process to finish, or raise PLATFORM_LOCK_TIMEOUT_SECONDS."
            ) from None
        log.info(f"Got the lock {path} after {time.monotonic() - started:.1f} s")
    try:
        yield
    finally:
        _write_note(descriptor[0], "")
        lock.release()


def _write_note(fd: int, note: str) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, note.encode(), 0)
