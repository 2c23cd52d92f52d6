"""How the simulated world reacts to the platform's retention contacts, and the truth about it.

A contacted customer's daily cancellation log-odds move by a shift that depends on
hidden traits, for ``EFFECT_DAYS`` days from the day after the contact:

- ``persuadable``: price-sensitive, offer-responsive customers; the offer keeps many.
- ``sure_thing``: a small effect on customers who mostly stay anyway.
- ``lost_cause``: deep in a decline; the offer changes nothing.
- ``sleeping_dog``: long-tenured, low-usage customers whom the contact reminds to cancel.

The traits come from the simulator's hidden state (promotion propensity, price
sensitivity, engagement, decline, tenure) and a hash of the seed and customer, never
from its random stream, so a world without contacts is exactly the world it was. The
true effects are collected only when a caller asks (``truth``): tests and benchmarks
see them, raw tables never do.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import polars as pl

EFFECT_DAYS = 30
SEGMENTS = ("sure_thing", "persuadable", "lost_cause", "sleeping_dog")
SHIFTS = np.array([-0.3, -1.6, 0.0, 1.2])  # on the daily cancellation log-odds while the offer acts
CONTACT_SCHEMA = {"customer_id": pl.Int64, "contacted_on": pl.Date}
TRUTH_SCHEMA = {
    "customer_id": pl.Int64,
    "contacted_on": pl.Date,
    "segment": pl.String,
    "p_churn_untreated": pl.Float64,
    "p_churn_treated": pl.Float64,
    "effect": pl.Float64,
    "window_days_simulated": pl.Int32,
}


def read_contacts(folder: str | Path | None) -> pl.DataFrame:
    """Every contact the platform exported (Parquet files below ``folder``), one row per customer and day."""
    files = sorted(Path(folder).glob("**/*.parquet")) if folder else []
    if not files:
        return pl.DataFrame(schema=CONTACT_SCHEMA)
    frames = [pl.read_parquet(f, columns=list(CONTACT_SCHEMA)).cast(CONTACT_SCHEMA) for f in files]
    return pl.concat(frames).unique().sort("contacted_on", "customer_id")


def hashed_uniform(seed: int, keys: np.ndarray, salt: int = 0) -> np.ndarray:
    """A uniform in [0, 1) per key from a splitmix64 hash of (seed, salt, key): stable, vectorized, auditable.

    The platform's own copy is ``platform_assets.stable_hash``: the world imports nothing of the platform.
    """
    with np.errstate(over="ignore"):
        z = np.asarray(keys, dtype=np.uint64) + np.uint64((seed * 0x9E3779B1 + salt * 0x85EBCA77) % 2**64)
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(2**53)


def segments_of(world, idx: np.ndarray, tenure: np.ndarray) -> np.ndarray:
    """The hidden segment (index into ``SEGMENTS``) of customers ``idx`` on the day a contact starts acting."""
    u = hashed_uniform(world.config.seed, idx, salt=1)
    responsive = world.promo_propensity[idx] + 0.8 * (world.price_sensitivity[idx] - 1.0) + (u - 0.5)
    segment = np.where(responsive > 0.0, 1, 0)
    segment = np.where(world.declining[idx] & (world.decline[idx] > 1.6), 2, segment)
    sleeping = (tenure > 365) & (world.base[idx] < -0.35) & ~world.declining[idx] & (u < 0.5)
    return np.where(sleeping, 3, segment).astype(np.int8)


class Reaction:
    """The contacts' effect on the world, day by day, and (when collected) the true individual effects."""

    def __init__(self, contacts: pl.DataFrame, start: date, capacity: int, collect_truth: bool):
        day = (contacts["contacted_on"] - start).dt.total_days().to_numpy() + 1  # acts from the next day
        idx = contacts["customer_id"].to_numpy() - 1
        order = np.argsort(day, kind="stable")
        day, idx = day[order], idx[order]
        cuts = np.flatnonzero(np.diff(day)) + 1
        self.starting = {int(d[0]): i for d, i in zip(np.split(day, cuts), np.split(idx, cuts), strict=True)}
        self.start = start
        self.until = np.full(capacity, -1, np.int32)
        self.shift = np.zeros(capacity, np.float64)
        self.collect = collect_truth
        self.row = np.full(capacity, -1, np.int64)
        self.rows: list[dict[str, np.ndarray]] = []
        self.n_rows = 0
        self.log_survival = np.zeros((2, 0))
        self.observed = np.zeros(0, np.int32)

    def shift_today(self, world, idx: np.ndarray, t: int, tenure: np.ndarray) -> np.ndarray | None:
        """The log-odds shift of the active customers ``idx`` on day ``t``, or None when no contact acts."""
        new = self.starting.get(t)
        if new is not None:
            new = new[(new < world.n)]
            new = new[world.active[new]]
            tenure_new = t - world.signup_day[new]
            segment = segments_of(world, new, tenure_new)
            self.until[new] = t + EFFECT_DAYS - 1
            self.shift[new] = SHIFTS[segment]
            if self.collect:
                self._open(new, t, segment)
        treated = self.until[idx] >= t
        if not treated.any():
            return None
        return np.where(treated, self.shift[idx], 0.0)

    def _open(self, new: np.ndarray, t: int, segment: np.ndarray) -> None:
        rows = np.arange(self.n_rows, self.n_rows + len(new))
        self.n_rows += len(new)
        self.row[new] = rows
        self.rows.append({"idx": new, "t": np.full(len(new), t), "segment": segment})
        self.log_survival = np.concatenate([self.log_survival, np.zeros((2, len(new)))], axis=1)
        self.observed = np.concatenate([self.observed, np.zeros(len(new), np.int32)])

    def observe(self, idx: np.ndarray, t: int, logit: np.ndarray, shift: np.ndarray, churn: np.ndarray) -> None:
        """Accumulate both potential survivals of treated customers over the window.

        The hidden state evolves the same with or without the offer, so the hazard of each day
        with and without the shift gives both potential outcomes on the same path; past a
        cancellation the path is unknown and that day's hazards stand for the window's rest.
        """
        if not self.collect:
            return
        treated = self.until[idx] >= t
        rows = self.row[idx[treated]]
        hazard = np.log1p(-1.0 / (1.0 + np.exp(-np.stack([logit[treated], logit[treated] + shift[treated]]))))
        remaining = np.where(churn[treated], self.until[idx[treated]] - t, 0)
        self.log_survival[:, rows] += hazard * (1 + remaining)
        self.observed[rows] += 1 + remaining

    @staticmethod
    def empty_truth() -> pl.DataFrame:
        return pl.DataFrame(schema=TRUTH_SCHEMA)

    def truth(self) -> pl.DataFrame:
        """Per contact: its segment, the churn probability over the window without and with it, and the effect."""
        if not self.rows:
            return self.empty_truth()
        idx = np.concatenate([r["idx"] for r in self.rows])
        t = np.concatenate([r["t"] for r in self.rows])
        segment = np.concatenate([r["segment"] for r in self.rows])
        # A window cut short by the end of the simulation is extrapolated at its average daily hazard.
        survival = np.exp(self.log_survival * EFFECT_DAYS / np.maximum(self.observed, 1))
        untreated, treated = 1.0 - survival[0], 1.0 - survival[1]
        return pl.DataFrame(
            {
                "customer_id": idx.astype(np.int64) + 1,
                "contacted_on": np.datetime64(self.start, "D") + (t - 1).astype("timedelta64[D]"),
                "segment": pl.Series(SEGMENTS).gather(segment.astype(np.int64)),
                "p_churn_untreated": untreated,
                "p_churn_treated": treated,
                "effect": treated - untreated,
                "window_days_simulated": self.observed,
            },
            schema=TRUTH_SCHEMA,
        )
