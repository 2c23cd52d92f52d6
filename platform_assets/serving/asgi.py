"""A JSON answer sent straight on ASGI's ``send``: the layers in front of FastAPI (the key check, the
admission limit, the read lane) answer without its response objects, and all in one way."""

from __future__ import annotations

import orjson


async def send_json(send, status: int, content, headers: dict[str, str] | None = None) -> None:
    """``content`` encoded by orjson (bytes are sent as they are), with its length and ``headers``."""
    body = content if isinstance(content, bytes) else orjson.dumps(content)
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    head += [(name.lower().encode(), str(value).encode()) for name, value in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})
