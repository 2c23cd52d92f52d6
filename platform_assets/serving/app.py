"""The scoring API: FastAPI on uvicorn, one state object per worker, audit and shadow off the request path.

``POST /v1/score`` scores customers by id (features looked up in the online snapshot)
or explicit feature values (what-if, validated against the champion's declared
features). ``/healthz`` says the process lives, ``/readyz`` that a champion and a
snapshot are loaded and the audit log writes, ``/metrics`` is Prometheus text. With API
keys configured every route but ``/healthz`` needs one, checked before anything else
(``access.py``); the audit records the key's name. An admission limit bounds the
requests a worker holds: past it the answer is an immediate 503, so overload costs
clients a retry instead of unbounded latency. A request whose audit rows the log cannot
take (full, or its writer dead) is a 503 with Retry-After too: no score leaves without
its audit row.

On shutdown the answers already queued are written first; shadow scorings still queued
then get ``PLATFORM_SERVING_SHADOW_DRAIN_SECONDS`` to finish (the rest are dropped and
counted), and their rows are written last.

The scoring endpoint is a plain ``def``: FastAPI runs it in its thread pool, and
LightGBM releases the GIL while it predicts, so two requests score on two cores.

Run it with ``churn-platform serve`` (``create_app`` is uvicorn's factory).
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import math
import queue
import threading
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import date, datetime

import numpy as np
import polars as pl
import pydantic
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from pydantic import BaseModel, Field

from platform_assets.serving.access import KEY_NAME_SCOPE, ApiKeys, RequireApiKey
from platform_assets.serving.audit import AuditFull, AuditLog, now
from platform_assets.serving.inputs import (
    CustomerId,
    ScoreRequest,
    StrictJSONRoute,
    bounds_message,
    what_if_model,
)
from platform_assets.serving.scorer import Scores, ServedModel
from platform_assets.serving.state import ServingState, StateKeeper
from platform_assets.serving.store import FeatureSnapshot

LOG = logging.getLogger("churn_platform.serving")
SCORE_ROUTE = "/v1/score"
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class InvalidFeatures(RequestValidationError):
    """A 422 raised while scoring (what-if values, batch size), counted where it is raised."""


class Reason(BaseModel):
    feature: str
    contribution: float = Field(description="Signed SHAP contribution in log-odds: positive raises the risk.")


class ScoreResult(BaseModel):
    customer_id: str | int | None
    churn_probability: float
    risk_band: str
    needs_review: bool
    top_reasons: list[Reason] | None
    model_name: str
    model_version: str
    role: str = Field(description="`champion`, or `canary` for the sticky share a canary answers.")
    feature_snapshot_date: date | None = Field(description="Snapshot day of the features (null for what-if).")
    feature_snapshot_version: int | None = Field(description="Delta version of the online snapshot (null: what-if).")


class ScoreResponse(BaseModel):
    request_id: str
    results: list[ScoreResult] = Field(description="One per known customer (or what-if row), in request order.")
    unknown_customer_ids: list[CustomerId] = Field(
        default=[], description="Ids of a `customer_ids` batch that are not in the online snapshot (not scored)."
    )


class Metrics:
    """Prometheus metrics of one worker, in a registry of its own."""

    def __init__(self):
        self.registry = CollectorRegistry()
        labels = ["route", "model_version"]
        self.requests = Counter(
            "churn_serving_requests", "Requests answered.", [*labels, "status"], registry=self.registry
        )
        self.latency = Histogram(
            "churn_serving_request_seconds",
            "Server time of a request per version that scored it: the shared part (arrival to features looked up) "
            "plus that version's own scoring (a request no version scored: its whole time, as the champion's).",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.errors = Counter(
            "churn_serving_errors", "Failed requests by kind.", [*labels, "kind"], registry=self.registry
        )
        self.rejected = Counter(
            "churn_serving_rejected",
            "Requests refused with 503 by the admission limit.",
            ["route"],
            registry=self.registry,
        )
        self.scored = Counter(
            "churn_serving_scored_rows", "Rows scored by role.", ["model_version", "role"], registry=self.registry
        )
        self.shadow_dropped = Counter(
            "churn_serving_shadow_dropped",
            "Shadow scorings skipped: their queue or the audit log was full, or shutdown's drain time was over.",
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "churn_serving_in_flight", "Requests admitted and not yet answered.", registry=self.registry
        )
        self.snapshot = Gauge(
            "churn_serving_feature_snapshot_version", "Online snapshot loaded.", registry=self.registry
        )


class AdmissionLimit:
    """A pure ASGI middleware: at most ``limit`` scoring requests at once; the next gets 503 at once."""

    def __init__(self, app, limit: int, metrics: Metrics):
        self.app, self.limit, self.metrics, self.in_flight = app, limit, metrics, 0

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] != SCORE_ROUTE:
            return await self.app(scope, receive, send)
        if self.in_flight >= self.limit:
            self.metrics.rejected.labels(SCORE_ROUTE).inc()
            body = json.dumps({"detail": f"overloaded: {self.in_flight} requests in flight; retry shortly"}).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 503,
                    "headers": [(b"content-type", b"application/json"), (b"retry-after", b"1")],
                }
            )
            return await send({"type": "http.response.body", "body": body})
        self.in_flight += 1
        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
            self.metrics.in_flight.dec()


class ShadowScorer:
    """Scores answered rows again with the other version, on one thread of its own, into the audit only.

    A bounded queue: when the shadow model cannot keep up, shadow scorings are dropped
    (and counted), never the answers. A job is ``(model, matrix, rows, shared_seconds)``:
    the rows as audited for the answer, and the request's shared time before scoring.
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
            model, matrix, rows, shared = job
            started = time.perf_counter()
            try:
                scores, error = model.score(matrix, self.reasons), None
            except Exception as failure:
                scores, error = None, f"{type(failure).__name__}: {failure}"
            seconds = shared + time.perf_counter() - started
            n = len(rows["request_id"])
            rows = rows | {"model_version": [model.version] * n, "role": ["shadow"] * n}
            if self.audit.record(_audit_rows(rows, scores, error, seconds * 1000), required=False):
                self.metrics.scored.labels(model.version, "shadow").inc(n)
            else:
                self.metrics.shadow_dropped.inc()


@dataclass
class _Request:
    """One scoring request's identity, its timings, and what it records once answered."""

    id: str
    arrived: datetime
    started: float
    api_key_name: str | None = None  # the name of the key that authenticated it (never the key)
    audit: list[dict] = field(default_factory=list)  # recorded together, or the request is refused
    shadow: list[tuple] = field(default_factory=list)  # submitted once its rows are recorded
    seconds: dict[str, float] = field(default_factory=dict)  # per version: shared time plus its own scoring

    def elapsed(self) -> float:
        return time.perf_counter() - self.started


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
    n, arrived = len(features), request.arrived
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
        self.max_text = settings.serving_max_text_chars
        self._validators: dict[tuple, tuple[type[BaseModel], dict]] = {}

    def score(self, body: ScoreRequest, api_key_name: str | None = None) -> dict:
        state = self.keeper.state
        if state is None:
            raise HTTPException(503, f"not ready: {self.keeper.not_ready}")
        request = _Request(uuid.uuid4().hex, now(), time.perf_counter(), api_key_name)
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
            return answer
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
        if request.audit:
            try:
                self.audit.record(*request.audit)
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
        positions, missing = snapshot.positions(ids)
        shared = request.elapsed()  # the part every version's answer waits for: arrival to features looked up
        if missing:
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
                    f"({snapshot.frame.height} customers)",
                )
            absent = {snapshot.key(i) for i in missing}
            ids = [i for i in ids if snapshot.key(i) not in absent]
        canary = state.canary_rows[positions] if state.mode == "canary" else np.zeros(len(positions), bool)
        results: list[dict | None] = [None] * len(ids)
        for role, mask in (("champion", ~canary), ("canary", canary)):
            if not mask.any():
                continue
            picked = np.flatnonzero(mask)
            model = state.challenger if role == "canary" else state.champion
            rows_at = positions[picked]
            scores, role_used, model, seconds = self._score_rows(state, model, role, rows_at, request, shared)
            dates = [snapshot.dates[r] for r in rows_at]
            chosen = [ids[i] for i in picked]
            for i, result in zip(
                picked, _results(chosen, scores, model, role_used, dates, snapshot.version), strict=True
            ):
                results[i] = result
            rows = _request_rows(
                request,
                "id",
                model,
                chosen,
                snapshot.values_json.gather(rows_at).to_list(),
                snapshot.version,
                [date.fromisoformat(d) for d in dates],
            )
            rows["role"] = [role_used] * len(chosen)
            request.audit.append(_audit_rows(rows, scores, None, seconds * 1000))
            other = _paired(state, model) if role_used == role else None  # a fallback's pair is the canary's error
            if other is not None:
                request.shadow.append((other, other.matrix[rows_at], rows, shared))
        return results, missing

    def _score_rows(
        self, state: ServingState, model: ServedModel, role: str, rows_at: np.ndarray, request: _Request, shared: float
    ) -> tuple[Scores, str, ServedModel, float]:
        """Scores by the role's model, and its time (shared plus its own scoring); a failing canary falls back to
        the champion (its error is audited)."""
        started = time.perf_counter()
        if role != "canary":
            scores = model.score(model.matrix[rows_at], self.reasons)
            seconds = shared + time.perf_counter() - started
            request.seconds[model.version] = request.seconds.get(model.version, shared) + seconds - shared
            self.metrics.scored.labels(model.version, role).inc(len(rows_at))
            return scores, role, model, seconds
        try:
            scores = model.score(model.matrix[rows_at], self.reasons)
            seconds = shared + time.perf_counter() - started
            request.seconds[model.version] = seconds
            self.metrics.scored.labels(model.version, role).inc(len(rows_at))
            return scores, role, model, seconds
        except Exception as failure:
            seconds = shared + time.perf_counter() - started
            request.seconds[model.version] = seconds
            snapshot = state.snapshot
            ids = snapshot.frame[snapshot.entity].gather(rows_at).to_list()
            rows = _request_rows(request, "id", model, ids, [None] * len(ids), snapshot.version)
            rows["role"] = ["canary"] * len(ids)
            error = f"{type(failure).__name__}: {failure}"
            request.audit.append(_audit_rows(rows, None, error, seconds * 1000))
            self.metrics.errors.labels(SCORE_ROUTE, model.version, "canary").inc()
            return self._score_rows(state, state.champion, "champion", rows_at, request, shared)

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
        schema = {name: state.snapshot.frame.schema[name] for name in model.features}
        frame = pl.DataFrame(rows, schema=schema)
        shared = request.elapsed()  # arrival to values validated
        started = time.perf_counter()
        scores = model.score(model.encode(frame), self.reasons)
        seconds = shared + time.perf_counter() - started
        request.seconds[model.version] = seconds
        self.metrics.scored.labels(model.version, "champion").inc(frame.height)
        values = frame.select(pl.struct(pl.all()).struct.json_encode()).to_series().to_list()
        audit_rows = _request_rows(request, "values", model, [None] * frame.height, values)
        request.audit.append(_audit_rows(audit_rows, scores, None, seconds * 1000))
        challenger = _paired(state, model)
        if challenger is not None and challenger.features == model.features:
            request.shadow.append((challenger, challenger.encode(frame), audit_rows, shared))
        return _results([None] * frame.height, scores, model, "champion", None, None)

    def validator(self, model: ServedModel, snapshot: FeatureSnapshot) -> tuple[type[BaseModel], dict]:
        """The what-if model of a version's declared features, and its bounds (built once per version)."""
        key = (model.version, snapshot.version)
        if key not in self._validators:
            schema = snapshot.frame.schema
            self._validators[key] = what_if_model(model.version, model.features, schema, model.bounds, self.max_text)
        return self._validators[key]


def create_app(settings=None, dataset=None) -> FastAPI:
    """The API for the configured registered model (``PLATFORM_SERVING_MODEL``'s dataset), uvicorn's factory."""
    from platform_assets.ml.feature_spec import datasets
    from platform_assets.serving.store import online_table, requests_table
    from resources.dbt import dbt_project
    from resources.lake import Lake
    from resources.model_registry import ModelRegistry
    from resources.settings import settings as current_settings

    settings = settings or current_settings()
    manifest = dbt_project().manifest_path
    dataset = dataset or next(d for d in datasets(manifest) if d.registered_model == settings.serving_model)
    lake = Lake(root=settings.lake, storage_options=settings.lake_storage_options)
    registry = ModelRegistry(
        tracking_uri=settings.tracking_uri,
        artifact_location=settings.artifact_location,
        model_name=dataset.registered_model,
    )
    keys = ApiKeys(settings.serving_api_keys, settings.serving_api_keys_file)
    metrics = Metrics()
    keeper = StateKeeper(
        registry,
        lake,
        online_table(dataset),
        dataset.spec(manifest),
        settings.serving_challenger_mode,
        settings.serving_canary_share,
        settings.serving_poll_seconds,
        metrics.registry,
    )
    audit = AuditLog(
        lake,
        requests_table(dataset),
        settings.serving_audit_flush_seconds,
        settings.serving_audit_batch_rows,
        metrics.registry,
        max_rows=settings.serving_audit_queue_rows,
        max_unwritten_seconds=settings.serving_audit_max_unwritten_seconds,
    )
    shadow = ShadowScorer(audit, settings.serving_reasons, metrics)
    scoring = Scoring(keeper, audit, shadow, metrics, settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        keeper.refresh()
        keeper.start()
        try:
            yield
        finally:  # uvicorn gets here on SIGTERM, after the requests in flight are answered
            keeper.stop()
            audit.flush()  # the answers first, whatever the shadow queue holds
            LOG.info("audit answers flushed")
            shadow.close(settings.serving_shadow_drain_seconds)
            audit.close()
            LOG.info("audit log flushed")

    app = FastAPI(
        title="churn-platform scoring API",
        description="Churn scores by the MLflow champion, explained with SHAP, audited in the lake.",
        version="1",
        lifespan=lifespan,
        max_body_size=settings.serving_max_body_bytes,  # larger bodies get 413 before they are read whole
    )
    app.router.route_class = StrictJSONRoute
    app.add_middleware(AdmissionLimit, limit=settings.serving_max_in_flight, metrics=metrics)
    if keys.configured:  # outermost: a refused request costs no admission slot, routing or validation
        app.add_middleware(RequireApiKey, keys=keys, metrics=metrics.registry)

    def openapi() -> dict:
        """FastAPI's schema, with the what-if row and batch limits of the champion served now."""
        schema = copy.deepcopy(FastAPI.openapi(app))
        request = schema["components"]["schemas"]["ScoreRequest"]["properties"]
        next(s for s in request["customer_ids"]["anyOf"] if s.get("type") == "array")["maxItems"] = scoring.max_batch
        if keeper.state is not None:
            row, _ = scoring.validator(keeper.state.champion, keeper.state.snapshot)
            schema["components"]["schemas"][row.__name__] = row.model_json_schema()
            ref = {"$ref": f"#/components/schemas/{row.__name__}"}
            many = {"type": "array", "items": ref, "minItems": 1, "maxItems": scoring.max_batch}
            request["features"]["anyOf"] = [ref, many, {"type": "null"}]
        if keys.configured:  # /docs' "Authorize" then sends the key
            schema["components"]["securitySchemes"] = {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            }
            schema["security"] = [{"bearer": []}, {"apiKey": []}]
        return schema

    app.openapi = openapi

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError):
        if request.url.path == SCORE_ROUTE and not isinstance(error, InvalidFeatures):  # a body FastAPI refused
            version = keeper.state.champion.version if keeper.state else "none"
            metrics.errors.labels(SCORE_ROUTE, version, "invalid").inc()
        return JSONResponse(status_code=422, content={"detail": _jsonable(error.errors())})

    @app.post(
        SCORE_ROUTE,
        responses={
            200: {"model": ScoreResponse},
            404: {"description": "The one `customer_id` asked for is not in the online snapshot."},
            413: {"description": f"Body larger than {settings.serving_max_body_bytes} bytes."},
            422: {"description": "Not strict JSON (NaN, Infinity), a mistyped id, or a what-if value out of bounds."},
            503: {"description": "Not ready, overloaded (admission limit), or the audit log full: retry."},
            **(
                {
                    401: {"description": "No API key sent (`Authorization: Bearer <key>` or `X-API-Key`)."},
                    403: {"description": "The API key sent is not configured (unknown or revoked)."},
                }
                if keys.configured
                else {}
            ),
        },
    )
    def score(body: ScoreRequest, request: Request) -> Response:
        """Score customers by id (latest features in the online store) or by feature values (what-if)."""
        answer = scoring.score(body, request.scope.get(KEY_NAME_SCOPE))
        return Response(json.dumps(answer), media_type="application/json")

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> Response:
        state = keeper.state
        loading = {"challenger_error": keeper.challenger_error, "champion_error": keeper.champion_error}
        if state is None:
            return JSONResponse(status_code=503, content={"status": "not ready", "reason": keeper.not_ready, **loading})
        metrics.snapshot.set(state.snapshot.version)
        served = {**state.describe(), "canary_share": settings.serving_canary_share, **loading}
        if problem := audit.problem:
            return JSONResponse(status_code=503, content={"status": "not ready", "reason": problem, **served})
        return JSONResponse({"status": "ready", **served})

    @app.get("/metrics")
    def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.state.keeper, app.state.audit = keeper, audit
    return app


def _jsonable(errors) -> list[dict]:
    return [
        {k: (list(v) if k == "loc" else _finite(v)) for k, v in e.items() if k in ("loc", "msg", "type", "input")}
        for e in errors
    ]


def _finite(value):
    """The input echoed in a 422 as valid JSON: an infinite number (``1e400`` parses as one) or a body sent
    as another media type (bytes) as its text."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
