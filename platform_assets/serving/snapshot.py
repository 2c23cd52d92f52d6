"""The online snapshot on this machine: laid out once in files that every worker shares.

A published snapshot (a version of the online store, ``store.py``) is written once per
machine, under ``<cache>/v<version>/``, for the first worker that needs it, by a child
process (at nice 10 by default) that reads the version whole from the store: a million customers pass
through the child's memory (about 700 MB at its peak), never a worker's. An OS file lock makes
the other workers wait for it, and then they all open the same files:

- ``index.arrow``: one Arrow IPC record batch that every worker memory-maps: each customer's
  lookup key, sorted (the id itself for integer ids, a 64-bit hash for text ids), the stored
  text id (text ids only), the snapshot day, and where the row's features end in
  ``features.json``. A lookup is a binary search (numpy ``searchsorted``) in pages the workers
  share: no per-worker dict of a million ids, and about 20 bytes a customer.
- ``features.json``: each row's feature values as the audit records them (JSON),
  concatenated. Read by offset with ``os.pread`` (by the audit writer, and by live scoring),
  so these pages stay in the page cache, shared and evictable, outside every worker's
  resident memory.
- ``features.arrow``: the typed feature columns in batches, read by the precompute
  (``answers.py``) and nowhere else.

Rows are in lookup order everywhere, so a row's position is the same in every file, and in
the answers precomputed for the snapshot.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import logging
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

from resources.locks import hold

LOG = logging.getLogger("churn_platform.serving")
BATCH_ROWS = 65_536  # rows per batch when writing, and per batch of the precompute
EPOCH = date(1970, 1, 1)
PR_SET_PDEATHSIG = 1  # prctl(2)


class SnapshotUnreadable(RuntimeError):
    """The store's version could not be read or laid out (the child building it failed)."""


def child_command(module: str, *arguments) -> list[str]:
    """The command of a child of this worker: ``python -m module``, with this process's id first."""
    return [sys.executable, "-m", module, str(os.getpid()), *map(str, arguments)]


def child_of(parent: str) -> None:
    """In a child process: run at the children's niceness (``serving_child_nice``), and die when the worker that
    started it ends (Linux's parent death signal; a parent already gone ends it here), so a stopped or killed
    server leaves no computation behind."""
    from resources.settings import settings

    os.nice(settings().serving_child_nice)
    with contextlib.suppress(AttributeError, OSError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != int(parent):
        sys.exit(f"the worker {parent} that started this process is gone")


def move_into_place(built: Path, path: Path) -> None:
    """Rename a finished folder into place (one step); if another process already put its own there, drop ours."""
    try:
        os.rename(built, path)
    except OSError:
        if not path.is_dir():
            raise
        shutil.rmtree(built, ignore_errors=True)


def text_key(customer_id: str) -> int:
    """A text id's lookup key: 64 bits of its blake2b hash (a collision is resolved by comparing the ids)."""
    return int.from_bytes(hashlib.blake2b(customer_id.encode(), digest_size=8).digest(), "little", signed=True)


@dataclass(frozen=True)
class Snapshot:
    """One snapshot version, memory-mapped; row positions index its files and its answers."""

    version: int
    path: Path
    schema: pl.Schema  # the feature columns and their types, as published
    lookup: np.ndarray = field(repr=False)  # int64, sorted
    text_ids: pa.Array | None = field(repr=False)  # the stored ids, when they are text
    days: np.ndarray = field(repr=False)  # int32, days since 1970-01-01
    json_end: np.ndarray = field(repr=False)  # int64, end of each row in features.json
    first_day: date = EPOCH
    last_day: date = EPOCH
    _json: object = field(default=None, repr=False)  # features.json, open for pread (closed with the snapshot)
    _keep: tuple = field(default=(), repr=False)  # the memory map, alive as long as the arrays

    @property
    def rows(self) -> int:
        return len(self.lookup)

    @property
    def id_is_integer(self) -> bool:
        return self.text_ids is None

    def key(self, customer_id) -> int | None:
        """The lookup key of an id as a client sends it (JSON numbers and strings both work), None if none."""
        if self.id_is_integer:
            try:
                value = int(customer_id)
            except (TypeError, ValueError):
                return None
            return value if -(2**63) <= value < 2**63 else None
        return text_key(str(customer_id))

    def locate(self, customer_ids: list) -> tuple[np.ndarray, np.ndarray]:
        """Row positions of the ids found (in request order), and which ids were found."""
        if len(customer_ids) == 1:  # one id: a scalar binary search, a few microseconds
            row = self._row(customer_ids[0])
            return (np.array([row]), np.array([True])) if row >= 0 else (np.empty(0, np.int64), np.array([False]))
        keys = [self.key(i) for i in customer_ids]
        known = np.fromiter((k if k is not None else 0 for k in keys), np.int64, len(keys))
        at = np.minimum(np.searchsorted(self.lookup, known), self.rows - 1)
        hit = (self.lookup[at] == known) & np.fromiter((k is not None for k in keys), bool, len(keys))
        if not self.id_is_integer:  # same hash, another id: look at the neighbours with that hash
            for i in np.flatnonzero(hit):
                at[i] = self._text_row(str(customer_ids[i]), int(at[i]))
            hit &= at >= 0
        return at[hit].astype(np.int64), hit

    def _row(self, customer_id) -> int:
        key = self.key(customer_id)
        if key is None:
            return -1
        row = int(self.lookup.searchsorted(key))
        if row == self.rows or self.lookup[row] != key:
            return -1
        return row if self.id_is_integer else self._text_row(str(customer_id), row)

    def _text_row(self, customer_id: str, row: int) -> int:
        """The row of a text id among the rows from ``row`` on that share its hash, or -1."""
        key = self.lookup[row]
        while row < self.rows and self.lookup[row] == key:
            if self.text_ids[row].as_py() == customer_id:
                return row
            row += 1
        return -1

    def customer_ids(self, rows: np.ndarray) -> list:
        """The stored ids of rows (integers, or text)."""
        if self.id_is_integer:
            return self.lookup[rows].tolist()
        return self.text_ids.take(pa.array(rows)).to_pylist()

    def dates(self, rows: np.ndarray) -> list[date]:
        return [EPOCH + timedelta(days=d) for d in self.days[rows].tolist()]

    def features_json(self, rows: np.ndarray) -> list[str]:
        """Each row's feature values as JSON, read by offset (the audit's ``features``)."""
        ends = self.json_end[rows]
        starts = np.where(rows > 0, self.json_end[np.maximum(rows - 1, 0)], 0)
        descriptor = self._json.fileno()
        return [
            os.pread(descriptor, end - start, start).decode()
            for start, end in zip(starts.tolist(), ends.tolist(), strict=True)
        ]

    def frame(self, rows: np.ndarray) -> pl.DataFrame:
        """The typed feature values of rows (for live scoring): their JSON read back with the snapshot's types."""
        texts = pl.DataFrame({"row": self.features_json(rows)}, schema={"row": pl.String})
        return texts.select(pl.col("row").str.json_decode(pl.Struct(self.schema)).struct.unnest())

    def batches(self) -> Iterator[pl.DataFrame]:
        """The typed feature values of every row, in row order, a batch at a time (read, not mapped)."""
        with pa.OSFile(str(self.path / "features.arrow")) as source:
            reader = pa.ipc.open_file(source)
            for i in range(reader.num_record_batches):
                yield pl.from_arrow(reader.get_batch(i))


def open_snapshot(
    root: Path, version: int, table: str, entity: str, snapshot_date: str, lock_timeout: float
) -> Snapshot:
    """The snapshot ``version`` of the store's ``table`` under ``root``: opened if this machine has it, else built
    first by a child process (one at a time; the other workers wait for it, then open it)."""
    path = root / f"v{version}"
    if not (path / "index.arrow").exists():
        with hold(root / f"v{version}.lock", f"building online snapshot v{version}", lock_timeout, LOG):
            if not (path / "index.arrow").exists():
                command = child_command(__name__, root, version, table, entity, snapshot_date)
                built = subprocess.run(command, capture_output=True, text=True, timeout=lock_timeout)
                if built.returncode != 0:
                    said = (built.stderr.strip().splitlines() or ["no message"])[-1]
                    raise SnapshotUnreadable(f"building snapshot v{version} failed: {said}")
    return open_laid_out(path, version)


def main(parent: str, root: str, version: str, table: str, entity: str, snapshot_date: str) -> None:
    """The child: read the version from the configured store, lay it out, remove the older snapshots."""
    child_of(parent)
    from platform_assets.serving.store import snapshot_source
    from resources.settings import settings

    folder, number = Path(root), int(version)
    _build(folder / f"v{number}", snapshot_source(settings(), table).read(number), entity, snapshot_date)
    _remove_older(folder, number)


def _build(path: Path, frame: pl.DataFrame, entity: str, snapshot_date: str) -> None:
    """Write the snapshot's files into a temporary folder, then rename it into place (one step)."""
    if frame.is_empty():
        raise ValueError("the online snapshot is empty: nothing to serve")
    ids = frame[entity]
    integer = ids.dtype.is_integer()
    keys = ids.cast(pl.Int64).to_numpy() if integer else np.fromiter(map(text_key, ids.to_list()), np.int64, len(ids))
    order = np.argsort(keys, kind="stable")
    frame, keys = frame[order], keys[order]
    repeated = frame.filter(frame[entity].is_duplicated())[entity]
    if repeated.len():
        raise ValueError(f"the online snapshot holds customer {repeated[0]} more than once")
    features = frame.drop(entity, snapshot_date)
    temporary = path.with_name(f"{path.name}.building-{os.getpid()}")
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir(parents=True)
    ends, written = np.empty(frame.height, np.int64), 0
    with (temporary / "features.json").open("wb") as out:
        for start in range(0, frame.height, BATCH_ROWS):
            rows = features.slice(start, BATCH_ROWS).select(pl.struct(pl.all()).struct.json_encode()).to_series()
            lengths = rows.str.len_bytes().to_numpy().astype(np.int64)
            ends[start : start + len(lengths)] = written + np.cumsum(lengths)
            written += int(lengths.sum())
            out.write(rows.str.join("").item().encode())
    columns = {
        "lookup": pa.array(keys, pa.int64()),
        "day": frame[snapshot_date].cast(pl.Date).to_arrow().cast(pa.int32()),
        "json_end": pa.array(ends, pa.int64()),
    }
    if not integer:
        columns["customer_id"] = frame[entity].cast(pl.String).to_arrow()
    _write(temporary / "index.arrow", pa.table(columns), rows=None)
    _write(temporary / "features.arrow", features.to_arrow(), rows=BATCH_ROWS)
    move_into_place(temporary, path)


def _write(path: Path, table: pa.Table, rows: int | None) -> None:
    """An uncompressed Arrow IPC file (so it maps without copies), in one batch unless ``rows`` is given."""
    table = table.combine_chunks()
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=rows or max(table.num_rows, 1))


def open_laid_out(path: Path, version: int) -> Snapshot:
    """A snapshot this machine has laid out, memory-mapped."""
    source = pa.memory_map(str(path / "index.arrow"))
    index = pa.ipc.open_file(source).read_all()

    def column(name: str) -> np.ndarray:
        (chunk,) = index.column(name).chunks  # one batch: a view of the mapped file
        return chunk.to_numpy(zero_copy_only=True)

    schema = pl.from_arrow(pa.ipc.open_file(pa.OSFile(str(path / "features.arrow"))).schema.empty_table()).schema
    days = column("day")
    text_ids = index.column("customer_id").combine_chunks() if "customer_id" in index.column_names else None
    return Snapshot(
        version=version,
        path=path,
        schema=schema,
        lookup=column("lookup"),
        text_ids=text_ids,
        days=days,
        json_end=column("json_end"),
        first_day=EPOCH + timedelta(days=int(days.min())),
        last_day=EPOCH + timedelta(days=int(days.max())),
        _json=(path / "features.json").open("rb", buffering=0),
        _keep=(source,),
    )


def _remove_older(root: Path, version: int) -> None:
    """Delete this machine's snapshots older than the one before ``version`` (a worker still mapping one keeps
    reading it: an unlinked file lives until it is closed)."""
    for older in root.glob("v*"):
        number = older.name[1:].split(".", 1)[0]
        if number.isdigit() and int(number) < version - 1:
            if older.is_dir():
                shutil.rmtree(older, ignore_errors=True)
            else:
                older.unlink(missing_ok=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
