"""The scoring API: FastAPI on uvicorn, one state object per worker, audit and shadow off the request path.

``POST /v1/score`` scores customers by id (features looked up in the online snapshot)
or explicit feature values (what-if, validated against the champion's declared
features). ``/healthz`` says the process lives, ``/readyz`` that a champion and a
snapshot are loaded and the audit log writes, ``/metrics`` is Prometheus text (every
worker's, added up: ``metrics.py``). With API keys configured every route but
``/healthz`` needs one, checked before anything else (``access.py``); the audit records
the key's name. An admission limit bounds the requests a worker holds: past it the
answer is an immediate 503, so overload costs clients a retry instead of unbounded
latency. A request whose audit rows the log cannot take (full, or its writer dead) is a
503 with Retry-After too: no score leaves without its audit row.

The request path is lean (``answer.py``): the body is parsed and validated by pydantic's
Rust core straight from bytes (no FastAPI body model), a lookup by id whose answer is
precomputed is a read answered on the event loop, in a lane of its own in front of
FastAPI's stack (``ReadLane``), the answer is encoded by orjson, and its audit row is a
few scalars. Live scoring (what-if values, and lookups until a
version's answers are precomputed) runs on FastAPI's thread pool: LightGBM releases the
GIL while it predicts, so two requests score on two cores.

On shutdown the answers already queued are written first; shadow scorings still queued
then get ``PLATFORM_SERVING_SHADOW_DRAIN_SECONDS`` to finish (the rest are dropped and
counted), and their rows are written last.

Run it with ``churn-platform serve`` (``create_app`` is uvicorn's factory).
"""

from __future__ import annotations

import copy
import gc
import logging
import math
from contextlib import asynccontextmanager
from datetime import date

from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, Field

from platform_assets.serving.access import KEY_NAME_SCOPE, ApiKeys, RequireApiKey
from platform_assets.serving.answer import SCORE_ROUTE, InvalidFeatures, Scoring, ShadowScorer
from platform_assets.serving.asgi import send_json
from platform_assets.serving.audit import AuditLog
from platform_assets.serving.inputs import CustomerId, ScoreRequest, parse_score_request
from platform_assets.serving.metrics import Metrics, exposition, worker_stopped
from platform_assets.serving.state import StateKeeper

LOG = logging.getLogger("churn_platform.serving")


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
    feature_snapshot_version: int | None = Field(description="Version of the online snapshot (null: what-if).")


class ScoreResponse(BaseModel):
    request_id: str
    results: list[ScoreResult] = Field(description="One per known customer (or what-if row), in request order.")
    unknown_customer_ids: list[CustomerId] = Field(
        default=[], description="Ids of a `customer_ids` batch that are not in the online snapshot (not scored)."
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
            detail = f"overloaded: {self.in_flight} requests in flight; retry shortly"
            return await send_json(send, 503, {"detail": detail}, {"Retry-After": "1"})
        self.in_flight += 1
        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
            self.metrics.in_flight.dec()


class ReadLane:
    """A pure ASGI lane for the commonest request, a lookup whose answers are all reads, past FastAPI's stack.

    FastAPI's routing, request and exception layers and its body-limit wrappers cost about twice
    the answer itself on a read (py-spy at 500 req/s: 60% of a worker's CPU in the event loop's
    layers, 8% in ``Scoring.score``). Such a request is answered here: the body read under the
    same size limit, parsed by the same ``parse_score_request``, answered by the same
    ``Scoring.score``, its 404 or 503 worded as FastAPI words an ``HTTPException``. Anything
    else (a body that does not parse, a what-if, a lookup still scored live, another method)
    goes on to FastAPI with the body as it was received, so every other answer, the 413 and
    the 422s included, is FastAPI's own.
    """

    def __init__(self, app, scoring: Scoring, keeper: StateKeeper, max_body: int):
        self.app, self.scoring, self.keeper, self.max_body = app, scoring, keeper, max_body

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] != SCORE_ROUTE or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        received, size = [], 0
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if declared is None or not declared.isdigit() or int(declared) > self.max_body:
            return await self.app(scope, receive, send)  # FastAPI reads it, or answers 413
        while True:
            message = await receive()
            received.append(message)
            size += len(message.get("body", b""))
            if message["type"] != "http.request" or size > self.max_body:
                return await self.app(scope, _replay(received, receive), send)
            if not message.get("more_body"):
                break
        try:
            parsed = parse_score_request(b"".join(m.get("body", b"") for m in received))
        except RequestValidationError:
            return await self.app(scope, _replay(received, receive), send)  # FastAPI's 422, counted there
        state = self.keeper.state
        if not Scoring.reads_only(state, parsed):
            return await self.app(scope, _replay(received, receive), send)
        try:
            body = self.scoring.score(parsed, scope.get(KEY_NAME_SCOPE), state)
        except HTTPException as refused:  # as FastAPI's own handler answers one
            return await send_json(send, refused.status_code, {"detail": refused.detail}, refused.headers)
        await send_json(send, 200, body)


def _replay(received: list[dict], receive):
    """A ``receive`` that gives the messages already read, then the connection's own."""
    queued = list(received)

    async def replayed():
        return queued.pop(0) if queued else await receive()

    return replayed


def create_app(settings=None, dataset=None):
    """The API for the configured registered model (``PLATFORM_SERVING_MODEL``'s dataset), uvicorn's factory."""
    from platform_assets.ml.feature_spec import datasets
    from platform_assets.serving.store import online_table, requests_table, snapshot_source
    from resources.lake import Lake
    from resources.model_registry import ModelRegistry
    from resources.settings import settings as current_settings

    settings = settings or current_settings()
    manifest = settings.dbt_manifest_path  # the file only: dbt itself is never imported by a worker
    dataset = dataset or next(d for d in datasets(manifest) if d.registered_model == settings.serving_model)
    lake = Lake(root=settings.lake, storage_options=settings.lake_storage_options)
    registry = ModelRegistry(
        tracking_uri=settings.tracking_uri,
        artifact_location=settings.artifact_location,
        model_name=dataset.registered_model,
    )
    keys = ApiKeys(settings.serving_api_keys, settings.serving_api_keys_file)
    metrics = Metrics()
    table = online_table(dataset)
    store = snapshot_source(settings, table)
    keeper = StateKeeper(
        registry,
        store,
        table,
        settings.resolved_home / "serving" / "snapshots" / store.kind / table,
        dataset.spec(manifest),
        settings,
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
    keeper.on_poll.append(audit.observe_health)
    shadow = ShadowScorer(audit, settings.serving_reasons, metrics)
    scoring = Scoring(keeper, audit, shadow, metrics, settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        keeper.refresh()
        # What exists now (the imports, ~400,000 objects with MLflow's, and the first state) is moved out of the
        # cyclic collector's reach: a full collection under load then walks only what came after, not ~200 ms
        # of a worker's time (charged to every request waiting; seen at 500 req/s). A state swapped out later
        # is still freed, by reference counting: no cycle holds one.
        gc.collect()
        gc.freeze()
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
            worker_stopped()

    app = FastAPI(
        title="churn-platform scoring API",
        description="Churn scores by the MLflow champion, explained with SHAP, audited in the lake.",
        version="1",
        lifespan=lifespan,
        max_body_size=settings.serving_max_body_bytes,  # larger bodies get 413 before they are read whole
        telemetry={"tracing": False, "metrics": False, "logs": False},  # Prometheus (/metrics) is ours
    )

    def openapi() -> dict:
        """FastAPI's schema, with the request body, and the what-if row and batch limits of the champion served now."""
        schema = copy.deepcopy(FastAPI.openapi(app))
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components["ScoreRequest"] = ScoreRequest.model_json_schema(ref_template="#/components/schemas/{model}")
        request = components["ScoreRequest"]["properties"]
        next(s for s in request["customer_ids"]["anyOf"] if s.get("type") == "array")["maxItems"] = scoring.max_batch
        if keeper.state is not None:
            row, _ = scoring.validator(keeper.state.champion, keeper.state.snapshot)
            components[row.__name__] = row.model_json_schema()
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
        if request.url.path == SCORE_ROUTE and not isinstance(error, InvalidFeatures):  # a body refused as parsed
            version = keeper.state.champion.version if keeper.state else "none"
            metrics.errors.labels(SCORE_ROUTE, version, "invalid").inc()
        return JSONResponse(status_code=422, content={"detail": _jsonable(error.errors())})

    body = {"$ref": "#/components/schemas/ScoreRequest"}

    @app.post(
        SCORE_ROUTE,
        openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": body}}}},
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
    async def score(request: Request) -> Response:
        """Score customers by id (latest features in the online store) or by feature values (what-if)."""
        parsed = parse_score_request(await request.body())
        state, key = keeper.state, request.scope.get(KEY_NAME_SCOPE)
        if Scoring.reads_only(state, parsed):  # reads only: answered here, on the event loop
            answer = scoring.score(parsed, key, state)
        else:
            answer = await run_in_threadpool(scoring.score, parsed, key, state)
        return Response(answer, media_type="application/json")

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> Response:
        state = keeper.state
        loading = {
            "challenger_error": keeper.challenger_error,
            "champion_error": keeper.champion_error,
            "online_store": store.kind,
            "store_error": keeper.store_error,
            "staging": keeper.staging(),
        }
        if state is None:
            return JSONResponse(status_code=503, content={"status": "not ready", "reason": keeper.not_ready, **loading})
        metrics.snapshot.set(state.snapshot.version)
        served = {**state.describe(), "canary_share": settings.serving_canary_share, **loading}
        if problem := audit.problem:
            return JSONResponse(status_code=503, content={"status": "not ready", "reason": problem, **served})
        return JSONResponse({"status": "ready", **served})

    @app.get("/metrics")
    def prometheus() -> Response:
        audit.observe_health()
        return Response(exposition(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    # In front of FastAPI, outermost first: the key (a refused request costs no admission slot, routing or
    # validation), the admission limit, the lane of reads.
    served = ReadLane(app, scoring, keeper, settings.serving_max_body_bytes)
    served = AdmissionLimit(served, limit=settings.serving_max_in_flight, metrics=metrics)
    return RequireApiKey(served, keys=keys, metrics=metrics.registry) if keys.configured else served


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
