"""The code location: every domain's definitions (``platform_assets.defs``) merged, with the resources.

The ML, monitoring and serving definitions are made once per dataset the dbt project
declares (``platform_assets.defs.datasets``).
"""

import dagster as dg

from platform_assets.defs import decisions, features, ml, monitoring, operations, predictions, raw, serving
from resources import build_resources
from resources.settings import settings

DOMAINS = (raw, features, ml, predictions, monitoring, serving, decisions, operations)


def build_definitions() -> dg.Definitions:
    """The definitions with resources resolved against the current ``PLATFORM_HOME``."""
    return dg.Definitions.merge(
        *(domain.defs() for domain in DOMAINS),
        dg.Definitions(resources=build_resources(), executor=run_executor()),
    )


def run_executor() -> dg.ExecutorDefinition:
    """The executor of every job, launched runs included (``PLATFORM_RUN_EXECUTOR``)."""
    return dg.in_process_executor if settings().run_executor == "in_process" else dg.multiprocess_executor


defs = build_definitions()
