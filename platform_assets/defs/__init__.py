"""The Dagster definitions, one folder per domain; each folder's ``defs()`` makes its assets,
checks, jobs, sensors and schedules, and ``platform_assets.definitions`` merges them.

Nothing here runs on import: the dbt manifest is read, and the settings consulted, when
``defs()`` is called. The logic the definitions call lives outside this package, in plain
modules (``platform_assets.ml``, ``monitoring``, ``rollout``, ``decisions``, ...).
"""
