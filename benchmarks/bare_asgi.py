"""A bare ASGI app answering one constant score, the size of the API's: the ceiling of this machine.

``benchmarks/serving.py`` drives it with the same load generator, at the same rates and with
the same uvicorn (one and two workers), beside the API: whatever it cannot hold, the API
cannot either, so a rate this app misses is out of reach here, whatever the API does.
"""

BODY = (
    b'{"request_id":"0123456789abcdef0123456789abcdef","results":[{"customer_id":17,"churn_probability":'
    b'0.12345678901234567,"risk_band":"medium","needs_review":false,"top_reasons":[{"feature":"sessions_30d",'
    b'"contribution":-0.14229194607533008},{"feature":"tenure_days","contribution":-0.12022112159140935},'
    b'{"feature":"avg_resolution_hours_90d","contribution":-0.10458377597915741}],"model_name":"churn_model",'
    b'"model_version":"1","role":"champion","feature_snapshot_date":"2026-05-30","feature_snapshot_version":1}],'
    b'"unknown_customer_ids":[]}'
)
START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())],
}


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        return await send({"type": "lifespan.shutdown.complete"})
    while (await receive()).get("more_body"):
        pass
    await send(START)
    await send({"type": "http.response.body", "body": BODY})
