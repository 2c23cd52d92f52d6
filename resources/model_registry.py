"""MLflow tracking and model registry: a SQLite file and an artifact folder by default."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

import dagster as dg
from pydantic import Field

CHAMPION = "champion"
CHALLENGER = "challenger"  # a version that passed the gate, live in shadow or canary until its online verdict
CANDIDATE = "candidate"  # the newest trained version, until the gate has judged it
PROMOTED_AT = "promoted_at"
ROLLED_BACK_AT = "rolled_back_at"
GATE = "gate"  # tag: the offline gate's verdict, "passed" or "refused"; only a passed version gets traffic
LIVE_SINCE = "live_since"  # tag: when the version became the live challenger (UTC, ISO)
HISTORY = "decision."  # tags decision.001, decision.002, ...: the version's decisions, appended, never rewritten


class RegistryUnavailable(RuntimeError):
    """The registry failed to answer (not "no such alias"): nothing may be decided on its silence."""


def _not_found(error) -> bool:
    """MLflow's "no such model or alias" (RESOURCE_DOES_NOT_EXIST; INVALID_PARAMETER_VALUE "... not found")."""
    code = getattr(error, "error_code", "")
    return code == "RESOURCE_DOES_NOT_EXIST" or (code == "INVALID_PARAMETER_VALUE" and "not found" in str(error))


@dataclass(frozen=True)
class RegisteredVersion:
    """A registered model version, with MLflow's numbers as strings."""

    version: str
    run_id: str
    tags: dict[str, str]
    description: str

    @classmethod
    def of(cls, mlflow_version) -> RegisteredVersion:
        return cls(
            version=str(mlflow_version.version),
            run_id=mlflow_version.run_id,
            tags=dict(mlflow_version.tags),
            description=mlflow_version.description or "",
        )


class ModelRegistry(dg.ConfigurableResource):
    """Where models are tracked, registered and given the aliases ``challenger`` and ``champion``.

    Any MLflow tracking URI works (``http://mlflow:5000``, ``postgresql://...``); the
    default is a SQLite file under the platform home, which needs no server.
    """

    tracking_uri: str = Field(description="MLflow tracking URI (also used as the registry URI).")
    artifact_location: str = Field(description="Where the experiment stores run artifacts (a folder or URI).")
    experiment: str = Field(default="churn", description="MLflow experiment of the training runs.")
    model_name: str = Field(default="churn_model", description="Registered model name.")
    ui_url: str = Field(default="http://127.0.0.1:5000", description="MLflow UI, for links (`make mlflow`).")

    def named(self, model_name: str) -> ModelRegistry:
        """The same registry, for another registered model (each declared dataset has its own)."""
        if model_name == self.model_name:
            return self
        return ModelRegistry(
            tracking_uri=self.tracking_uri,
            artifact_location=self.artifact_location,
            experiment=self.experiment,
            model_name=model_name,
            ui_url=self.ui_url,
        )

    def split(self, run_id: str) -> str | None:
        """The split a training run recorded (JSON), or None for a run that recorded none."""
        return self.activate().get_run(run_id).data.tags.get("split")

    def activate(self):
        """Point this process's MLflow at the registry and experiment; returns a client."""
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        import mlflow

        if self.tracking_uri.startswith("sqlite:///"):
            Path(self.tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.tracking_uri)
        if mlflow.get_experiment_by_name(self.experiment) is None:
            mlflow.create_experiment(self.experiment, artifact_location=self.artifact_location)
        mlflow.set_experiment(self.experiment)
        return mlflow.MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)

    def version(self, alias: str) -> RegisteredVersion | None:
        """The model version holding ``alias``, or None when there is none.

        Any other failure (a registry that is down, a 5xx, a locked database) raises
        ``RegistryUnavailable``: read as "no champion", it would let the gate promote
        a challenger against the first-model floor alone.
        """
        from mlflow.exceptions import MlflowException

        try:
            client = self.activate()
            return RegisteredVersion.of(client.get_model_version_by_alias(self.model_name, alias))
        except MlflowException as error:
            if _not_found(error):
                return None
            raise RegistryUnavailable(f"{self.model_name} alias {alias!r}: the registry failed: {error}") from error

    def record(self, version: str, step: str, verdict: str, reason: str) -> None:
        """Append one decision to a version's history (tags ``decision.NNN``), never rewriting an earlier one."""
        client = self.activate()
        tags = client.get_model_version(self.model_name, version).tags
        number = 1 + sum(1 for key in tags if key.startswith(HISTORY))
        entry = {"at": _now(), "step": step, "verdict": verdict, "reason": reason[:4000]}
        client.set_model_version_tag(self.model_name, version, f"{HISTORY}{number:03d}", json.dumps(entry))

    @staticmethod
    def history(version: RegisteredVersion) -> list[dict]:
        """A version's decisions, oldest first."""
        return [json.loads(version.tags[k]) for k in sorted(k for k in version.tags if k.startswith(HISTORY))]

    def make_challenger(self, version: str) -> None:
        """Give a version that passed the gate live traffic (shadow or canary, as the server is set)."""
        client = self.activate()
        client.set_registered_model_alias(self.model_name, CHALLENGER, version)
        client.set_model_version_tag(self.model_name, version, LIVE_SINCE, _now())

    def load(self, version: str):
        """The ``ChurnModel`` of a version (its own logged code), ready to score polars frames."""
        import mlflow

        self.activate()
        return mlflow.pyfunc.load_model(f"models:/{self.model_name}/{version}").unwrap_python_model()

    def by_number(self, version: str) -> RegisteredVersion:
        return RegisteredVersion.of(self.activate().get_model_version(self.model_name, version))

    def reference_profile(self, run_id: str) -> dict:
        """The reference profile logged with a training run (read once per run and process)."""
        self.activate()
        return _load_profile(self.tracking_uri, run_id)

    def validation_metrics(self, run_id: str) -> dict[str, float]:
        """The metrics a training run reported on its validation window (``validation_`` stripped)."""
        metrics = self.activate().get_run(run_id).data.metrics
        return {k.removeprefix("validation_"): v for k, v in metrics.items() if k.startswith("validation_")}

    def promote(self, version: str) -> None:
        client = self.activate()
        client.set_registered_model_alias(self.model_name, CHAMPION, version)
        client.set_model_version_tag(self.model_name, version, PROMOTED_AT, _now())

    def rollback(self) -> tuple[str, str]:
        """Give ``champion`` back to the version that held it before; returns (from, to)."""
        client = self.activate()
        current = self.version(CHAMPION)
        if current is None:
            raise RuntimeError(f"{self.model_name} has no champion to roll back")
        earlier = [
            v
            for v in map(RegisteredVersion.of, client.search_model_versions(f"name = '{self.model_name}'"))
            if PROMOTED_AT in v.tags
            and ROLLED_BACK_AT not in v.tags
            and v.version != current.version
            and v.tags[PROMOTED_AT] < current.tags.get(PROMOTED_AT, "~")
        ]
        if not earlier:
            raise RuntimeError(
                f"version {current.version} is the first champion of {self.model_name}; nothing to roll back to"
            )
        previous = max(earlier, key=lambda v: v.tags[PROMOTED_AT])
        client.set_model_version_tag(self.model_name, current.version, ROLLED_BACK_AT, _now())
        self.promote(previous.version)
        return current.version, previous.version

    def run_url(self, experiment_id: str, run_id: str) -> str:
        return f"{self.ui_url}/#/experiments/{experiment_id}/runs/{run_id}"

    def version_url(self, version: str) -> str:
        return f"{self.ui_url}/#/models/{self.model_name}/versions/{version}"


@cache
def _load_profile(tracking_uri: str, run_id: str) -> dict:
    import mlflow

    return mlflow.artifacts.load_dict(f"runs:/{run_id}/reference_profile.json")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")
