"""The audit log: every scored customer, written to a Delta table in micro-batches off the request path.

A request hands its rows to a queue (a few microseconds); one writer thread drains it
every ``flush_seconds`` (or at ``batch_rows``) and appends them to the lake in one
commit, partitioned by request day. Closing the log (the server's shutdown, which
uvicorn runs on SIGTERM) stops the thread and writes what is left, so a clean stop
loses nothing. A crash (SIGKILL, power loss) loses the rows still in memory: at most
the last ``flush_seconds`` of traffic, or ``batch_rows`` rows.

The writer is supervised, and the log is bounded, so no score goes out without its row:

- a failed append is retried (a few attempts with backoff), and rows that still could
  not be written are kept and written with the next micro-batch. A Delta append that
  failed did not commit (its files are not in the log), so writing it again neither loses
  nor duplicates rows; the one exception is a commit that succeeded while its answer was
  lost (an object store timing out after the write), whose rows are then written twice;
- rows the writer cannot even build into a frame (a bug) are dropped, logged and counted
  (``churn_serving_audit_rows_dropped``); they never stop the thread;
- at most ``max_rows`` rows are held in memory (queued, or kept after a failed write).
  A request whose rows do not fit is refused (the API answers 503 with Retry-After) rather
  than answered without its audit; shadow rows that do not fit are dropped and counted;
- ``problem`` says why the log is unhealthy: the writer thread died (counted in
  ``churn_serving_audit_writer_deaths``), or rows have waited longer than
  ``max_unwritten_seconds`` for a write that keeps failing or hangs. ``/readyz`` then
  answers 503 with it, so a load balancer sends traffic elsewhere.

A row answered from precomputed answers (``answers.py``) is not built on the request path:
the request writes a few scalars (its id, the row's position, the answers it read, role,
time, latency, key name) into preallocated columns, and the writer builds those rows whole
per micro-batch, columnar, from the same answers and the snapshot's files (the feature JSON
read by offset). Rows scored live are handed over as columns, as before.

One row per customer and model that scored it: the answer (role ``champion`` or
``canary``) and, when a challenger is live, the other model's silent score of the same
customer (role ``shadow``), so the two can be compared on the same customers.
Lookups store the snapshot version and date with the feature values they read;
what-if requests store the values sent. Each row names the API key its request was
answered for (``api_key_name``), never the key itself.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import polars as pl
from prometheus_client import CollectorRegistry, Counter, Gauge
from tenacity import Retrying, stop_after_attempt, wait_exponential

from platform_assets.ml.scoring import BANDS, reasons_series
from platform_assets.serving.answers import Answers
from platform_assets.serving.scorer import ServedModel
from platform_assets.serving.snapshot import Snapshot
from platform_assets.tables import SERVING_REQUESTS
from resources.lake import Lake

LOG = logging.getLogger("churn_platform.serving")
WRITE_ATTEMPTS = 3  # per micro-batch; rows still unwritten wait for the next one
ROLES = ("champion", "canary", "shadow")
WAKE = object()  # tells the writer that read rows reached a batch


@dataclass(frozen=True, eq=False)
class ReadSource:
    """What a row answered from precomputed answers points into: the snapshot, the version, its answers."""

    snapshot: Snapshot
    model: ServedModel
    answers: Answers


# A read to audit: (request_id, source, role, rows (positions), arrived (ns since the epoch), latency_ms, key name).
Read = tuple[str, ReadSource, str, np.ndarray, int, float, str | None]


class _Reads:
    """Rows answered from precomputed answers, as scalars in preallocated columns, until the writer takes them."""

    def __init__(self, capacity: int):
        self.request_id: list = [None] * capacity
        self.key_name: list = [None] * capacity
        self.source = np.empty(capacity, np.int16)
        self.role = np.empty(capacity, np.int8)
        self.position = np.empty(capacity, np.int64)
        self.arrived = np.empty(capacity, np.int64)
        self.latency = np.empty(capacity, np.float64)
        self.sources: list[ReadSource] = []
        self._codes: dict[int, int] = {}
        self.size = 0

    def add(self, read: Read) -> None:
        request_id, source, role, rows, arrived, latency, key_name = read
        code = self._codes.get(id(source))
        if code is None:
            code = self._codes[id(source)] = len(self.sources)
            self.sources.append(source)
        start, end = self.size, self.size + len(rows)
        self.position[start:end] = rows
        if end - start == 1:
            self.request_id[start], self.key_name[start] = request_id, key_name
        else:
            self.request_id[start:end] = [request_id] * (end - start)
            self.key_name[start:end] = [key_name] * (end - start)
        self.source[start:end], self.role[start:end] = code, ROLES.index(role)
        self.arrived[start:end], self.latency[start:end] = arrived, latency
        self.size = end

    def frames(self) -> list[pl.DataFrame]:
        """The rows as audit frames, one per source, built columnar."""
        frames, n = [], self.size
        for code, source in enumerate(self.sources):
            (rows,) = np.nonzero(self.source[:n] == code)
            if len(rows):
                frames.append(self._frame(source, rows))
        return frames

    def _frame(self, source: ReadSource, rows: np.ndarray) -> pl.DataFrame:
        snapshot, model, at = source.snapshot, source.model, self.position[rows]
        arrays = source.answers.arrays.take(at)
        arrived = pl.Series(self.arrived[rows]).cast(pl.Datetime("ns", "UTC"))
        reasons = (
            reasons_series(arrays.order, arrays.contribution, model.features)
            if arrays.order is not None
            else pl.Series([None] * len(rows), dtype=SERVING_REQUESTS.schema["top_reasons"])
        )
        frame = pl.DataFrame(
            {
                "request_id": [self.request_id[i] for i in rows.tolist()],
                "requested_at": arrived,
                "route": "id",
                "customer_id": pl.Series(snapshot.customer_ids(at)).cast(pl.String),
                "feature_snapshot_version": snapshot.version,
                "feature_snapshot_date": pl.Series(snapshot.days[at]).cast(pl.Date),
                "features": snapshot.features_json(at),
                "model_name": model.name,
                "model_version": model.version,
                "role": pl.Series(np.asarray(ROLES)[self.role[rows]]),
                "status": "ok",
                "error": pl.Series([None] * len(rows), dtype=pl.String),
                "churn_probability": arrays.probability,
                "risk_band": pl.Series(np.asarray(BANDS)[arrays.band]),
                "needs_review": arrays.review,
                "top_reasons": reasons,
                "latency_ms": self.latency[rows],
                "api_key_name": pl.Series([self.key_name[i] for i in rows.tolist()], dtype=pl.String),
                "ds": arrived.dt.date(),
            }
        )
        return SERVING_REQUESTS.conform(frame)

    def clear(self) -> None:
        self.request_id[: self.size] = [None] * self.size  # let the requests' strings go
        self.sources, self._codes, self.size = [], {}, 0


class AuditFull(Exception):
    """The log cannot take a request's rows (full, or its writer dead): the request must not be answered."""


class AuditLog:
    """Collects rows from request threads and writes them in micro-batches from one supervised thread."""

    def __init__(
        self,
        lake: Lake,
        table: str,
        flush_seconds: float,
        batch_rows: int,
        metrics: CollectorRegistry,
        max_rows: int = 100_000,
        max_unwritten_seconds: float = 30.0,
    ):
        self.lake, self.table = lake, table
        self.flush_seconds, self.batch_rows = flush_seconds, batch_rows
        self.max_rows, self.max_unwritten_seconds = max_rows, max_unwritten_seconds
        self._queue: queue.SimpleQueue[dict | threading.Event | object | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._reads, self._taken = _Reads(max_rows), _Reads(max_rows)  # filling, and being written
        self._woken = False
        self._held = 0  # rows queued or kept after a failed write
        self._kept: list[pl.DataFrame] = []  # built, not yet written (the writer's own)
        self._closed = False
        self._died: str | None = None
        self._unwritten_since: float | None = None  # a write is pending since (failing or in progress)
        self._last_error = ""
        self._written = Counter("churn_serving_audit_rows_written", "Audit rows committed to Delta.", registry=metrics)
        self._failed = Counter(
            "churn_serving_audit_write_failures", "Audit append attempts that failed.", registry=metrics
        )
        self._dropped = Counter(
            "churn_serving_audit_rows_dropped",
            "Audit rows lost: malformed, or still unwritten when the log closed.",
            registry=metrics,
        )
        self._refused = Counter(
            "churn_serving_audit_rows_refused",
            "Rows the log refused (full, writer dead, or closed): `answer` rows were not answered (503), "
            "`shadow` rows were dropped.",
            ["kind"],
            registry=metrics,
        )
        self._deaths = Counter("churn_serving_audit_writer_deaths", "Audit writer threads that died.", registry=metrics)
        self._held_gauge = Gauge(
            "churn_serving_audit_rows_held",
            "Audit rows in memory: queued or waiting for a write.",
            registry=metrics,
            multiprocess_mode="livesum",
        )
        self._healthy = Gauge(
            "churn_serving_audit_healthy",
            "1 while the audit log writes (0: /readyz answers 503).",
            registry=metrics,
            multiprocess_mode="livemin",
        )
        self._healthy.set(1)
        self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
        self._thread.start()

    def record(self, *batches: dict[str, list], reads: Sequence[Read] = (), required: bool = True) -> bool:
        """Queue rows given as columns (every list the same length) and rows read from precomputed answers,
        all or none; never blocks.

        A ``required`` request's rows (an answer's) that do not fit raise ``AuditFull``;
        others (a shadow's) are dropped and False returned.
        """
        rows = sum(len(b["request_id"]) for b in batches) + sum(len(read[3]) for read in reads)
        with self._lock:
            refusal = self._refusal(rows)
            if refusal is None:
                self._held += rows
                self._held_gauge.set(self._held)
                for batch in batches:
                    self._queue.put(batch)
                for read in reads:
                    self._reads.add(read)
                if self._reads.size >= self.batch_rows and not self._woken:
                    self._woken = True
                    self._queue.put(WAKE)
                return True
        self._refused.labels("answer" if required else "shadow").inc(rows)
        if required:
            raise AuditFull(refusal)
        return False

    def refusal(self, rows: int = 1) -> str | None:
        """Why ``rows`` more rows would be refused now, or None (a cheap check before scoring)."""
        with self._lock:
            return self._refusal(rows)

    def _refusal(self, rows: int) -> str | None:
        if self._closed:
            return "the audit log is closed (shutting down)"
        if self._died:
            return self._died
        if self._held + rows > self.max_rows:
            behind = f"; writes failing: {self._last_error}" if self._unwritten_since is not None else ""
            return f"the audit log holds {self._held} rows, at most {self.max_rows}{behind}"
        return None

    def observe_health(self) -> None:
        """Set the health gauge from ``problem`` (the writer does it every flush; the server's poller too, so a
        write that hangs shows in every worker's gauge)."""
        self._healthy.set(float(self.problem is None))

    @property
    def problem(self) -> str | None:
        """Why the log is unhealthy (``/readyz`` answers 503 with it), or None."""
        if self._died:
            return self._died
        if not self._thread.is_alive() and not self._closed:
            return "the audit writer thread is not running"
        since = self._unwritten_since
        if since is not None and time.monotonic() - since > self.max_unwritten_seconds:
            error = f"; last error: {self._last_error}" if self._last_error else " (a write in progress)"
            return (
                f"audit rows unwritten for {time.monotonic() - since:.1f} s (bound {self.max_unwritten_seconds:g} s), "
                f"{self._held} rows held{error}"
            )
        return None

    def flush(self) -> bool:
        """Write everything queued until now (with the usual retries); False if the writer is gone."""
        done = threading.Event()
        self._queue.put(done)
        while not done.wait(0.1):
            if not self._thread.is_alive():
                return False
        return not self._kept

    def close(self) -> None:
        """Refuse new rows, write everything queued, then stop the writer."""
        with self._lock:
            self._closed = True
        self._queue.put(None)
        self._thread.join()
        if self._held:
            LOG.error(f"{self._held} audit rows could not be written before the log closed and are lost")
            self._dropped.inc(self._held)

    def _run(self) -> None:
        try:
            self._drain()
        except BaseException as error:  # supervised: say so (/readyz, metrics) instead of dying silently
            self._died = f"the audit writer died: {type(error).__name__}: {error}"
            self._deaths.inc()
            self._healthy.set(0)
            LOG.exception(self._died)

    def _drain(self) -> None:
        pending: list[dict] = []
        rows, deadline, closing = 0, time.monotonic() + self.flush_seconds, False
        while not closing:
            flushes = []
            try:
                item = self._queue.get(timeout=max(deadline - time.monotonic(), 0.0))
                if item is None:
                    closing = True
                elif isinstance(item, threading.Event):
                    flushes.append(item)
                elif item is not WAKE:
                    pending.append(item)
                    rows += len(item["request_id"])
            except queue.Empty:
                pass
            read = self._reads.size
            due = closing or flushes or rows + read >= self.batch_rows or time.monotonic() >= deadline
            if due and (pending or read or self._kept):
                self._write(pending)
                pending, rows = [], 0
            for flushed in flushes:
                flushed.set()
            if time.monotonic() >= deadline:
                deadline = time.monotonic() + self.flush_seconds
            self.observe_health()

    def _write(self, batches: list[dict]) -> None:
        """Append the kept rows, these batches and the rows read so far in one commit; on failure keep them all
        for the next."""
        with self._lock:  # the requests fill the other columns meanwhile
            self._reads, self._taken, self._woken = self._taken, self._reads, False
        built = [(len(b["request_id"]), lambda b=b: [pl.DataFrame(b, schema=SERVING_REQUESTS.schema)]) for b in batches]
        built.append((self._taken.size, self._taken.frames))
        for rows, build in built:
            try:
                self._kept.extend(build())
            except Exception:
                LOG.exception(f"{rows} audit rows could not be built into a frame and are dropped")
                self._dropped.inc(rows)
                self._release(rows)
        self._taken.clear()
        if not self._kept:
            return
        frame = pl.concat(self._kept, how="vertical") if len(self._kept) > 1 else self._kept[0]
        self._kept = [frame]
        if self._unwritten_since is None:
            self._unwritten_since = time.monotonic()
        retrying = Retrying(
            stop=stop_after_attempt(WRITE_ATTEMPTS), wait=wait_exponential(multiplier=0.2, max=2), reraise=True
        )
        try:
            retrying(self._append, frame)
        except Exception as error:
            first = not self._last_error
            self._last_error = f"{type(error).__name__}: {error}"
            (LOG.error if first else LOG.debug)(
                f"audit write of {frame.height} rows to {self.table} failed {WRITE_ATTEMPTS} times; "
                f"kept for the next micro-batch: {self._last_error}"
            )
            return
        if self._last_error:
            LOG.warning(f"audit writes to {self.table} recovered ({frame.height} rows written)")
        self._kept, self._unwritten_since, self._last_error = [], None, ""
        self._written.inc(frame.height)
        self._release(frame.height)

    def _append(self, frame: pl.DataFrame) -> None:
        try:
            self.lake.append(self.table, frame.to_arrow())
        except Exception:
            self._failed.inc()
            raise

    def _release(self, rows: int) -> None:
        with self._lock:
            self._held -= rows
            self._held_gauge.set(self._held)


def now() -> datetime:
    return datetime.now(UTC)
