"""What the server answers with, and how it changes without a restart.

Everything a request reads (the feature snapshot, the champion, the challenger and its
role) is one immutable ``ServingState``. A background poller looks at the registry's
aliases and the online table's Delta version every ``poll_seconds``; when either moved
(a promotion, a rollback, a new challenger, a canary moved out, a new snapshot) it
builds the next state beside the current one (loading only what changed) and swaps one
reference. A request takes the state once when it starts, so it is answered by one
consistent state, old or new, and no request waits for a swap or fails during one.

Champion and challenger load separately. A challenger that fails to load is reported
(``/readyz``'s ``challenger_error``, the ``churn_serving_model_load_failures`` metric, one
log line) and served as if there were none, while champion and snapshot swaps go on; the
failure is remembered for that version, so its artifacts are not fetched again every poll,
until the alias moves (to another version, or away and back). A champion that fails to
load keeps the current state, retried every poll, and ``/readyz`` says so
(``champion_error``, or 503 when nothing is served yet).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import polars as pl
from prometheus_client import CollectorRegistry, Counter, Gauge

from platform_assets.ml.feature_spec import FeatureSpec
from platform_assets.serving.scorer import ServedModel
from platform_assets.serving.store import FeatureSnapshot
from resources.lake import Lake
from resources.model_registry import CHALLENGER, CHAMPION, GATE, ModelRegistry, RegisteredVersion

LOG = logging.getLogger("churn_platform.serving")
CANARY_ROLLED_BACK = "canary_rolled_back_at"  # tag: the rollout sensor moved this version out of live traffic
STAGE = "rollout_stage"  # tag: `shadow` (default) or `canary`, the stage the rollout report advanced it to
Mode = Literal["off", "shadow", "canary", "staged"]


def live_challenger(challenger: RegisteredVersion | None, champion: RegisteredVersion | None):
    """The challenger if it may take live traffic: it passed the offline gate, is not the champion, not rolled back."""
    if challenger is None or champion is None or challenger.version == champion.version:
        return None
    if CANARY_ROLLED_BACK in challenger.tags or challenger.tags.get(GATE) != "passed":
        return None
    return challenger


def stage_of(challenger: RegisteredVersion, mode: str) -> str:
    """The traffic a live challenger gets: the server's fixed mode, or under ``staged`` its rollout stage."""
    return challenger.tags.get(STAGE, "shadow") if mode == "staged" else mode


def canary_bucket(customer_id) -> float:
    """A stable number in [0, 1) per customer id: the same customers stay on the canary, in every process."""
    digest = hashlib.blake2b(str(customer_id).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


@dataclass(frozen=True)
class ServingState:
    snapshot: FeatureSnapshot
    champion: ServedModel
    challenger: ServedModel | None = None
    mode: Mode = "off"
    canary_rows: np.ndarray | None = field(default=None, repr=False)  # per snapshot row: the canary answers

    @property
    def key(self) -> tuple:
        return (
            self.champion.version,
            self.challenger.version if self.challenger else None,
            self.snapshot.version,
            self.mode,
        )

    def describe(self) -> dict:
        dates = self.snapshot.frame[self.snapshot.snapshot]
        return {
            "model_name": self.champion.name,
            "champion_version": self.champion.version,
            "challenger_version": self.challenger.version if self.challenger else None,
            "challenger_mode": self.mode if self.challenger else "off",
            "feature_snapshot_version": self.snapshot.version,
            "feature_snapshot_dates": [str(dates.min()), str(dates.max())],
            "customers": self.snapshot.frame.height,
        }


class StateKeeper:
    """Holds the current ``ServingState`` and replaces it when the registry or the snapshot moves."""

    def __init__(
        self,
        registry: ModelRegistry,
        lake: Lake,
        table: str,
        spec: FeatureSpec,
        mode: Mode,
        canary_share: float,
        poll_seconds: float,
        metrics: CollectorRegistry | None = None,
    ):
        self.registry, self.lake, self.table, self.spec = registry, lake, table, spec
        self.mode, self.canary_share, self.poll_seconds = mode, canary_share, poll_seconds
        self.state: ServingState | None = None
        self.not_ready = "starting"
        self.challenger_error: dict | None = None  # the registry's challenger, skipped: it failed to load
        self.champion_error: dict | None = None  # the registry's champion, not served: it failed to load
        self._models: dict[str, object] = {}
        metrics = metrics or CollectorRegistry()
        self._load_failures = Counter(
            "churn_serving_model_load_failures",
            "Model versions that failed to load, by role (a challenger counts once per version and alias move).",
            ["model_version", "role"],
            registry=metrics,
        )
        self._challenger_skipped = Gauge(
            "churn_serving_challenger_skipped",
            "1 while the registry's challenger is not served because it failed to load.",
            registry=metrics,
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="state-poller", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            self.refresh()

    def refresh(self) -> bool:
        """Look at the registry and the snapshot; swap in a new state if either moved. True if swapped."""
        try:
            return self._refresh()
        except Exception as error:  # keep answering with the current state; say why in /readyz
            LOG.exception("refreshing the serving state failed")
            if self.state is None:
                self.not_ready = f"loading failed: {error}"
            return False

    def _refresh(self) -> bool:
        champion = self.registry.version(CHAMPION)
        if champion is None:
            self.not_ready = f"{self.registry.model_name} has no {CHAMPION}: train and promote a model first"
            return False
        snapshot_version = self.lake.version(self.table)
        if snapshot_version is None:
            self.not_ready = f"no online feature snapshot at {self.lake.uri(self.table)}: materialize online_features"
            return False
        challenger = self._loadable(self._challenger(champion))
        mode = stage_of(challenger, self.mode) if challenger else "off"
        current = self.state
        key = (champion.version, challenger.version if challenger else None, snapshot_version, mode)
        if current is not None and current.key == key:
            self.champion_error = None
            return False
        snapshot = (
            current.snapshot
            if current is not None and current.snapshot.version == snapshot_version
            else self._load_snapshot(snapshot_version)
        )
        try:
            served_champion = self._served(champion, snapshot, current)
        except Exception as error:  # keep the current state; the next poll tries again
            self._champion_failed(champion, error)
            return False
        self.champion_error = None
        served_challenger = None
        if challenger is not None:
            try:
                served_challenger = self._served(challenger, snapshot, current)
            except Exception as error:  # served as if there were no challenger; remembered for this version
                self._challenger_failed(challenger, error)
                challenger = None
        self._models = {s.version: s.model for s in filter(None, (served_champion, served_challenger))}
        mode = mode if challenger else "off"
        canary_rows = None
        if mode == "canary":
            ids = snapshot.frame[snapshot.entity].to_list()
            canary_rows = np.fromiter((canary_bucket(i) < self.canary_share for i in ids), bool, len(ids))
        self.state = ServingState(
            snapshot=snapshot,
            champion=served_champion,
            challenger=served_challenger,
            mode=mode,
            canary_rows=canary_rows,
        )
        self.not_ready = ""
        LOG.info(f"serving {self.state.describe()}")
        return True

    def _loadable(self, challenger: RegisteredVersion | None) -> RegisteredVersion | None:
        """The challenger to serve: None while it is the version that failed to load. Once the alias
        leaves that version the failure is forgotten, so the version is tried again if it returns."""
        failed = self.challenger_error
        if failed is not None and (challenger is None or challenger.version != failed["version"]):
            self.challenger_error = None
            self._challenger_skipped.set(0)
            return challenger
        return None if failed is not None else challenger

    def _challenger_failed(self, challenger: RegisteredVersion, error: Exception) -> None:
        text = f"{type(error).__name__}: {error}"
        self.challenger_error = {"version": challenger.version, "error": text}
        self._load_failures.labels(challenger.version, "challenger").inc()
        self._challenger_skipped.set(1)
        LOG.error(
            f"challenger v{challenger.version} of {self.registry.model_name} failed to load and is skipped "
            f"(served as if there were none) until the {CHALLENGER} alias moves: {text}"
        )

    def _champion_failed(self, champion: RegisteredVersion, error: Exception) -> None:
        text = f"{type(error).__name__}: {error}"
        self._load_failures.labels(champion.version, "champion").inc()
        first = self.champion_error is None or self.champion_error["version"] != champion.version
        self.champion_error = {"version": champion.version, "error": text}
        if self.state is None:
            self.not_ready = f"champion v{champion.version} failed to load: {text}"
        kept = f"keeping champion v{self.state.champion.version}" if self.state else "nothing served yet"
        (LOG.error if first else LOG.debug)(
            f"champion v{champion.version} of {self.registry.model_name} failed to load ({kept}; "
            f"retried every poll): {text}"
        )

    def _challenger(self, champion: RegisteredVersion) -> RegisteredVersion | None:
        if self.mode == "off":
            return None
        return live_challenger(self.registry.version(CHALLENGER), champion)

    def _load_snapshot(self, version: int) -> FeatureSnapshot:
        uri, options = self.lake.uri(self.table), self.lake.storage_options or None
        frame = pl.read_delta(uri, version=version, storage_options=options)
        return FeatureSnapshot.of(version, frame, self.spec.entity, self.spec.snapshot)

    def _served(self, version: RegisteredVersion, snapshot: FeatureSnapshot, current: ServingState | None):
        if current is not None and current.snapshot is snapshot:
            for loaded in (current.champion, current.challenger):
                if loaded is not None and loaded.version == version.version:
                    return loaded
        model = self._models.get(version.version) or self.registry.load(version.version)
        profile = self.registry.reference_profile(version.run_id)
        return ServedModel.of(self.registry.model_name, version.version, version.run_id, model, snapshot, profile)
