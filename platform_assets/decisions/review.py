"""Human review: who waits for a person, what the person decided, and what became of it.

Customers in the predictions' review band wait in ``review_queue`` and are not contacted
until a reviewer approves. Decisions arrive two ways, both stored in one Delta table with
who, when and from where: files dropped in the review inbox
(``<inbox>/<YYYY-MM-DD>.csv`` with ``customer_id, decision, reviewer, note``; loaded by
``review_decisions``) and ``churn-platform review decide``. The latest decision of a
customer within ``valid_days`` is the one the next campaign honors.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import polars as pl

from platform_assets.tables import Table

DECISIONS = ("approve", "reject")


class ReviewError(ValueError):
    """A decision that cannot be recorded (unknown decision, missing reviewer, bad file)."""


def validate(frame: pl.DataFrame, where: str) -> pl.DataFrame:
    """Decisions typed and checked: every row a known decision with a reviewer, or the whole batch is refused."""
    missing = {"customer_id", "decision", "reviewer"} - set(frame.columns)
    if missing:
        raise ReviewError(f"{where}: missing columns {sorted(missing)}")
    typed = frame.with_columns(
        pl.col("customer_id").cast(pl.Int64, strict=False),
        pl.col("decision").cast(pl.String).str.strip_chars().str.to_lowercase(),
        pl.col("reviewer").cast(pl.String).str.strip_chars(),
        (pl.col("note") if "note" in frame.columns else pl.lit("")).cast(pl.String).fill_null("").alias("note"),
    )
    bad = typed.with_row_index("line", offset=2).filter(
        pl.col("customer_id").is_null()
        | ~pl.col("decision").is_in(DECISIONS)
        | pl.col("reviewer").is_null()
        | (pl.col("reviewer") == "")
    )
    if bad.height:
        first = bad.row(0, named=True)
        raise ReviewError(
            f"{where}: {bad.height} rows are not a decision (customer_id, decision in {DECISIONS}, reviewer); "
            f"first at line {first['line']}: {first}"
        )
    return typed


class ReviewStore:
    """The review decisions in the lake."""

    def __init__(self, lake, table: Table, valid_days: int = 30):
        self.lake, self.table, self.valid_days = lake, table, valid_days

    def record(self, decisions: pl.DataFrame, day: date, source: str) -> int:
        """Store decisions applying from ``day``; a file's rows replace that file's earlier load of the day."""
        rows = validate(decisions, source).with_columns(
            decided_at=pl.lit(datetime.now(UTC)).cast(pl.Datetime("us", "UTC")),
            source=pl.lit(source),
            ds=pl.lit(day),
        )
        rows = rows.select([pl.col(n).cast(t) for n, t in self.table.schema.items()])
        existing = self.read(day, day)
        kept = existing if source == "cli" else existing.filter(pl.col("source") != source)
        rows = pl.concat([kept, rows])
        return self.lake.replace_days(self.table, rows, day, day)

    def read(self, first: date, last: date) -> pl.DataFrame:
        if not self.lake.exists(self.table):
            return pl.DataFrame(schema=self.table.schema)
        return self.lake.read_days(self.table, first, last)

    def decisions_before(self, day: date) -> pl.DataFrame:
        """The latest decision per customer made in the ``valid_days`` up to ``day``."""
        recent = self.read(day - timedelta(days=self.valid_days), day)
        return recent.sort("ds", "decided_at").unique("customer_id", keep="last")
