"""Logging a LightGBM booster to MLflow as a pyfunc model, and registering its version.

The churn model and the uplift model are both a booster plus its feature encoding,
served by a models-from-code file (``pyfunc_model.py``, ``decisions/uplift_pyfunc.py``)
that imports only libraries, so a logged model never runs another version's code.
"""

from __future__ import annotations

import json
import tempfile
from importlib.metadata import version
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import lightgbm as lgb

PIP = ("mlflow", "lightgbm", "polars", "numpy", "pandas", "pyarrow")


def models_from_code(module: str) -> Path:
    """The file of a models-from-code module, found without importing it (it imports mlflow)."""
    return Path(find_spec(module).origin)


def pip_requirements() -> list[str]:
    """The libraries a logged model needs, pinned to the versions that trained it."""
    return [f"{name}=={version(name)}" for name in PIP]


def log_booster(
    booster: lgb.Booster,
    features: list[str],
    categories: dict[str, list[str]],
    python_model: Path,
    registered_model_name: str,
    **log_model: Any,
):
    """Log ``booster`` and its encoding in the active MLflow run and register a new version of the model.

    ``log_model`` goes to ``mlflow.pyfunc.log_model`` (a signature, an input example).
    Returns MLflow's ``ModelInfo``; ``registered_model_version`` is the new version.
    """
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        booster_path, encoding_path = Path(tmp, "booster.txt"), Path(tmp, "encoding.json")
        booster.save_model(str(booster_path))
        encoding_path.write_text(json.dumps({"features": list(features), "categories": categories}))
        return mlflow.pyfunc.log_model(
            name="model",
            python_model=str(python_model),
            artifacts={"booster": str(booster_path), "encoding": str(encoding_path)},
            pip_requirements=pip_requirements(),
            registered_model_name=registered_model_name,
            **log_model,
        )
