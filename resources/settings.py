"""The platform's settings: one typed object read from the environment, and where local state lives.

Every setting is a field of :class:`Settings`, read from a ``PLATFORM_*`` environment
variable (or the standard name a tool already uses: ``DAGSTER_HOME``, ``DBT_TARGET``),
so production services are switched by configuration alone and a typo in a value fails
at start-up with the variable's name instead of deep inside a run.

One home directory, set by ``PLATFORM_HOME``, holds all local state. Everything a run
writes (the lake, the warehouse, the MLflow store, the Dagster instance, the landing
zone) lives below it, so a test gets its own in a temp dir and ``rm -rf`` of the home
resets the platform.
"""

from __future__ import annotations

import logging
import os
import sys
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from resources.locks import hold
from simulator.config import DriftSpec, SimulatorConfig

CHECKOUT = Path(__file__).resolve().parents[1]
DBT_TARGET_PATH = "target"  # dbt's output folder, inside the dbt project
DEFAULT_HOME = CHECKOUT / ".platform"
LOG = logging.getLogger("churn_platform")


# A run over a range of daily partitions plans each asset once with the range, not once
# per day: 180 days of 12 dbt models were 2,160 planned events before the first step ran
# (about 23 ms each on SQLite). Dagster's documented trade-off: the partitions of a run
# that fails are not marked failed one by one (the run is). Set it to false to have that.
PLANNED_EVENTS_AS_SUBSETS = "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS"

DAGSTER_YAML = """\
# Written by churn-platform for the local instance; replace it for production
# (Postgres storage, a run launcher) or point DAGSTER_HOME elsewhere.
telemetry:
  enabled: false
"""


class Settings(BaseSettings):
    """Everything the platform reads from its environment, with the embedded defaults."""

    model_config = SettingsConfigDict(env_prefix="PLATFORM_", extra="ignore", env_ignore_empty=True, frozen=True)

    home: Path = Field(default=DEFAULT_HOME, description="All local state: lake, warehouse, MLflow, Dagster.")
    start_date: date = Field(default=date(2026, 1, 1), description="First day of the daily partitions.")
    source: Literal["simulator", "landing"] = Field(
        default="simulator", description="`landing`: only landed files; `simulator`: the simulator fills the rest."
    )
    # The landing zone (platform_assets/landing.py): what is taken from uploaders, and when.
    landing_follow_symlinks: bool = Field(
        default=False, description="Follow symbolic links in the landing zone, only to regular files inside it."
    )
    landing_quiet_seconds: float = Field(
        default=5.0, ge=0, description="A landed file is taken once its size and mtime are unchanged this long."
    )
    landing_temporary_max_age_seconds: float = Field(
        default=86_400.0,
        ge=0,
        description="Temporary upload names (.*, *.tmp, *.part, *.crdownload, *.filepart, ~*) wait this long, "
        "then are moved aside as abandoned.",
    )
    landing_unterminated_last_line: Literal["reject", "hold"] = Field(
        default="reject",
        description="A CSV whose last line lacks its line break (cut short): `reject` moves it aside, "
        "`hold` leaves it in place and keeps the day's rows until it is complete.",
    )
    landing_max_file_bytes: int = Field(
        default=128 * 2**20,
        gt=0,
        description="Largest landed file read, decompressed (reading takes about 7 times its size in memory); "
        "larger ones are moved aside.",
    )
    landing_max_line_bytes: int = Field(
        default=8 * 2**20, gt=0, description="Longest CSV line read; a file with a longer one is moved aside."
    )
    landing_future_days: int = Field(
        default=7,
        ge=0,
        description="A landed file dated more than this many days after today is moved aside (a mistyped year); "
        "nearer ones wait until their day is a partition.",
    )
    landing_require_marker: bool = Field(
        default=False, description="Take a day's file only once `_SUCCESS` (its folder) or `<day>.done` is there."
    )
    sim_customers: int = Field(default=20_000, gt=0, description="Simulated customers.")
    sim_days: int = Field(default=180, gt=0, description="Days of simulated history.")
    sim_drift: DriftSpec | None = Field(
        default=None,
        description='Drift injected into the simulator, JSON: {"start_date": "2026-07-05", "session_minutes_factor": 0.7}.',
    )
    lake_root: str | None = Field(default=None, description="Delta lake root (a path or s3://...); <home>/lake.")
    lake_storage_options: dict[str, str] = Field(
        default_factory=dict, description="delta-rs storage options, JSON (object storage credentials, endpoint)."
    )
    pii_salt: SecretStr | None = Field(default=None, description="Salt of the hashes of personal identifiers.")
    # Not MLFLOW_TRACKING_URI: MLflow sets that itself in-process once used.
    mlflow_tracking_uri: str | None = Field(default=None, description="MLflow tracking URI; SQLite under the home.")
    mlflow_artifact_location: str | None = Field(default=None, description="MLflow artifact root; under the home.")
    dbt_project_dir: Path = Field(default=CHECKOUT / "dbt_project", description="The dbt project to build.")
    dbt_target: str | None = Field(
        default=None, validation_alias=AliasChoices("DBT_TARGET"), description="dbt target; the profile's default."
    )
    dbt_preload: bool = Field(
        default=False,
        description="Start dbt from a process that has imported it (churn-dbt): about 2 s less per dbt command.",
    )
    duckdb_memory_limit: str = Field(
        default="4GB", pattern=r"^\d+(\.\d+)?\s*[KMGT]i?B$", description="DuckDB memory limit of a dbt build."
    )
    duckdb_threads: int = Field(default=2, ge=1, description="DuckDB threads of a dbt build.")
    duckdb_temp_directory: Path | None = Field(
        default=None, description="Where DuckDB spills past its memory limit; <home>/warehouse/spill."
    )
    feature_days: Literal["all", "used"] = Field(
        default="all",
        description="Snapshot days a run over a range of days builds into customer_features: `all` every day; `used` "
        "only its training snapshot days and its last day (the one scored), so a long history costs its sampled "
        "days (passed on to dbt in its environment, read by macros/snapshot_days.sql).",
    )
    dagster_home: Path | None = Field(
        default=None, validation_alias=AliasChoices("DAGSTER_HOME"), description="Dagster instance; <home>/dagster."
    )
    ingest_window_days: int = Field(
        default=7,
        ge=1,
        description=(
            "Days an ingest run loads, checks and stores at a time: memory is a window's, and each window "
            "costs a commit per table and a read of the keys stored on other days (object storage: "
            "a larger window, fewer round trips)."
        ),
    )
    run_executor: Literal["in_process", "multiprocess"] = Field(
        default="in_process",
        description=(
            "How a run's steps execute: `in_process` in the run's own process (no per-step start-up, "
            "which costs about 10 s of imports per step here); `multiprocess` one process per step, "
            "steps in parallel (for machines with cores to spare)."
        ),
    )
    training_max_rows: int = Field(
        default=1_000_000,
        ge=1000,
        description="Most rows of the training model that training, its validation and the promotion gate read; "
        "past it a stratified sample (the same share of every snapshot day and label, whole customers by a hash "
        "of the key), recorded with the model version.",
    )
    fairness_min_per_class: int = Field(
        default=50,
        ge=1,
        description="Churners, and non-churners, a value of a segment column needs for its ROC AUC to count in "
        "the fairness gap (promotion gate and monitoring); with fewer the value is left out, and with fewer than "
        "two values left in every segment column fairness is not evaluated (a warning).",
    )
    sensor_interval_seconds: int = Field(
        default=30,
        ge=1,
        description="Least seconds between two evaluations of each of the platform's sensors (retraining, rollout, "
        "landing files, dead runs) by the Dagster daemon.",
    )
    retrain_consecutive_days: int = Field(default=3, ge=1, description="Failing days in a row before retraining.")
    retrain_cooldown_days: int = Field(default=7, ge=0, description="Days after a retraining without another.")
    daily_schedule: bool = Field(default=False, description="Run the daily pipeline every morning (`on`/`off`).")
    contact_export_dir: Path | None = Field(
        default=None, description="Where retention contact lists are exported for a CRM; <home>/exports/contacts."
    )
    review_inbox_dir: Path | None = Field(
        default=None, description="Where reviewers drop decision files (<day>.csv); <home>/review_inbox."
    )
    lock_timeout_seconds: float = Field(
        default=3600.0, gt=0, description="How long a step or command waits for the warehouse or instance lock."
    )
    # Online scoring (churn-platform serve, platform_assets/serving).
    online_store: Literal["embedded", "redis"] = Field(
        default="embedded",
        description="Where the scoring API reads the online snapshot: the lake's Delta table (`embedded`), or Redis "
        "(`redis`, at PLATFORM_ONLINE_STORE_URL), to which online_features then publishes each version too.",
    )
    online_store_url: str | None = Field(
        default=None, description="The Redis URL of the online store (`redis://host:6379/0`), with `redis`."
    )
    serving_model: str = Field(default="churn_model", description="Registered model the scoring API serves.")
    serving_host: str = Field(default="127.0.0.1", description="Address the scoring API binds to.")
    serving_port: int = Field(default=8000, ge=0, le=65535, description="Port of the scoring API.")
    serving_workers: int = Field(default=1, ge=1, description="uvicorn worker processes of the scoring API.")
    serving_api_keys: dict[str, str] = Field(
        default_factory=dict,
        description='API keys the scoring API accepts, JSON `{"name": "sha256:<hex>"}`: hashes, never keys '
        "(`churn-platform serving-key NAME` makes one). With any key configured every route but /healthz needs one.",
    )
    serving_api_keys_file: Path | None = Field(
        default=None,
        description="A file of API keys, one `NAME sha256:<hex>` a line, re-read when it changes (keys rotate "
        "without a restart); named, even empty, every route but /healthz needs a key.",
    )
    serving_allow_keyless_remote: bool = Field(
        default=False,
        description="Let the scoring API start without API keys on a non-loopback address (a proxy in front "
        "authenticates); otherwise it refuses to.",
    )
    serving_max_in_flight: int = Field(
        default=64, ge=1, description="Requests a worker admits at once; beyond them it answers 503 at once."
    )
    serving_max_batch: int = Field(default=1000, ge=1, description="Most customers (or rows) in one request.")
    serving_max_body_bytes: int = Field(
        default=2_000_000, ge=1, description="Largest request body the scoring API reads; larger ones get 413."
    )
    serving_max_text_chars: int = Field(
        default=100, ge=1, description="Longest text value (a category) a what-if request may send."
    )
    serving_reasons: int = Field(default=3, ge=0, description="Top SHAP reasons returned per score (0: none).")
    serving_precompute: bool = Field(
        default=True,
        description="Score and explain every customer of a snapshot ahead, once per served version, so a lookup by "
        "id is a read (false: every request scores live).",
    )
    serving_precompute_child_rows: int = Field(
        default=20_000,
        ge=0,
        description="Snapshots of at least this many customers are precomputed in a child process (its own memory "
        "and cores, at serving_child_nice); smaller ones in the worker's own precompute thread, where they take "
        "milliseconds and a child's start (MLflow's import, the registry) seconds. 0: always a child.",
    )
    serving_child_nice: int = Field(
        default=10,
        ge=0,
        le=19,
        description="Niceness of the children that lay out a snapshot and precompute answers, so they yield the cores "
        "to requests; 0 where nothing needs the cores more (the tests: at 10 beside another busy process, a "
        "precompute of a few thousand customers waits half a minute).",
    )
    serving_poll_seconds: float = Field(
        default=5.0, gt=0, description="How often the API looks for a new champion, challenger or feature snapshot."
    )
    serving_challenger_mode: Literal["off", "shadow", "canary", "staged"] = Field(
        default="staged",
        description="What the live `challenger` does with traffic: `staged` follows its rollout stage (shadow, "
        "then canary, as the rollout report advances it); `shadow` or `canary` fix one; `off` gives it none.",
    )
    serving_canary_share: float = Field(
        default=0.1, ge=0.0, le=1.0, description="Share of customers (stable hash of the id) the canary answers."
    )
    serving_audit_flush_seconds: float = Field(
        default=2.0, gt=0, description="Longest an audit row waits in memory before its micro-batch is written."
    )
    serving_audit_batch_rows: int = Field(default=5000, ge=1, description="Audit rows that trigger a write at once.")
    serving_audit_queue_rows: int = Field(
        default=100_000,
        ge=1,
        description="Most audit rows a worker holds in memory (queued, or kept after a failed write); past it a "
        "scoring request gets 503 with Retry-After instead of a score without its audit row.",
    )
    serving_audit_max_unwritten_seconds: float = Field(
        default=30.0,
        gt=0,
        description="How long audit rows may wait for a write that keeps failing (or hangs) before /readyz answers 503.",
    )
    serving_shadow_drain_seconds: float = Field(
        default=5.0,
        ge=0,
        description="At shutdown, after the answers' audit rows are written: time left for queued shadow scorings.",
    )
    serving_latency_sla_ms: float = Field(
        default=5.0, gt=0, description="Latency SLA: a canary whose p95 passes it is rolled back."
    )
    serving_error_budget: float = Field(
        default=0.01, ge=0.0, le=1.0, description="Share of failed challenger requests tolerated."
    )
    rollout_window_days: int = Field(
        default=3, ge=1, description="Days of live traffic a rollout report judges the challenger on."
    )
    rollout_min_requests: int = Field(
        default=500, ge=1, description="Challenger requests in the window before it can be promoted."
    )
    rollout_auc_tolerance: float = Field(
        default=0.01, ge=0.0, description="ROC AUC the challenger may lose to the champion on matured traffic."
    )
    rollout_mode: Literal["online", "promote_on_gate"] = Field(
        default="online",
        description="`online`: a version that passed the offline gate goes live as challenger (shadow, canary) and "
        "the rollout report promotes or rolls it back; `promote_on_gate`: it is promoted straight after the gate "
        "(for platforms without the scoring API).",
    )
    rollout_quality: Literal["matured", "offline_gate"] = Field(
        default="matured",
        description="What a promotion rests on for quality: `matured` waits for the paired ROC AUC test on live "
        "customers whose outcomes matured; `offline_gate` takes the gate's verdict and promotes on operational "
        "evidence (it still rolls back a challenger significantly worse on matured outcomes).",
    )
    rollout_alpha: float = Field(
        default=0.05, gt=0, lt=1, description="Two-sided level of the rollout's tests (each side one-sided alpha/2)."
    )
    rollout_min_customers: int = Field(
        default=30, ge=10, description="Matured live customers, churned and not each, before ROC AUC is compared."
    )
    rollout_max_looks: int = Field(
        default=30,
        ge=1,
        description="Daily quality looks the rollout's alpha is spent over (O'Brien-Fleming-type spending); after "
        "them the challenger is promoted only on the offline gate's evidence or by a person.",
    )

    @model_validator(mode="after")
    def _online_store_reachable(self) -> Settings:
        if self.online_store == "redis" and not self.online_store_url:
            raise ValueError("PLATFORM_ONLINE_STORE=redis needs PLATFORM_ONLINE_STORE_URL (redis://host:6379/0)")
        return self

    @property
    def resolved_home(self) -> Path:
        return self.home.expanduser().resolve()

    @property
    def lake(self) -> str:
        return self.lake_root or str(self.resolved_home / "lake")

    @property
    def tracking_uri(self) -> str:
        return self.mlflow_tracking_uri or f"sqlite:///{self.resolved_home / 'mlflow' / 'mlflow.db'}"

    @property
    def artifact_location(self) -> str:
        return self.mlflow_artifact_location or (self.resolved_home / "mlflow" / "artifacts").as_uri()

    @property
    def simulator(self) -> SimulatorConfig:
        return SimulatorConfig(
            start_date=self.start_date.isoformat(),
            customers=self.sim_customers,
            days=self.sim_days,
            drift=self.sim_drift,
            contacts_dir=str(self.contacts_path),
        )

    @property
    def review_inbox_path(self) -> Path:
        return (self.review_inbox_dir or self.resolved_home / "review_inbox").expanduser().resolve()

    @property
    def contacts_path(self) -> Path:
        return (self.contact_export_dir or self.resolved_home / "exports" / "contacts").expanduser().resolve()

    @property
    def warehouse_path(self) -> Path:
        return self.resolved_home / "warehouse" / "churn.duckdb"

    @property
    def dbt_manifest_path(self) -> Path:
        """Where ``churn-platform prepare`` writes the dbt manifest (``resources/dbt.py``'s project builds there),
        for readers that need the file and not dbt (the scoring API)."""
        return self.dbt_project_dir.resolve() / DBT_TARGET_PATH / "manifest.json"

    @property
    def dbt_target_path(self) -> Path:
        """Where each dbt run keeps its artifacts and parse (a folder per run), under the home."""
        return self.resolved_home / "dbt" / "target"

    @property
    def duckdb_spill_directory(self) -> Path:
        return (self.duckdb_temp_directory or self.resolved_home / "warehouse" / "spill").expanduser().resolve()


def log_to_stderr() -> None:
    """The platform's log lines on stderr from INFO on, as every command prints them (once per process: the
    scoring API's worker processes call it too)."""
    if not LOG.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s churn-platform %(levelname)s %(message)s"))
        LOG.addHandler(handler)
        LOG.setLevel(logging.INFO)


def settings() -> Settings:
    """The settings as the environment has them now.

    Read once per distinct environment: reading and validating every field costs about
    7 ms here, and loading the definitions alone asks 55 times (every partitions definition
    does). Keyed on the whole environment, since tests change it; the object is frozen,
    so no caller can change what the others read.
    """
    return _settings_of(frozenset(os.environ.items()))


@lru_cache(maxsize=16)
def _settings_of(environment: frozenset[tuple[str, str]]) -> Settings:
    return Settings()


def platform_home() -> Path:
    """The home directory: ``$PLATFORM_HOME``, or ``.platform/`` in the checkout."""
    return settings().resolved_home


def export_environment() -> Path:
    """Resolve the home and export it, with the settings child processes must share.

    dbt runs as a subprocess and finds the warehouse and the lake through
    ``PLATFORM_HOME`` in its environment (``profiles.yml``, ``sources.yml``), so the
    resolved, absolute path is exported here once rather than recomputed in two languages;
    DuckDB's memory limit, threads and spill directory reach the profile the same way.
    MLflow's telemetry would try the network; it is off unless the user set it.
    """
    current = settings()
    home = current.resolved_home
    os.environ["PLATFORM_HOME"] = str(home)
    os.environ["PLATFORM_DUCKDB_MEMORY_LIMIT"] = current.duckdb_memory_limit
    os.environ["PLATFORM_DUCKDB_THREADS"] = str(current.duckdb_threads)
    if current.duckdb_temp_directory:  # else the profile's default, below the exported home
        os.environ["PLATFORM_DUCKDB_TEMP_DIRECTORY"] = str(current.duckdb_spill_directory)
    prefer_environment_bin()
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    os.environ.setdefault(PLANNED_EVENTS_AS_SUBSETS, "true")
    return home


def prefer_environment_bin() -> None:
    """Put this Python's ``bin`` first on PATH, so every dbt call (dagster-dbt's preparer
    included) uses the dbt installed beside it, even when the virtualenv is not activated."""
    bin_dir = str(Path(sys.executable).parent)
    if os.environ.get("PATH", "").split(os.pathsep)[0] != bin_dir:
        os.environ["PATH"] = os.pathsep.join([bin_dir, os.environ.get("PATH", "")])


def ensure_dagster_home(home: Path | None = None) -> Path:
    """Point ``DAGSTER_HOME`` below the platform home (unless set), write its dagster.yaml
    and create the instance's storage, once, before any run.

    Dagster creates its SQLite schema on first open without a lock: four runs started
    together on a fresh home raced (``table secondary_indexes already exists``). Here
    one process at a time creates it, under an OS file lock in the Dagster home.
    """
    from dagster import DagsterInstance

    current = settings()
    dagster_home = (current.dagster_home or (home or current.resolved_home) / "dagster").resolve()
    with hold(dagster_home / ".instance.lock", "creating the Dagster instance", current.lock_timeout_seconds, LOG):
        config = dagster_home / "dagster.yaml"
        if not config.exists():
            config.write_text(DAGSTER_YAML)
        DagsterInstance.from_config(str(dagster_home)).dispose()
    os.environ["DAGSTER_HOME"] = str(dagster_home)
    return dagster_home
