"""Overload: past the admission limit the scoring route answers 503 at once instead of queueing."""

import asyncio
import time

import httpx
from fastapi import FastAPI

from platform_assets.serving.app import SCORE_ROUTE, AdmissionLimit, Metrics


def test_requests_past_the_limit_get_an_immediate_503_and_the_rest_are_served():
    release = asyncio.Event()
    app = FastAPI()

    @app.post(SCORE_ROUTE)
    async def slow_score() -> dict:
        await release.wait()  # hold the admitted requests until the overflow has been answered
        return {"ok": True}

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    metrics = Metrics()
    app.add_middleware(AdmissionLimit, limit=2, metrics=metrics)

    async def scenario():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://serving") as client:
            admitted = [asyncio.create_task(client.post(SCORE_ROUTE)) for _ in range(2)]
            await asyncio.sleep(0.1)
            started = time.perf_counter()
            refused = await client.post(SCORE_ROUTE)
            waited = time.perf_counter() - started
            health = await client.get("/healthz")  # other routes are not limited
            release.set()
            return refused, waited, health, [await a for a in admitted]

    refused, waited, health, admitted = asyncio.run(scenario())
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    assert "overloaded: 2 requests in flight" in refused.json()["detail"]
    assert waited < 0.5 and health.status_code == 200
    assert [r.status_code for r in admitted] == [200, 200]
    assert metrics.rejected.labels(SCORE_ROUTE)._value.get() == 1
