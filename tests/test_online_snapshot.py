"""The scoring API's shared files on their own (no server): a snapshot laid out by its child process from a real
Delta table, looked up by integer and by text ids (a hash collision included), and the answers precomputed
from it equal to live scoring on every row. The server-level behaviour is in tests/test_serving.py."""

import json
import threading
import time
from types import SimpleNamespace

import lightgbm as lgb
import numpy as np
import polars as pl
import pytest

from platform_assets.ml.bands import RiskBands
from platform_assets.ml.pyfunc_model import ChurnModel
from platform_assets.serving import snapshot as snapshots
from platform_assets.serving.answers import Precomputer, answers_path, open_answers, write_answers
from platform_assets.serving.scorer import ServedModel
from platform_assets.serving.snapshot import open_snapshot
from resources.lake import Lake

TABLE = "serving/online_features"
N = 70_000  # more than one batch of 65,536 rows
PARAMS = {"objective": "binary", "verbosity": -1, "num_threads": 1, "num_leaves": 15}


def _frame(ids) -> pl.DataFrame:
    rng = np.random.default_rng(4)
    return pl.DataFrame(
        {
            "customer_id": ids,
            "snapshot_date": pl.date_range(pl.date(2026, 5, 1), pl.date(2026, 5, 30), eager=True).sample(
                len(ids), with_replacement=True, seed=1
            ),
            "tenure_days": rng.integers(0, 900, len(ids)),
            "sessions_30d": pl.Series(rng.normal(5, 2, len(ids))).set(pl.Series(rng.random(len(ids)) < 0.05), None),
            "plan": rng.choice(["basic", "pro", "team"], len(ids)).tolist(),
        }
    )


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("PLATFORM_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("PLATFORM_LAKE_ROOT", raising=False)
    monkeypatch.delenv("PLATFORM_ONLINE_STORE", raising=False)
    return tmp_path / "home"


def _published(home, frame: pl.DataFrame) -> int:
    return Lake(root=str(home / "lake")).overwrite(TABLE, frame)


def test_a_snapshot_is_laid_out_once_by_a_child_and_found_by_integer_ids(home):
    ids = np.random.default_rng(2).permutation(N) * 3  # unsorted, sparse
    frame = _frame(ids)
    version = _published(home, frame)
    root = home / "serving" / "snapshots"
    snapshot = open_snapshot(root, version, TABLE, "customer_id", "snapshot_date", 60)
    assert snapshot.rows == N and snapshot.id_is_integer and np.all(np.diff(snapshot.lookup) > 0)
    asked = [int(ids[5]), "10", 1, str(ids[7]), 2**80, "x"]  # a JSON string id finds an integer customer
    rows, found = snapshot.locate(asked)
    assert found.tolist() == [True, False, False, True, False, False]
    assert snapshot.customer_ids(rows) == [int(ids[5]), int(ids[7])]
    expected = pl.concat([frame.filter(pl.col("customer_id") == int(ids[i])) for i in (5, 7)])
    assert snapshot.dates(rows) == expected["snapshot_date"].to_list()
    values = expected.drop("customer_id", "snapshot_date")
    assert [json.loads(text) for text in snapshot.features_json(rows)] == values.to_dicts()
    assert snapshot.frame(rows).equals(values)  # live scoring reads back exactly the published values
    (single,), hit = snapshot.locate([int(ids[5])])
    assert hit.tolist() == [True] and single == rows[0]
    assert open_snapshot(root, version, TABLE, "customer_id", "snapshot_date", 60).rows == N  # opened, not rebuilt

    newer = _published(home, frame.head(10))
    open_snapshot(root, newer, TABLE, "customer_id", "snapshot_date", 60)
    _published(home, frame.head(20))
    open_snapshot(root, newer + 1, TABLE, "customer_id", "snapshot_date", 60)
    assert sorted(p.name for p in root.glob("v*") if p.is_dir()) == [f"v{newer}", f"v{newer + 1}"]


def test_text_ids_are_found_through_a_hash_collision(home, monkeypatch):
    frame = _frame([f"C-{i:05d}" for i in range(200)])
    version = _published(home, frame)
    root = home / "serving" / "snapshots"
    snapshot = open_snapshot(root, version, TABLE, "customer_id", "snapshot_date", 60)
    assert not snapshot.id_is_integer
    rows, found = snapshot.locate(["C-00042", "C-99999", 42])
    assert found.tolist() == [True, False, False] and snapshot.customer_ids(rows) == ["C-00042"]

    colliding = frame.head(3).with_columns(pl.Series("customer_id", ["a", "b", "c"]))
    real = snapshots.text_key
    monkeypatch.setattr(snapshots, "text_key", lambda text: 7 if text in ("a", "b") else real(text))
    from platform_assets.serving.snapshot import _build, open_laid_out

    _build(root / "collide", colliding, "customer_id", "snapshot_date")  # in process: the patched hash
    collided = open_laid_out(root / "collide", 0)
    rows, found = collided.locate(["b", "a", "c", "d"])
    assert found.tolist() == [True, True, True, False] and collided.customer_ids(rows) == ["b", "a", "c"]


def test_precomputed_answers_equal_live_scoring_on_every_row(home):
    frame = _frame(np.arange(N))
    version = _published(home, frame)
    snapshot = open_snapshot(home / "snapshots", version, TABLE, "customer_id", "snapshot_date", 60)
    features, categories = ["tenure_days", "sessions_30d", "plan"], {"plan": ["basic", "pro", "team"]}
    rng = np.random.default_rng(8)
    train = _frame(np.arange(5000))
    raw = ChurnModel.from_parts(None, features, categories)
    label = (rng.random(5000) < 1 / (1 + np.exp((train["tenure_days"].to_numpy() - 300) / 200))).astype(int)
    booster = lgb.train(PARAMS, lgb.Dataset(raw.matrix(train), label), 30)
    bands = RiskBands(0.3, 0.6, 0.55, 0.65, "test cuts")
    model = ServedModel("m", "1", "run", ChurnModel.from_parts(booster, features, categories), bands=bands)
    path = answers_path(snapshot, model, 3)
    write_answers(path, snapshot, model, 3)
    answers = open_answers(path, "1")
    every = np.arange(snapshot.rows)
    live = model.arrays(model.encode(snapshot.frame(every)), 3)  # the live path: the rows read back, then scored
    for name in ("probability", "band", "review", "order", "contribution"):  # every row, exactly
        assert np.array_equal(getattr(answers.arrays, name), getattr(live, name)), name
    assert set(np.unique(answers.arrays.band)) == {0, 1, 2}
    one = every[1234:1235]  # one row, on one thread, as a request scores it
    assert answers.scores(one, features) == model.score(model.encode(snapshot.frame(one)), 3)


class _HeldPrecomputer(Precomputer):
    """The real queue and thread; each file's computation waits for ``release`` and returns its name."""

    def __init__(self, current):
        self.release, self.started = threading.Event(), threading.Event()
        self.done: list[tuple[str, object]] = []
        super().__init__(3, 10.0, lambda s, m, answers: self.done.append((answers, m)), None, current)

    def _answers(self, snapshot, model, path):
        self.started.set()
        assert self.release.wait(10)
        return path.name


def test_a_version_served_again_while_its_answers_wait_in_the_queue_still_gets_them(tmp_path):
    """The aliases move away and back while a job waits: the model served now is a new object, and the
    job runs for it (it was skipped for the old object, and the canary never got its answers)."""
    snapshot = SimpleNamespace(path=tmp_path, version=1)
    champion, canary, canary_again = (SimpleNamespace(version=v, run_id="r") for v in ("1", "2", "2"))
    served = {"1": champion, "2": canary}
    precompute = _HeldPrecomputer(lambda s, m: served.get(m.version) is m)
    try:
        precompute.want(snapshot, champion)
        assert precompute.started.wait(10)  # the champion's file is being computed
        precompute.want(snapshot, canary)  # waits behind it
        served["2"] = canary_again  # off and on again: a new object for the same version
        precompute.want(snapshot, canary_again)
        precompute.release.set()
        deadline = time.monotonic() + 10
        while len(precompute.done) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert precompute.done == [("answers-v1-r-r3", champion), ("answers-v2-r-r3", canary_again)]
    finally:
        precompute.stop()
