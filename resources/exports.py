"""Files exchanged with other systems and people: contact lists for a CRM, review decisions coming back."""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path

import dagster as dg
import polars as pl
from pydantic import Field


class ContactExport(dg.ConfigurableResource):
    """A folder of one contact list per campaign day, as CSV and Parquet (``<folder>/<YYYY-MM-DD>.csv|parquet``;
    another dataset's in ``<folder>/<registered model>/``).

    Files are written beside their final name and renamed into place, so a reader never
    sees half a list; re-running a day replaces its files. The simulated world reads the
    Parquet files to know whom the platform contacted.
    """

    folder: str = Field(description="Where contact lists are written (a CRM's pick-up folder).")

    def paths(self, day: date, under: tuple[str, ...] = ()) -> dict[str, Path]:
        root = Path(self.folder, *under)
        return {kind: root / f"{day.isoformat()}.{kind}" for kind in ("csv", "parquet")}

    def write(self, day: date, contacts: pl.DataFrame, under: tuple[str, ...] = ()) -> dict[str, Path]:
        paths = self.paths(day, under)
        paths["csv"].parent.mkdir(parents=True, exist_ok=True)
        for kind, path in paths.items():
            partial = path.with_name(f".{path.name}.partial")
            if kind == "csv":
                contacts.write_csv(partial)
            else:
                contacts.write_parquet(partial)
            os.replace(partial, path)
        return paths


class ReviewInbox(dg.ConfigurableResource):
    """The folder reviewers (or their tool) drop decision files in: ``<folder>/<YYYY-MM-DD>[-name].csv``
    (another dataset's in ``<folder>/<registered model>/``)."""

    folder: str = Field(description="Where review decision files land.")

    def files(self, day: date, under: tuple[str, ...] = ()) -> list[Path]:
        root = Path(self.folder, *under)
        return sorted(p for p in root.glob(f"{day.isoformat()}*.csv") if p.is_file()) if root.is_dir() else []
