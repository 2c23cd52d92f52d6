"""The online feature store: each customer's latest features, published by ``online_features``, read by the API.

The lake is the record in every configuration: ``online_features`` overwrites one Delta
table in one commit, and its Delta version names the snapshot. Where the API reads the
snapshot from is ``PLATFORM_ONLINE_STORE``:

- ``embedded`` (the default): the Delta table itself;
- ``redis``: the same version is also published to Redis (``PLATFORM_ONLINE_STORE_URL``),
  as versioned keys and one pointer key written last: ``<prefix>:v<N>:meta`` and
  ``<prefix>:v<N>:<chunk>`` (Arrow IPC streams of 65,536 rows), then ``<prefix>:current = N``.
  A reader that sees the pointer finds the whole version (the swap is one ``SET``); the
  version before stays readable for an hour, so a reader that started on it finishes.

Either way the API reads a version whole into this machine's shared files (``snapshot.py``)
when the version moves, never per request: a lookup stays a local read, and when Redis goes
away the API keeps serving the last version it read, and picks up the next once Redis is back.
"""

from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass
from datetime import date
from typing import Protocol

import polars as pl
import pyarrow as pa

from platform_assets.ml.feature_spec import Dataset, FeatureSpec
from platform_assets.tables import ONLINE_FEATURES, SERVING_REQUESTS
from resources.lake import Lake

LOG = logging.getLogger("churn_platform.serving")
CHUNK_ROWS = 65_536
KEEP_SECONDS = 3600  # a replaced version stays readable this long (a reader may have started on it)


def online_table(dataset: Dataset) -> str:
    return dataset.lake_table(ONLINE_FEATURES)


def requests_table(dataset: Dataset) -> str:
    return dataset.lake_table(SERVING_REQUESTS)


def latest_snapshot_query(spec: FeatureSpec, as_of: date | None) -> tuple[str, list]:
    """SQL for each entity's latest row of the scoring model (at or before ``as_of``)."""
    columns = ", ".join(f'"{c}"' for c in [spec.entity, spec.snapshot, *spec.features])
    where, params = (f"where {spec.snapshot} <= ?", [as_of]) if as_of else ("", [])
    sql = (
        f"select {columns} from {spec.scoring_relation} {where} "
        f"qualify row_number() over (partition by {spec.entity} order by {spec.snapshot} desc) = 1 "
        f"order by {spec.entity}"
    )
    return sql, params


class SnapshotSource(Protocol):
    """Where the API reads snapshots from: the current version, and a version whole."""

    kind: str

    def where(self) -> str: ...

    def version(self) -> int | None: ...

    def read(self, version: int) -> pl.DataFrame: ...


@dataclass(frozen=True)
class LakeSnapshots:
    """The embedded store: the Delta table ``online_features`` overwrites."""

    lake: Lake
    table: str
    kind: str = "embedded"

    def where(self) -> str:
        return self.lake.uri(self.table)

    def version(self) -> int | None:
        return self.lake.version(self.table)

    def read(self, version: int) -> pl.DataFrame:
        return pl.read_delta(self.where(), version=version, storage_options=self.lake.storage_options or None)


class RedisSnapshots:
    """Snapshots in Redis: versioned keys, and a pointer key that names the current version."""

    kind = "redis"

    def __init__(self, url: str, table: str, timeout: float = 2.0):
        import redis

        self.url, self.prefix = url, f"churn-platform:{table}"
        # Short timeouts: a poller that cannot reach Redis says so within seconds and keeps serving.
        self.client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)

    def where(self) -> str:
        return f"{self.url.split('@')[-1]} {self.prefix}"  # never the password of a redis://user:pass@host URL

    def version(self) -> int | None:
        current = self.client.get(f"{self.prefix}:current")
        return None if current is None else int(current)

    def read(self, version: int) -> pl.DataFrame:
        meta = self.client.get(f"{self.prefix}:v{version}:meta")
        if meta is None:
            raise LookupError(f"{self.where()} has no snapshot v{version} (expired or never published)")
        chunks = json.loads(meta)["chunks"]
        parts = self.client.mget([f"{self.prefix}:v{version}:{i}" for i in range(chunks)])
        if any(part is None for part in parts):
            raise LookupError(f"{self.where()} lost chunks of snapshot v{version}")
        return pl.concat([pl.from_arrow(pa.ipc.open_stream(part).read_all()) for part in parts], how="vertical")

    def publish(self, frame: pl.DataFrame, version: int) -> None:
        """Write version ``version`` whole, then point ``current`` at it; the previous version expires later."""
        table = frame.to_arrow()
        chunks = []
        for start in range(0, max(frame.height, 1), CHUNK_ROWS):
            sink = io.BytesIO()
            with pa.ipc.new_stream(sink, table.schema) as writer:
                writer.write_table(table.slice(start, CHUNK_ROWS))
            chunks.append(sink.getvalue())
        with self.client.pipeline(transaction=False) as pipe:
            for i, chunk in enumerate(chunks):
                pipe.set(f"{self.prefix}:v{version}:{i}", chunk)
            pipe.set(f"{self.prefix}:v{version}:meta", json.dumps({"chunks": len(chunks), "rows": frame.height}))
            pipe.execute()
        self.client.set(f"{self.prefix}:current", version)
        ours = f"{self.prefix}:v{version}:".encode()
        with self.client.pipeline(transaction=False) as pipe:  # every other version (and any half-written) expires
            for key in self.client.scan_iter(f"{self.prefix}:v*"):
                if not key.startswith(ours):
                    pipe.expire(key, KEEP_SECONDS, nx=True)
            pipe.execute()


def snapshot_source(settings, table: str) -> SnapshotSource:
    """The store the settings name (``PLATFORM_ONLINE_STORE``)."""
    if settings.online_store == "redis":
        return RedisSnapshots(settings.online_store_url, table)
    return LakeSnapshots(Lake(root=settings.lake, storage_options=settings.lake_storage_options), table)


def publish_snapshot(settings, lake: Lake, table: str, frame: pl.DataFrame) -> int:
    """Overwrite the lake's table (the record; its version names the snapshot) and, with Redis, publish that
    version there too. Returns the version."""
    version = lake.overwrite(table, frame)
    if settings.online_store == "redis":
        RedisSnapshots(settings.online_store_url, table).publish(frame, version)
    return version
