"""The scoring API as ``churn-platform serve`` runs it: uvicorn's factory, in worker processes that only score.

LightGBM imports scikit-learn when it is installed, for its estimator wrappers, and
scikit-learn imports most of scipy: about 60 MB more resident in every worker, for code a
worker never runs (it scores with ``Booster.predict``). This entry point marks scikit-learn
absent before anything imports LightGBM, so LightGBM goes without its wrappers; the
platform's other processes (training) import this module never, and a process that has
already imported scikit-learn keeps it. Measured in ``benchmarks/serving.py``.
"""

import sys

if "sklearn" not in sys.modules:
    sys.modules["sklearn"] = None  # `import sklearn` raises ImportError from here on, in this process

from platform_assets.serving.app import create_app
from resources.settings import log_to_stderr

log_to_stderr()  # a spawned worker logs as the command does (with one worker, the command's process is the worker)
__all__ = ["create_app"]
