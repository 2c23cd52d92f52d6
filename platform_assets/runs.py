"""How the CLI, the demos, the tests and the benchmarks ask for a run: its console log
level and the partition range it covers. No Dagster import, so the CLI stays quick to start."""

from datetime import date


def log_level(level: str) -> dict:
    """Run config that sets the console log level of a run."""
    return {"loggers": {"console": {"config": {"log_level": level}}}}


QUIET = log_level("WARNING")  # runs inside a command or a test: warnings and errors only


def range_tags(first: date, last: date) -> dict[str, str]:
    """The tags that make one run cover the partitions ``first..last``, as a backfill's ranged run does."""
    return {
        "dagster/asset_partition_range_start": first.isoformat(),
        "dagster/asset_partition_range_end": last.isoformat(),
    }
