"""``churn-platform review``: the reviewer's side of the queue, without the Dagster UI."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import date

import polars as pl

from platform_assets.decisions.review import ReviewError, ReviewStore
from platform_assets.decisions.scope import DecisionScope


def _lake():
    from resources import build_resources

    return build_resources()["lake"]


def _latest_queue_day(lake, scope: DecisionScope) -> date | None:
    if not lake.exists(scope.review_queue):
        return None
    return lake.scan(scope.review_queue).select(pl.col("ds").max()).collect().item()


def review_list(args: argparse.Namespace, scope: DecisionScope) -> None:
    """Print the queue of a day (the latest by default), minus customers decided since it was built."""
    lake = _lake()
    day = args.day or _latest_queue_day(lake, scope)
    if day is None:
        sys.exit("No review queue yet: materialize review_queue for a scored day first")
    queue = lake.read_days(scope.review_queue, day)
    decided = ReviewStore(lake, scope.review_decisions).read(day, date.max).select("customer_id")
    waiting = queue.join(decided, on="customer_id", how="anti")
    print(f"Review queue of {day}: {waiting.height} waiting ({queue.height - waiting.height} decided since)")
    with pl.Config(tbl_rows=args.limit, tbl_width_chars=160, fmt_str_lengths=80, tbl_hide_dataframe_shape=True):
        print(waiting.drop("ds").head(args.limit))


def review_decide(args: argparse.Namespace, scope: DecisionScope) -> None:
    """Record one decision, applying from the queue's day (or ``--day``)."""
    lake = _lake()
    day = args.day or _latest_queue_day(lake, scope)
    if day is None:
        sys.exit("No review queue yet, and no --day given")
    decision = pl.DataFrame(
        {
            "customer_id": [args.customer_id],
            "decision": [args.decision],
            "reviewer": [args.reviewer],
            "note": [args.note],
        }
    )
    try:
        version = ReviewStore(lake, scope.review_decisions).record(decision, day, "cli")
    except ReviewError as error:
        sys.exit(str(error))
    print(f"Recorded: {args.decision} customer {args.customer_id} by {args.reviewer} from {day} (Delta v{version})")


def add_commands(commands, ready, scope_of: Callable[[str | None], DecisionScope]) -> None:
    """``review list`` and ``review decide`` under the main parser; ``ready`` prepares the home first, and
    ``scope_of`` finds the decisions of ``--model`` (default: the platform's own)."""
    review = commands.add_parser("review", help="list the review queue, record review decisions")
    review.add_argument("--model", help="registered model whose review queue to use (default: the platform's own)")
    actions = review.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="customers waiting for a review decision")
    listing.add_argument("--day", type=date.fromisoformat, help="queue of this day (default: the latest)")
    listing.add_argument("--limit", type=int, default=50)
    listing.set_defaults(func=lambda a: (ready(), review_list(a, scope_of(a.model))))
    decide = actions.add_parser("decide", help="approve or reject contacting a customer")
    decide.add_argument("customer_id", type=int)
    decide.add_argument("decision", choices=["approve", "reject"])
    decide.add_argument("--reviewer", required=True)
    decide.add_argument("--note", default="")
    decide.add_argument("--day", type=date.fromisoformat, help="day it applies from (default: the queue's)")
    decide.set_defaults(func=lambda a: (ready(), review_decide(a, scope_of(a.model))))
