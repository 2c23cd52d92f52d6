"""What the server answers with, and how it changes without a restart.

Everything a request reads (the feature snapshot, the champion, the challenger and its
role) is one immutable ``ServingState``. A background poller looks at the registry's
aliases and the online table's Delta version every ``poll_seconds``; when either moved
(a promotion, a rollback, a new challenger, a canary moved out, a new snapshot) it
builds the next state beside the current one (loading only what changed) and swaps one
reference. A request takes the state once when it starts, so it is answered by one
consistent state, old or new, and no request waits for a swap or fails during one.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import polars as pl

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
    ):
        self.registry, self.lake, self.table, self.spec = registry, lake, table, spec
        self.mode, self.canary_share, self.poll_seconds = mode, canary_share, poll_seconds
        self.state: ServingState | None = None
        self.not_ready = "starting"
        self._models: dict[str, object] = {}
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
        challenger = self._challenger(champion)
        mode = stage_of(challenger, self.mode) if challenger else "off"
        current = self.state
        key = (champion.version, challenger.version if challenger else None, snapshot_version, mode)
        if current is not None and current.key == key:
            return False
        snapshot = (
            current.snapshot
            if current is not None and current.snapshot.version == snapshot_version
            else self._load_snapshot(snapshot_version)
        )
        served = {v.version: self._served(v, snapshot, current) for v in filter(None, (champion, challenger))}
        self._models = {version: s.model for version, s in served.items()}
        canary_rows = None
        if mode == "canary":
            ids = snapshot.frame[snapshot.entity].to_list()
            canary_rows = np.fromiter((canary_bucket(i) < self.canary_share for i in ids), bool, len(ids))
        self.state = ServingState(
            snapshot=snapshot,
            champion=served[champion.version],
            challenger=served[challenger.version] if challenger else None,
            mode=mode,
            canary_rows=canary_rows,
        )
        self.not_ready = ""
        LOG.info(f"serving {self.state.describe()}")
        return True

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
