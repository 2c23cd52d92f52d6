"""Answers computed ahead: every customer of a snapshot scored and explained by a version once, off the request path.

When a snapshot or a served version changes, a child process computes the version's answers
for every customer of the snapshot, in batches of the snapshot's typed features (LightGBM on
every core, at nice 10 by default, so the requests keep their cores), straight into memory-mapped numpy
files beside the snapshot's files; the workers then map them for reading. A lookup by id then
reads its row instead of running TreeSHAP. Until they are there (about 1 to 3 minutes at 100,000
customers and 500 trees here, longer for more), the state keeper keeps serving the state before
(``state.py``). A worker's thread (``Precomputer``) starts the child and waits; one process
computes a version's files while the other workers wait on its lock and then map the same
files: workers share one copy, about 40 bytes a customer with 3 reasons, and none of them holds
the computation's memory or competes with it for its GIL. A small snapshot (fewer customers than
``serving_precompute_child_rows``) is computed in that thread itself: milliseconds, where a child
spends seconds importing MLflow and reading the registry before it starts.

The arrays are ``ServedModel.arrays`` of the same rows, so an answer read equals the answer
scored live (tests/test_serving.py compares them on every customer of a snapshot).
"""

from __future__ import annotations

import logging
import os
import queue
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from platform_assets.serving.scorer import ScoreArrays, Scores, ServedModel
from platform_assets.serving.snapshot import (
    BATCH_ROWS,
    Snapshot,
    child_command,
    child_of,
    move_into_place,
    open_laid_out,
)
from resources.locks import hold

LOG = logging.getLogger("churn_platform.serving")
COLUMNS = ("probability", "band", "review", "order", "contribution")  # ScoreArrays' fields, a .npy file each


@dataclass(frozen=True)
class Answers:
    """A version's precomputed scores of every row of a snapshot, memory-mapped."""

    version: str
    arrays: ScoreArrays = field(repr=False)

    def scores(self, rows: np.ndarray, names: list[str]) -> Scores:
        return Scores.of(self.arrays.take(rows), names)


def answers_path(snapshot: Snapshot, model: ServedModel, reasons: int) -> Path:
    return snapshot.path / f"answers-v{model.version}-{model.run_id}-r{reasons}"


def write_answers(path: Path, snapshot: Snapshot, model: ServedModel, reasons: int) -> None:
    """Every row of the snapshot scored by the version (the live path's own arrays), a batch at a time, into
    memory-mapped files of a temporary folder renamed into place."""
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir()
    files: dict[str, np.ndarray] = {}
    for start, batch in zip(range(0, snapshot.rows, BATCH_ROWS), snapshot.batches(), strict=True):
        arrays = model.arrays(model.encode(batch), reasons)
        for name in COLUMNS:
            values = getattr(arrays, name)
            if values is None:
                continue
            values = values.astype(np.uint16) if name == "order" else values  # feature positions: 2 bytes
            if name not in files:
                shape = (snapshot.rows, *values.shape[1:])
                files[name] = np.lib.format.open_memmap(temporary / f"{name}.npy", "w+", values.dtype, shape)
            files[name][start : start + len(values)] = values
    for mapped in files.values():
        mapped.flush()
    move_into_place(temporary, path)


def open_answers(path: Path, version: str) -> Answers:
    def column(name: str) -> np.ndarray | None:
        file = path / f"{name}.npy"
        return np.load(file, mmap_mode="r") if file.exists() else None

    return Answers(version, ScoreArrays(*(column(name) for name in COLUMNS)))


class Precomputer:
    """One thread per worker that precomputes answers files, one at a time, at a lower priority than requests.

    ``answers`` returns a version's answers on a snapshot when this machine has them; ``want``
    queues them, and ``ready`` is called from the thread with each one done. A job whose
    snapshot or version is no longer served when its turn comes is skipped. Answers that
    failed are not tried again by this worker (logged, counted, and told to ``failed``); the
    version is then scored live.

    Jobs are keyed by their answers file, and a job waiting in the queue takes the latest
    ``want`` of its file: when the aliases move away and back while it waits, the served
    model is a new object, and the job must carry that one, not be skipped for the old one
    (it was: a canary then never got its answers). A ``want`` while its file is being
    computed queues the file again; its turn then only maps the file for the new object.
    """

    def __init__(
        self,
        reasons: int,
        lock_timeout: float,
        ready: Callable,
        failures,
        current: Callable,
        child_rows: int = 0,
        failed: Callable = lambda snapshot, model: None,
    ):
        self.reasons, self.lock_timeout, self.ready, self.failures = reasons, lock_timeout, ready, failures
        self.failed = failed  # (snapshot, model): its answers could not be computed
        self.child_rows = child_rows  # snapshots of fewer rows are computed in this thread, not in a child
        self.current = current  # (snapshot, model) -> still served? A job no longer served is skipped
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._waiting: dict[Path, tuple[Snapshot, ServedModel]] = {}  # queued files, each with its latest want
        self._failed: set[Path] = set()
        self._thread = threading.Thread(target=self._run, name="precompute", daemon=True)
        self._thread.start()

    def answers(self, snapshot: Snapshot, model: ServedModel) -> Answers | None:
        """The version's answers on the snapshot if this machine has them."""
        path = answers_path(snapshot, model, self.reasons)
        return open_answers(path, model.version) if path.exists() else None

    def can(self, snapshot: Snapshot, model: ServedModel) -> bool:
        """False when the version's answers on the snapshot failed here before (they are not tried again)."""
        with self._lock:
            return answers_path(snapshot, model, self.reasons) not in self._failed

    def want(self, snapshot: Snapshot, model: ServedModel) -> None:
        """Compute the version's answers on the snapshot (call it once the state serving them is current)."""
        path = answers_path(snapshot, model, self.reasons)
        with self._lock:
            if path in self._failed:
                return
            if path not in self._waiting:
                self._queue.put(path)
            self._waiting[path] = (snapshot, model)

    def stop(self) -> None:
        self._queue.put(None)

    def _run(self) -> None:
        while (path := self._queue.get()) is not None:
            with self._lock:
                snapshot, model = self._waiting.pop(path)
                failed = path in self._failed  # wanted again while its computation failed
            if failed or not self.current(snapshot, model):
                continue
            try:
                self.ready(snapshot, model, self._answers(snapshot, model, path))
            except Exception as error:
                with self._lock:
                    self._failed.add(path)
                self.failures.labels(model.version).inc()
                LOG.exception(
                    f"precomputing v{model.version}'s answers on snapshot v{snapshot.version} failed "
                    f"({type(error).__name__}: {error}); its answers are scored live"
                )
                self.failed(snapshot, model)

    def _answers(self, snapshot: Snapshot, model: ServedModel, path: Path) -> Answers:
        if not path.exists():
            purpose = f"precomputing v{model.version}'s answers on snapshot v{snapshot.version}"
            with hold(path.with_name(path.name + ".lock"), purpose, self.lock_timeout, LOG):
                if not path.exists():
                    in_child = snapshot.rows >= self.child_rows
                    if in_child:
                        arguments = (snapshot.path, snapshot.version, model.name, model.version, self.reasons)
                        command = child_command(__name__, *arguments)
                        done = subprocess.run(command, capture_output=True, text=True, timeout=self.lock_timeout)
                        if done.returncode != 0:
                            raise RuntimeError((done.stderr.strip().splitlines() or ["the child said nothing"])[-1])
                    else:
                        write_answers(path, snapshot, model, self.reasons)
                    where = "in a child" if in_child else "in the worker"
                    LOG.info(f"precomputed v{model.version}'s answers of {snapshot.rows} customers {where}")
        return open_answers(path, model.version)


def main(parent: str, snapshot_path: str, snapshot_version: str, model_name: str, version: str, reasons: str) -> None:
    """The child: load the version from the registry, score every row of the snapshot, write the answers."""
    child_of(parent)
    from resources.model_registry import ModelRegistry
    from resources.settings import settings

    current = settings()
    registry = ModelRegistry(
        tracking_uri=current.tracking_uri, artifact_location=current.artifact_location, model_name=model_name
    )
    model = ServedModel.load(registry, registry.by_number(version))
    snapshot = open_laid_out(Path(snapshot_path), int(snapshot_version))
    write_answers(answers_path(snapshot, model, int(reasons)), snapshot, model, int(reasons))


if __name__ == "__main__":
    sys.modules.setdefault("sklearn", None)  # LightGBM without its scikit-learn wrappers, as in a worker (worker.py)
    main(*sys.argv[1:])
