"""How a scoring request is answered: by id (read or scored), by values (scored), audited, shadowed.

A request takes the serving state once (``state.py``). A customer whose answering version
has precomputed answers on the snapshot (``answers.py``) is answered by a read: its row of
the answers, no model call; a request made only of such reads runs on the event loop and
records its audit as a few scalars (``audit.py``). Anything else is scored live, on a
thread of the pool, so LightGBM (which releases the GIL) runs beside the loop: what-if
values, and lookups while a version's answers are being precomputed after a swap.

With a live challenger each answered customer is scored by the other version too, off the
response path: its precomputed answer if it has one (recorded at once, as a read), or a
live scoring on the shadow thread (``ShadowScorer``).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import queue
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial

import numpy as np
import orjson
import polars as pl
import pydantic
from fastapi import HTTPException
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel

from platform_assets.serving.audit import AuditFull, AuditLog, Read
from platform_assets.serving.inputs import ScoreRequest, bounds_message, what_if_model
from platform_assets.serving.metrics import Metrics
from platform_assets.serving.scorer import Scores, ServedModel
from platform_assets.serving.snapshot import Snapshot
from platform_assets.serving.state import ServingState, StateKeeper, canary_bucket

LOG = logging.getLogger("churn_platform.serving")
SCORE_ROUTE = "/v1/score"


class InvalidFeatures(RequestValidationError):
    """A 422 raised while scoring (what-if values, batch size), counted where it is raised."""


class ShadowScorer:
    """Scores answered rows again with the other version, on one thread of its own, into the audit only.

    A bounded queue: when the shadow model cannot keep up, shadow scorings are dropped
    (and counted), never the answers. A job is ``(model, features, rows, shared_seconds)``:
    ``features()`` gives the feature values (read on this thread), ``rows`` the audit columns
    of the answer, and the request's shared time before scoring.
    """

    def __init__(self, audit: AuditLog, reasons: int, metrics: Metrics, capacity: int = 1000):
        self.audit, self.reasons, self.metrics = audit, reasons, metrics
        self._queue: queue.Queue = queue.Queue(maxsize=capacity)
        self._deadline: float | None = None  # set on close: jobs still queued after it are dropped
        self._thread = threading.Thread(target=self._run, name="shadow-scorer", daemon=True)
        self._thread.start()

    def submit(self, job: tuple) -> None:
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            self.metrics.shadow_dropped.inc()

    def close(self, seconds: float) -> None:
        """Score what is queued for at most ``seconds`` more, drop the rest; a job stuck past it is abandoned."""
        self._deadline = time.monotonic() + seconds
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=seconds)
        self._thread.join(timeout=max(self._deadline - time.monotonic(), 0.0) + 1.0)
        if self._thread.is_alive():
            LOG.warning(f"a shadow scoring was still running {seconds:g} s into shutdown: abandoned, not audited")

    def _run(self) -> None:
        while True:
            try:  # once closing, an empty queue ends the thread even if the end marker found it full
                job = self._queue.get(timeout=None if self._deadline is None else 0.1)
            except queue.Empty:
                return
            if job is None:
                return
            if self._deadline is not None and time.monotonic() > self._deadline:
                self.metrics.shadow_dropped.inc()
                continue
            model, features, rows, shared = job
            started = time.perf_counter()
            try:
                scores, error = model.score(model.encode(features()), self.reasons), None
            except Exception as failure:
                scores, error = None, f"{type(failure).__name__}: {failure}"
            seconds = shared + time.perf_counter() - started
            n = len(rows["request_id"])
            rows = rows | {"model_version": [model.version] * n, "role": ["shadow"] * n}
            if self.audit.record(_audit_rows(rows, scores, error, seconds * 1000), required=False):
                self.metrics.scored.labels(model.version, "shadow", "live").inc(n)
            else:
                self.metrics.shadow_dropped.inc()


@dataclass
class _Request:
    """One scoring request's identity, its timings, and what it records once answered."""

    id: str
    arrived: int  # ns since the epoch
    started: float
    api_key_name: str | None = None  # the name of the key that authenticated it (never the key)
    audit: list[dict] = field(default_factory=list)  # live-scored rows as columns: recorded together, or refused
    reads: list[Read] = field(default_factory=list)  # rows read from precomputed answers, recorded with them
    shadow: list[tuple] = field(default_factory=list)  # submitted once its rows are recorded
    seconds: dict[str, float] = field(default_factory=dict)  # per version: shared time plus its own scoring

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    @property
    def at(self) -> datetime:
        return datetime.fromtimestamp(self.arrived / 1e9, UTC)


def _audit_rows(rows: dict, scores: Scores | None, error: str | None, latency_ms: float) -> dict:
    """Audit columns: the request's columns plus the outcome of one model on its rows."""
    n = len(rows["request_id"])
    return rows | {
        "status": ["ok" if error is None else "error"] * n,
        "error": [error] * n,
        "churn_probability": scores.probability if scores else [None] * n,
        "risk_band": scores.risk_band if scores else [None] * n,
        "needs_review": scores.needs_review if scores else [None] * n,
        "top_reasons": scores.reasons if scores and scores.reasons is not None else [None] * n,
        "latency_ms": [latency_ms] * n,
    }


def _request_rows(
    request: _Request, route: str, model: ServedModel, ids: list, features: list[str], snapshot=None, dates=None
) -> dict:
    n, arrived = len(features), request.at
    return {
        "request_id": [request.id] * n,
        "requested_at": [arrived] * n,
        "route": [route] * n,
        "customer_id": [None if i is None else str(i) for i in ids],
        "feature_snapshot_version": [snapshot] * n,
        "feature_snapshot_date": dates if dates is not None else [None] * n,
        "features": features,
        "model_name": [model.name] * n,
        "model_version": [model.version] * n,
        "role": ["champion"] * n,
        "api_key_name": [request.api_key_name] * n,
        "ds": [arrived.date()] * n,
    }


def _paired(state: ServingState, answered: ServedModel) -> ServedModel | None:
    """The version that scores an answered row silently: with a live challenger (shadow or canary), the other one."""
    if state.challenger is None or state.mode == "off":
        return None
    return state.champion if answered.version == state.challenger.version else state.challenger


def _audit_refused(reason: str) -> HTTPException:
    return HTTPException(
        503, f"not answered: the audit log cannot take its rows ({reason}); retry shortly", headers={"Retry-After": "1"}
    )


def _results(ids: list, scores: Scores, model: ServedModel, role: str, dates, snapshot: int | None) -> list[dict]:
    reasons = scores.reasons or [None] * len(ids)
    return [
        {
            "customer_id": ids[i],
            "churn_probability": scores.probability[i],
            "risk_band": scores.risk_band[i],
            "needs_review": scores.needs_review[i],
            "top_reasons": reasons[i],
            "model_name": model.name,
            "model_version": model.version,
            "role": role,
            "feature_snapshot_date": dates[i] if dates else None,
            "feature_snapshot_version": snapshot,
        }
        for i in range(len(ids))
    ]


class Scoring:
    """The endpoint's work, given the state it took when the request arrived."""

    def __init__(self, keeper: StateKeeper, audit: AuditLog, shadow: ShadowScorer, metrics: Metrics, settings):
        self.keeper, self.audit, self.shadow, self.metrics = keeper, audit, shadow, metrics
        self.reasons, self.max_batch = settings.serving_reasons, settings.serving_max_batch
        self.max_text, self.canary_share = settings.serving_max_text_chars, settings.serving_canary_share
        self._validators: dict[tuple, tuple[type[BaseModel], dict]] = {}
        self._ids, self._count = secrets.token_hex(8), itertools.count()  # request ids: this worker's, then a count

    @staticmethod
    def reads_only(state: ServingState | None, body: ScoreRequest) -> bool:
        """Every answer of the request is a read (lookups, precomputed): it runs on the event loop."""
        if state is None or body.features is not None or state.champion.version not in state.read:
            return False
        return state.mode != "canary" or state.challenger.version in state.read

    def score(self, body: ScoreRequest, api_key_name: str | None, state: ServingState | None) -> bytes:
        """The JSON answer to a request, given the state it took when it arrived."""
        if state is None:
            raise HTTPException(503, f"not ready: {self.keeper.not_ready}")
        request = _Request(f"{self._ids}{next(self._count):016x}", time.time_ns(), time.perf_counter(), api_key_name)
        version = state.champion.version
        status = 200
        try:
            if refusal := self.audit.refusal():
                raise _audit_refused(refusal)
            if body.features is not None:
                answer = {"request_id": request.id, "results": self._by_values(state, body.features, request)}
            else:
                ids = [body.customer_id] if body.customer_id is not None else body.customer_ids
                results, unknown = self._by_ids(state, ids, body.customer_ids is not None, request)
                answer = {"request_id": request.id, "results": results, "unknown_customer_ids": unknown}
            self._commit(request)
            return orjson.dumps(answer)
        except HTTPException as refused:
            status = refused.status_code
            kind = {404: "not_found", 503: "audit"}.get(status, "invalid")
            self.metrics.errors.labels(SCORE_ROUTE, version, kind).inc()
            raise
        except InvalidFeatures:
            status = 422
            self.metrics.errors.labels(SCORE_ROUTE, version, "invalid").inc()
            raise
        except Exception:
            status = 500
            self.metrics.errors.labels(SCORE_ROUTE, version, "scoring").inc()
            raise
        finally:
            self.metrics.requests.labels(SCORE_ROUTE, version, str(status)).inc()
            for scored, seconds in (request.seconds or {version: request.elapsed()}).items():
                self.metrics.latency.labels(SCORE_ROUTE, scored).observe(seconds)

    def _commit(self, request: _Request) -> None:
        """Queue the request's audit rows, all or none (a 503 if they do not fit), then its shadow jobs."""
        if request.audit or request.reads:
            try:
                self.audit.record(*request.audit, reads=request.reads)
            except AuditFull as full:
                raise _audit_refused(str(full)) from None
        for job in request.shadow:
            self.shadow.submit(job)

    def _by_ids(self, state: ServingState, ids: list, batch: bool, request: _Request) -> tuple[list[dict], list]:
        """Results of the known ids, in request order, and the unknown ids: a 404 only for a single id."""
        if not ids or len(ids) > self.max_batch:
            raise InvalidFeatures(
                [{"loc": ("body", "customer_ids"), "msg": f"give 1 to {self.max_batch} ids", "type": "value_error"}]
            )
        snapshot = state.snapshot
        positions, found = snapshot.locate(ids)
        shared = request.elapsed()  # the part every version's answer waits for: arrival to features looked up
        if not found.all():
            missing = [i for i, hit in zip(ids, found.tolist(), strict=True) if not hit]
            rows = _request_rows(request, "id", state.champion, missing, [None] * len(missing))
            rows.update(feature_snapshot_version=[snapshot.version] * len(missing))
            request.audit.append(
                _audit_rows(rows, None, "unknown customer", shared * 1000) | {"status": ["not_found"] * len(missing)}
            )
            if not batch:
                self._commit(request)
                shown = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
                raise HTTPException(
                    404,
                    f"unknown customer {shown}: not in the online feature snapshot v{snapshot.version} "
                    f"({snapshot.rows} customers)",
                )
            ids = [i for i, hit in zip(ids, found.tolist(), strict=True) if hit]
        else:
            missing = []
        canary = self._canary(state, positions)
        dates = snapshot.dates(positions)
        results: list[dict | None] = [None] * len(ids)
        for role, mask in (("champion", ~canary), ("canary", canary)):
            if not mask.any():
                continue
            picked = np.flatnonzero(mask)
            model = state.challenger if role == "canary" else state.champion
            rows_at = positions[picked]
            scores, role_used, model, seconds, read = self._score_rows(state, model, role, rows_at, request, shared)
            chosen, on = [ids[i] for i in picked], [dates[i] for i in picked]
            for i, result in zip(picked, _results(chosen, scores, model, role_used, on, snapshot.version), strict=True):
                results[i] = result
            if read:
                request.reads.append(
                    (
                        request.id,
                        state.read[model.version],
                        role_used,
                        rows_at,
                        request.arrived,
                        seconds * 1000,
                        request.api_key_name,
                    )
                )
            else:
                rows = _request_rows(
                    request, "id", model, chosen, snapshot.features_json(rows_at), snapshot.version, on
                )
                rows["role"] = [role_used] * len(chosen)
                request.audit.append(_audit_rows(rows, scores, None, seconds * 1000))
            other = _paired(state, model) if role_used == role else None  # a fallback's pair is the canary's error
            if other is not None:
                self._shadow(state, other, rows_at, request, shared, chosen, on)
        return results, missing

    def _canary(self, state: ServingState, positions: np.ndarray) -> np.ndarray:
        """Which rows the canary answers: a sticky share of customers, by a stable hash of the id."""
        if state.mode != "canary":
            return np.zeros(len(positions), bool)
        ids = state.snapshot.customer_ids(positions)
        return np.fromiter((canary_bucket(i) < self.canary_share for i in ids), bool, len(ids))

    def _shadow(self, state, other: ServedModel, rows_at, request: _Request, shared: float, ids, dates) -> None:
        """The other version's silent score of the answered rows: a read when precomputed, else a shadow job."""
        source = state.read.get(other.version)
        if source is not None:
            request.reads.append(
                (request.id, source, "shadow", rows_at, request.arrived, shared * 1000, request.api_key_name)
            )
            self.metrics.scored.labels(other.version, "shadow", "precomputed").inc(len(rows_at))
            return
        snapshot = state.snapshot
        rows = _request_rows(request, "id", other, ids, snapshot.features_json(rows_at), snapshot.version, dates)
        request.shadow.append((other, partial(snapshot.frame, rows_at), rows, shared))

    def _score_rows(
        self, state: ServingState, model: ServedModel, role: str, rows_at: np.ndarray, request: _Request, shared: float
    ) -> tuple[Scores, str, ServedModel, float, bool]:
        """Scores by the role's model (read when precomputed), its time (shared plus its own), and whether it was a
        read; a failing canary falls back to the champion (its error is audited)."""
        started = time.perf_counter()
        source = state.read.get(model.version)
        try:
            if source is not None:
                scores = source.answers.scores(rows_at, model.features)
            else:
                scores = model.score(model.encode(state.snapshot.frame(rows_at)), self.reasons)
        except Exception as failure:
            if role != "canary":
                raise
            seconds = shared + time.perf_counter() - started
            request.seconds[model.version] = seconds
            snapshot = state.snapshot
            ids = snapshot.customer_ids(rows_at)
            rows = _request_rows(request, "id", model, ids, [None] * len(ids), snapshot.version)
            rows["role"] = ["canary"] * len(ids)
            request.audit.append(_audit_rows(rows, None, f"{type(failure).__name__}: {failure}", seconds * 1000))
            self.metrics.errors.labels(SCORE_ROUTE, model.version, "canary").inc()
            return self._score_rows(state, state.champion, "champion", rows_at, request, shared)
        seconds = shared + time.perf_counter() - started
        request.seconds[model.version] = request.seconds.get(model.version, shared) + seconds - shared
        how = "precomputed" if source is not None else "live"
        self.metrics.scored.labels(model.version, role, how).inc(len(rows_at))
        return scores, role, model, seconds, source is not None

    def _by_values(self, state: ServingState, features, request: _Request) -> list[dict]:
        model = state.champion
        given = [features] if isinstance(features, dict) else features
        if not given or len(given) > self.max_batch:
            raise InvalidFeatures(
                [{"loc": ("body", "features"), "msg": f"give 1 to {self.max_batch} rows", "type": "value_error"}]
            )
        validator, bounds = self.validator(model, state.snapshot)
        errors, rows = [], []
        for i, row in enumerate(given):
            try:
                rows.append(validator.model_validate(row).model_dump())
            except pydantic.ValidationError as invalid:
                where = ("body", "features", *([i] if isinstance(features, list) else []))
                errors += [
                    {
                        "loc": (*where, *e["loc"]),
                        "msg": bounds_message(e, bounds, model.version),
                        "type": e["type"],
                        "input": e.get("input"),
                    }
                    for e in invalid.errors(include_url=False)
                ]
        if errors:
            raise InvalidFeatures(errors)
        schema = {name: state.snapshot.schema[name] for name in model.features}
        frame = pl.DataFrame(rows, schema=schema)
        shared = request.elapsed()  # arrival to values validated
        started = time.perf_counter()
        scores = model.score(model.encode(frame), self.reasons)
        seconds = shared + time.perf_counter() - started
        request.seconds[model.version] = seconds
        self.metrics.scored.labels(model.version, "champion", "live").inc(frame.height)
        values = frame.select(pl.struct(pl.all()).struct.json_encode()).to_series().to_list()
        audit_rows = _request_rows(request, "values", model, [None] * frame.height, values)
        request.audit.append(_audit_rows(audit_rows, scores, None, seconds * 1000))
        challenger = _paired(state, model)
        if challenger is not None and challenger.features == model.features:
            request.shadow.append((challenger, lambda: frame, audit_rows, shared))
        return _results([None] * frame.height, scores, model, "champion", None, None)

    def validator(self, model: ServedModel, snapshot: Snapshot) -> tuple[type[BaseModel], dict]:
        """The what-if model of a version's declared features, and its bounds (built once per version)."""
        key = (model.version, snapshot.version)
        if key not in self._validators:
            self._validators[key] = what_if_model(
                model.version, model.features, snapshot.schema, model.bounds, self.max_text
            )
        return self._validators[key]
