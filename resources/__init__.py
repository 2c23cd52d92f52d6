"""Configurable resources, with local defaults under the platform home.

Every value comes from :class:`resources.settings.Settings`, so production settings
(object storage, a warehouse target, a tracking server) are configuration, not code.

Importing the package imports nothing else: the resources are imported where they are
built, so a process that needs one (a dbt run reading settings, the CLI) pays for it alone.
"""

from __future__ import annotations


def build_resources() -> dict[str, object]:
    """The resources of the code location, resolved against ``PLATFORM_HOME``."""
    import dagster as dg

    from resources.dbt import dbt_resource
    from resources.exports import ContactExport, ReviewInbox
    from resources.lake import Lake
    from resources.model_registry import ModelRegistry
    from resources.privacy import Privacy
    from resources.settings import export_environment, settings
    from resources.sources import LANDING_RULES, RawSource
    from resources.warehouse import Warehouse

    export_environment()
    config = settings()
    return {
        "lake": Lake(root=config.lake, storage_options=config.lake_storage_options),
        "source": RawSource(
            landing_root=str(config.resolved_home / "landing"),
            simulator_enabled=config.source == "simulator",
            simulator=config.simulator,
            **{rule: getattr(config, f"landing_{rule}") for rule in LANDING_RULES},  # PLATFORM_LANDING_<RULE>
        ),
        "privacy": Privacy(
            # An EnvVar when set, so the value is read at run time and never shown in the UI.
            configured_salt=dg.EnvVar("PLATFORM_PII_SALT") if config.pii_salt else None,
            salt_file=str(config.resolved_home / "secrets" / "pii_salt"),
        ),
        "dbt": dbt_resource(),
        "warehouse": Warehouse(path=str(config.warehouse_path), write_lock_timeout_seconds=config.lock_timeout_seconds),
        "registry": ModelRegistry(tracking_uri=config.tracking_uri, artifact_location=config.artifact_location),
        "contact_export": ContactExport(folder=str(config.contacts_path)),
        "review_inbox": ReviewInbox(folder=str(config.review_inbox_path)),
    }
