"""What the server answers with, and how it changes without a restart.

Everything a request reads (the feature snapshot, the champion, the challenger and its
role, the answers precomputed for them) is one immutable ``ServingState``. A background
poller looks at the registry's aliases and the online store's version every
``poll_seconds``; when either moved (a promotion, a rollback, a new challenger, a canary
moved out, a new snapshot) it builds the next state beside the current one (loading only
what changed) and swaps one reference. A request takes the state once when it starts, so
it is answered by one consistent state, old or new, and no request waits for a swap or
fails during one.

The answers of each served version on the snapshot are precomputed in the background
(``answers.py``), so a lookup by id is a read. A new snapshot or champion is *staged*: while
the current state answers from its precomputed answers, the next one waits beside it
(``/readyz``'s ``staging``) until its champion's answers are precomputed too, then is swapped
in. Swapping at once would score every lookup live until then (TreeSHAP each time, several
times a read's CPU): one worker at 500 req/s fell seconds behind and timed requests out while a
100,000-customer snapshot's answers were computed. The first state, a state whose current one
is itself scored live, and a state whose answers cannot be precomputed (failed, or precompute
off) are swapped in at once and scored live: fresh data before fast answers. A rollback to a
version whose answers are on disk is immediate. A store that cannot be reached (Redis gone)
leaves the current state in place, so the last good snapshot keeps being served, and
``/readyz`` says so (``store_error``).

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
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Gauge

from platform_assets.ml.feature_spec import FeatureSpec
from platform_assets.serving.answers import Answers, Precomputer
from platform_assets.serving.audit import ReadSource
from platform_assets.serving.scorer import ServedModel
from platform_assets.serving.snapshot import Snapshot, open_snapshot
from platform_assets.serving.store import SnapshotSource
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
    snapshot: Snapshot
    champion: ServedModel
    challenger: ServedModel | None = None
    mode: Mode = "off"
    read: dict[str, ReadSource] = field(default_factory=dict, repr=False)  # by version: its precomputed answers

    @property
    def key(self) -> tuple:
        return (
            self.champion.version,
            self.challenger.version if self.challenger else None,
            self.snapshot.version,
            self.mode,
        )

    @property
    def served(self) -> tuple[ServedModel, ...]:
        return tuple(filter(None, (self.champion, self.challenger)))

    def describe(self) -> dict:
        return {
            "model_name": self.champion.name,
            "champion_version": self.champion.version,
            "challenger_version": self.challenger.version if self.challenger else None,
            "challenger_mode": self.mode if self.challenger else "off",
            "feature_snapshot_version": self.snapshot.version,
            "feature_snapshot_dates": [str(self.snapshot.first_day), str(self.snapshot.last_day)],
            "customers": self.snapshot.rows,
            "precomputed_versions": sorted(self.read),
        }


class StateKeeper:
    """Holds the current ``ServingState`` and replaces it when the registry or the snapshot moves."""

    def __init__(
        self,
        registry: ModelRegistry,
        store: SnapshotSource,
        table: str,
        cache: Path,
        spec: FeatureSpec,
        settings,
        metrics: CollectorRegistry | None = None,
    ):
        self.registry, self.store, self.table, self.cache, self.spec = registry, store, table, cache, spec
        self.mode, self.canary_share = settings.serving_challenger_mode, settings.serving_canary_share
        self.poll_seconds, self.lock_timeout = settings.serving_poll_seconds, settings.lock_timeout_seconds
        self.state: ServingState | None = None
        self.pending: ServingState | None = None  # staged: served once its champion's answers are precomputed
        self._pending_since = 0.0
        self.not_ready = "starting"
        self.challenger_error: dict | None = None  # the registry's challenger, skipped: it failed to load
        self.champion_error: dict | None = None  # the registry's champion, not served: it failed to load
        self.store_error: str | None = None  # the store could not be read: the last good snapshot is served
        self.on_poll: list[Callable[[], None]] = []  # run after every poll (the audit's health gauge)
        self._models: dict[str, object] = {}
        self._swap = threading.Lock()  # the poller and the precompute both replace the state
        metrics = metrics or CollectorRegistry()
        failures = Counter(
            "churn_serving_precompute_failures",
            "Versions whose answers could not be precomputed on a snapshot (they are scored live).",
            ["model_version"],
            registry=metrics,
        )
        self._precompute = (
            Precomputer(
                settings.serving_reasons,
                self.lock_timeout,
                self._precomputed,
                failures,
                self._serves,
                settings.serving_precompute_child_rows,
                self._not_precomputed,
            )
            if settings.serving_precompute
            else None
        )
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
            multiprocess_mode="livemax",
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="state-poller", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop polling. A snapshot being laid out is not waited for: its child dies with this process."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.poll_seconds + 5)
        if self._precompute is not None:
            self._precompute.stop()

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            self.refresh()
            for hook in self.on_poll:
                hook()

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
        snapshot_version = self._store_version()
        if snapshot_version is None:
            return False
        challenger = self._loadable(self._challenger(champion))
        mode = stage_of(challenger, self.mode) if challenger else "off"
        current, pending = self.state, self.pending
        key = (champion.version, challenger.version if challenger else None, snapshot_version, mode)
        if current is not None and current.key == key:
            self.champion_error = None
            self._unstage(f"the registry and the store are back to what is served {key}")
            return False
        if pending is not None and pending.key == key:
            return False  # still staging
        known = [s for s in (current, pending) if s is not None]
        snapshot = next((s.snapshot for s in known if s.snapshot.version == snapshot_version), None)
        snapshot = snapshot or self._open_snapshot(snapshot_version)
        if snapshot is None:
            return False
        try:
            served_champion = self._served(champion, known)
        except Exception as error:  # keep the current state; the next poll tries again
            self._champion_failed(champion, error)
            return False
        self.champion_error = None
        served_challenger = None
        if challenger is not None:
            try:
                served_challenger = self._served(challenger, known)
            except Exception as error:  # served as if there were no challenger; remembered for this version
                self._challenger_failed(challenger, error)
                challenger = None
        self._models = {s.version: s.model for s in filter(None, (served_champion, served_challenger))}
        state = ServingState(snapshot, served_champion, served_challenger, mode if challenger else "off")
        state = replace(state, read=self._read_sources(state, current))
        if self._stages(state, current):
            with self._swap:
                self.pending, self._pending_since = state, time.monotonic()
            LOG.info(
                f"staging {state.describe()}: v{current.champion.version} on snapshot v{current.snapshot.version} "
                f"answers until v{state.champion.version}'s answers on snapshot v{snapshot.version} are precomputed"
            )
            self._precompute.want(state.snapshot, state.champion)
            return False
        with self._swap:
            self.state, self.pending = state, None
        self._swapped()
        return True

    def _stages(self, state: ServingState, current: ServingState | None) -> bool:
        """Whether the next state waits for its champion's answers: only while the current one reads its own."""
        return (
            self._precompute is not None
            and current is not None
            and current.champion.version in current.read
            and state.champion.version not in state.read
            and self._precompute.can(state.snapshot, state.champion)
        )

    def _swapped(self) -> None:
        """After a swap: queue the answers the new state lacks (once it is current, so each job finds it served)."""
        state = self.state
        if self._precompute is not None:
            for model in state.served:
                if model.version not in state.read:
                    self._precompute.want(state.snapshot, model)
        self.not_ready = ""
        LOG.info(f"serving {state.describe()}")

    def _unstage(self, why: str) -> None:
        with self._swap:
            pending, self.pending = self.pending, None
        if pending is not None:
            LOG.info(f"staged state {pending.key} dropped: {why}")

    def staging(self) -> dict | None:
        """The state waiting for its champion's answers, for ``/readyz``."""
        pending = self.pending
        if pending is None:
            return None
        return {
            "champion_version": pending.champion.version,
            "feature_snapshot_version": pending.snapshot.version,
            "waiting_seconds": round(time.monotonic() - self._pending_since, 1),
        }

    def _store_version(self) -> int | None:
        """The store's current version, or None (not ready, or the store unreachable: the current state stays)."""
        try:
            version = self.store.version()
        except Exception as error:
            text = f"{type(error).__name__}: {error}"
            if self.store_error != text:
                kept = f"keeping snapshot v{self.state.snapshot.version}" if self.state else "nothing served yet"
                LOG.error(f"the online store {self.store.where()} cannot be read ({kept}): {text}")
            self.store_error = text
            if self.state is None:
                self.not_ready = f"the online store {self.store.where()} cannot be read: {text}"
            return None
        if self.store_error is not None:
            LOG.warning(f"the online store {self.store.where()} can be read again")
            self.store_error = None
        if version is None:
            self.not_ready = f"no online feature snapshot in {self.store.where()}: materialize online_features"
        return version

    def _open_snapshot(self, version: int) -> Snapshot | None:
        try:
            return open_snapshot(
                self.cache, version, self.table, self.spec.entity, self.spec.snapshot, self.lock_timeout
            )
        except Exception as error:  # the store went away between the version and the read: try next poll
            self.store_error = f"{type(error).__name__}: {error}"
            LOG.error(f"online snapshot v{version} could not be read from {self.store.where()}: {self.store_error}")
            if self.state is None:
                self.not_ready = f"online snapshot v{version} could not be read: {self.store_error}"
            return None

    def _read_sources(self, state: ServingState, current: ServingState | None) -> dict[str, ReadSource]:
        """The precomputed answers this machine has for the state's versions."""
        if self._precompute is None:
            return {}
        read = {}
        for model in state.served:
            known = current.read.get(model.version) if current is not None else None
            if known is not None and known.snapshot is state.snapshot and known.model is model:
                read[model.version] = known
            elif (answers := self._precompute.answers(state.snapshot, model)) is not None:
                read[model.version] = ReadSource(state.snapshot, model, answers)
        return read

    def _serves(self, snapshot: Snapshot, model: ServedModel) -> bool:
        """Whether the state, or the staged one, serves the version on the snapshot: its job is worth running."""
        return any(_serves(state, snapshot, model) for state in (self.state, self.pending))

    def _precomputed(self, snapshot: Snapshot, model: ServedModel, answers: Answers) -> None:
        """A version's answers, precomputed: the staged state swapped in, when they are its champion's; else added
        to the current state, if it still serves the version on that snapshot."""
        source = ReadSource(snapshot, model, answers)
        with self._swap:
            state, pending = self.state, self.pending
            staged = self._awaits(snapshot, model)
            if staged:
                self.state, self.pending = replace(pending, read={**pending.read, model.version: source}), None
            elif _serves(state, snapshot, model):
                self.state = replace(state, read={**state.read, model.version: source})
            else:
                return
        LOG.info(f"v{model.version}'s answers on snapshot v{snapshot.version} are precomputed: lookups are reads")
        if staged:
            self._swapped()

    def _awaits(self, snapshot: Snapshot, model: ServedModel) -> bool:
        """Whether the staged state waits for these answers: its champion's, on its snapshot."""
        pending = self.pending
        return pending is not None and pending.snapshot is snapshot and pending.champion is model

    def _not_precomputed(self, snapshot: Snapshot, model: ServedModel) -> None:
        """A staged state whose champion's answers could not be computed is swapped in anyway, scored live."""
        with self._swap:
            if not self._awaits(snapshot, model):
                return
            self.state, self.pending = self.pending, None
        LOG.warning(f"v{model.version} on snapshot v{snapshot.version} is served scored live: its answers failed")
        self._swapped()

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

    def _served(self, version: RegisteredVersion, known: list[ServingState]) -> ServedModel:
        for state in known:
            for loaded in state.served:
                if loaded.version == version.version and loaded.run_id == version.run_id:
                    return loaded
        return ServedModel.load(self.registry, version, self._models.get(version.version))


def _serves(state: ServingState | None, snapshot: Snapshot, model: ServedModel) -> bool:
    return state is not None and state.snapshot is snapshot and any(m is model for m in state.served)
