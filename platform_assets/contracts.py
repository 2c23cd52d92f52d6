"""Data contracts for the raw tables, as Pandera models.

A contract names each column, its type, its allowed values and its meaning; the
descriptions become the column schema shown in the Dagster catalog. ``ds`` is the
day a record landed (the partition). Vocabularies that the business may extend
(regions, channels, offer types) are checked for presence, not membership, so a new
acquisition channel is data to monitor, not a row to quarantine.

Keys hold across days: every raw table records events (a customer's first record, a
session, a ticket, an offer, a plan change, a cancellation), each landed once. A
``unique`` column is the table's key: a row whose key is already stored on another
day, or first landed on an earlier day, is quarantined, never stored twice. A table
without one (plan changes) is keyed by its whole row, so an exact copy of a row is
quarantined as a duplicate and the row is stored once.
"""

from __future__ import annotations

import datetime as dt

import pandera.polars as pa
import polars as pl

from platform_assets.vocabulary import AGE_BANDS, DEVICES, PLANS, TICKET_CATEGORIES

EMAIL = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
# The earliest plausible date of any event: older values are typos or placeholders (0001-01-01).
EARLIEST = dt.date(2000, 1, 1)
EARLIEST_TIME = dt.datetime(2000, 1, 1)
# The declared lateness of events: a session, ticket, offer, plan change or cancellation lands
# on its day or at most this many days later; older ones are a re-sent or misdated export.
# (A customer's record carries a signup_date of any earlier day: it is not bounded by this.)
LATENESS_DAYS = 3
LATE = f"is more than {LATENESS_DAYS} days before the day the record landed (the declared lateness)"


def _event_day(column: str) -> pl.Expr:
    return pl.col(column).cast(pl.Date)


def _before_landing(prefix: str, column: str) -> classmethod:
    """The check ``<prefix>_before_landing``: an event lands on its day or later, never before it."""

    def check(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(_event_day(column) <= pl.col("ds"))

    check.__name__ = check.__qualname__ = f"{prefix}_before_landing"
    return pa.dataframe_check(check, error=f"{column} is after the day the record landed")


def _within_lateness(prefix: str, column: str) -> classmethod:
    """The check ``<prefix>_within_lateness``: an event lands at most ``LATENESS_DAYS`` after its day."""

    def check(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(_event_day(column) >= pl.col("ds") - pl.duration(days=LATENESS_DAYS))

    check.__name__ = check.__qualname__ = f"{prefix}_within_lateness"
    return pa.dataframe_check(check, error=f"{column} {LATE}")


class Customers(pa.DataFrameModel):
    """A customer as first recorded: who they are, how they came and what they pay."""

    customer_id: int = pa.Field(gt=0, unique=True, description="Customer key.")
    name: str = pa.Field(str_length={"min_value": 1}, description="Full name (PII; dropped on ingestion).")
    email: str = pa.Field(str_matches=EMAIL, description="Email address (PII; stored only as a salted hash).")
    signup_date: dt.date = pa.Field(ge=EARLIEST, description="Day the subscription started.")
    plan: str = pa.Field(isin=PLANS, description="Subscription plan at signup.")
    monthly_charge: float = pa.Field(gt=0, le=1000, description="Monthly price in EUR at signup.")
    region: str = pa.Field(str_length={"min_value": 1}, description="Sales region.")
    age_band: str = pa.Field(isin=AGE_BANDS, description="Age band of the customer.")
    acquisition_channel: str = pa.Field(str_length={"min_value": 1}, description="Marketing channel of acquisition.")
    ds: dt.date = pa.Field(description="Day the record landed (partition).")

    class Config:
        strict = True

    signed_up_before_landing = _before_landing("signed_up", "signup_date")


class Sessions(pa.DataFrameModel):
    """One use of the product."""

    session_id: int = pa.Field(unique=True, description="Session key.")
    customer_id: int = pa.Field(gt=0, description="Customer who used the product.")
    started_at: dt.datetime = pa.Field(ge=EARLIEST_TIME, description="Start of the session (UTC).")
    duration_minutes: float = pa.Field(ge=0, le=1440, description="Length of the session in minutes.")
    device: str = pa.Field(isin=DEVICES, description="Device used.")
    ds: dt.date = pa.Field(description="Day the record landed (partition).")

    class Config:
        strict = True

    started_before_landing = _before_landing("started", "started_at")
    started_within_lateness = _within_lateness("started", "started_at")


class SupportTickets(pa.DataFrameModel):
    """A support request, with when (and whether) it was resolved."""

    ticket_id: int = pa.Field(unique=True, description="Ticket key.")
    customer_id: int = pa.Field(gt=0, description="Customer who opened the ticket.")
    opened_at: dt.datetime = pa.Field(ge=EARLIEST_TIME, description="When the ticket was opened (UTC).")
    category: str = pa.Field(isin=TICKET_CATEGORIES, description="Topic of the ticket.")
    resolved_at: dt.datetime = pa.Field(
        ge=EARLIEST_TIME,
        nullable=True,
        description="When it was resolved; empty if never. Features use it only once it has happened.",
    )
    ds: dt.date = pa.Field(description="Day the record landed (partition).")

    class Config:
        strict = True

    opened_before_landing = _before_landing("opened", "opened_at")
    opened_within_lateness = _within_lateness("opened", "opened_at")

    @pa.dataframe_check(error="resolved_at is before opened_at")
    def resolved_after_opening(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col("resolved_at").is_null() | (pl.col("resolved_at") >= pl.col("opened_at")))


class Promotions(pa.DataFrameModel):
    """A marketing offer made to a customer, and their response."""

    offer_id: int = pa.Field(unique=True, description="Offer key.")
    customer_id: int = pa.Field(gt=0, description="Customer the offer was made to.")
    campaign: str = pa.Field(str_length={"min_value": 1}, description="Campaign the offer belongs to.")
    offer_type: str = pa.Field(str_length={"min_value": 1}, description="Kind of offer (discount, free month).")
    offered_on: dt.date = pa.Field(ge=EARLIEST, description="Day the offer was made.")
    responded_on: dt.date = pa.Field(ge=EARLIEST, nullable=True, description="Day the customer accepted; empty if not.")
    ds: dt.date = pa.Field(description="Day the record landed (partition).")

    class Config:
        strict = True

    offered_before_landing = _before_landing("offered", "offered_on")
    offered_within_lateness = _within_lateness("offered", "offered_on")

    @pa.dataframe_check(error="responded_on is before offered_on")
    def responded_after_offer(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(
            pl.col("responded_on").is_null() | (pl.col("responded_on") >= pl.col("offered_on"))
        )


class PlanChanges(pa.DataFrameModel):
    """An upgrade or downgrade of a subscription."""

    customer_id: int = pa.Field(gt=0, description="Customer who changed plan.")
    changed_on: dt.date = pa.Field(ge=EARLIEST, description="Day the new plan took effect.")
    from_plan: str = pa.Field(isin=PLANS, description="Plan before the change.")
    to_plan: str = pa.Field(isin=PLANS, description="Plan after the change.")
    new_monthly_charge: float = pa.Field(gt=0, le=1000, description="Monthly price in EUR after the change.")
    ds: dt.date = pa.Field(description="Day the record landed (partition).")

    class Config:
        strict = True

    changed_before_landing = _before_landing("changed", "changed_on")
    changed_within_lateness = _within_lateness("changed", "changed_on")

    @pa.dataframe_check(error="from_plan equals to_plan")
    def plan_changed(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col("from_plan") != pl.col("to_plan"))


class Cancellations(pa.DataFrameModel):
    """The end of a subscription: the event the churn model predicts."""

    customer_id: int = pa.Field(gt=0, unique=True, description="Customer who cancelled.")
    cancelled_on: dt.date = pa.Field(ge=EARLIEST, description="Day the subscription ended.")
    reason: str = pa.Field(str_length={"min_value": 1}, description="Reason given at cancellation.")
    ds: dt.date = pa.Field(description="Day the record landed (partition).")

    class Config:
        strict = True

    cancelled_before_landing = _before_landing("cancelled", "cancelled_on")
    cancelled_within_lateness = _within_lateness("cancelled", "cancelled_on")


CONTRACTS: dict[str, type[pa.DataFrameModel]] = {
    "customers": Customers,
    "sessions": Sessions,
    "support_tickets": SupportTickets,
    "promotions": Promotions,
    "plan_changes": PlanChanges,
    "cancellations": Cancellations,
}

# What happens to personal data on ingestion: hashed columns keep joins and counts
# possible (same email, same hash), dropped ones are gone before anything is stored.
PII: dict[str, dict[str, str]] = {"customers": {"name": "drop", "email": "hash"}}


def key_columns(table: str) -> list[str]:
    """The columns that identify a row of the table: its unique columns, else every column but ``ds``."""
    columns = CONTRACTS[table].to_schema().columns
    unique = [name for name, column in columns.items() if column.unique]
    return unique or [name for name in columns if name != "ds"]


def may_empty_day(table: str) -> bool:
    """Whether a file with no rows may replace a day that holds rows.

    Off unless the contract says ``class Config: metadata = {"may_empty_day": True}``:
    an empty delivery over a stored day is more often a failed export than an empty day.
    """
    return bool((getattr(CONTRACTS[table].Config, "metadata", None) or {}).get("may_empty_day"))


def known_columns() -> set[str]:
    """Every column name of every contract: the only header names a note may show."""
    return {c for table in CONTRACTS for c in CONTRACTS[table].to_schema().columns}


def landed_columns(table: str) -> list[str]:
    """The columns a landed file must have: the contract's, without ``ds`` (the file's day)."""
    return [c for c in CONTRACTS[table].to_schema().columns if c != "ds"]
