"""A seeded simulator of a subscription business, the platform's built-in data source.

Customers carry a hidden engagement level that drifts day by day; some slide into a
decline. Usage sessions, support tickets, promotion responses, plan changes and the
cancellation hazard all follow from that hidden state, so churn shows in behaviour
(falling usage, unresolved tickets, price, short tenure, promotion response) without
being a function of any single observed column. A model can learn it, not trivially.

The loop runs over days and is vectorized over customers: a day's random draws come
from a generator seeded with ``(seed, day)``, so the events of any day are the same
whichever window is asked for. Asking for days ``a..b`` replays the world from its
start to ``b`` and keeps the events of ``a..b``; asking for several windows at once
(``simulate_windows``) replays it once and hands over each window's events as soon as
the window ends, so a long history never has to be held in memory whole.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import date, timedelta

import numpy as np
import polars as pl

from simulator.config import SimulatorConfig
from simulator.treatment import Reaction, read_contacts

# The business's closed vocabularies; the data contracts accept the same (platform_assets/vocabulary.py).
PLANS = ("basic", "standard", "premium")
AGE_BANDS = ("18-24", "25-34", "35-44", "45-54", "55+")
DEVICES = ("mobile", "web", "tv")
TICKET_CATEGORIES = ("technical", "billing", "account", "cancellation")
PLAN_PRICES = np.array([19.0, 39.0, 69.0])
REGIONS = ("north", "south", "east", "west")
CHANNELS = ("organic", "paid_search", "social", "referral", "partner")
OFFER_TYPES = ("discount_10", "discount_25", "free_month")
CANCEL_REASONS = ("low_usage", "support", "price", "other")
TABLES = ("customers", "sessions", "support_tickets", "promotions", "plan_changes", "cancellations")

_FIRST = np.array(
    "ada alan amara bea carl chen dana eli emma farah gus hana ivan jade kai lars lea "  # noqa: SIM905
    "liam maya mia nico nora omar pia raj rosa sam sara tom uma vera wei yara zoe".split()
)
_LAST = np.array(
    "adams baker costa diaz evans fischer garcia hansen ito jensen kim lopez moreau "  # noqa: SIM905
    "novak okafor patel quinn rossi silva tanaka usman vogel walsh xu young zhang".split()
)

_SESSION_RATE = 0.35  # sessions per day of an average customer
_ENGAGEMENT_SD = 0.38  # stationary spread of the day-to-day engagement deviation


class _World:
    """Per-customer state as flat numpy arrays, grown as customers sign up."""

    def __init__(self, config: SimulatorConfig, capacity: int):
        self.config = config
        self.n = 0
        self.capacity = capacity
        self.signup_day = np.zeros(capacity, np.int32)
        self.plan = np.zeros(capacity, np.int8)
        self.charge = np.zeros(capacity, np.float64)
        self.region = np.zeros(capacity, np.int8)
        self.age_band = np.zeros(capacity, np.int8)
        self.channel = np.zeros(capacity, np.int8)  # index into channels(); the drift channel is last
        self.base = np.zeros(capacity, np.float64)  # log engagement level, for life
        self.price_sensitivity = np.zeros(capacity, np.float64)
        self.promo_propensity = np.zeros(capacity, np.float64)
        self.deviation = np.zeros(capacity, np.float64)  # day-to-day engagement deviation
        self.decline = np.zeros(capacity, np.float64)  # accumulated slide of a disengaging customer
        self.declining = np.zeros(capacity, bool)
        self.unresolved_load = np.zeros(capacity, np.float64)
        self.promo_until = np.full(capacity, -1, np.int32)
        self.active = np.zeros(capacity, bool)


def channels(config: SimulatorConfig) -> tuple[str, ...]:
    """The acquisition channels, with the drift's new channel last when there is one."""
    new = config.drift.new_channel if config.drift else None
    return CHANNELS + ((new,) if new and new not in CHANNELS else ())


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _add_customers(world: _World, rng: np.random.Generator, k: int, day: int, initial: bool) -> np.ndarray:
    config = world.config
    ids = np.arange(world.n, world.n + k)
    if world.n + k > world.capacity:
        raise RuntimeError("simulator capacity exceeded; raise the capacity margin")
    world.n += k
    world.signup_day[ids] = rng.integers(-730, 0, k) if initial else day
    plan = rng.choice(3, k, p=[0.45, 0.38, 0.17]).astype(np.int8)
    world.plan[ids] = plan
    world.charge[ids] = np.round(PLAN_PRICES[plan] * rng.uniform(0.9, 1.12, k), 2)
    world.region[ids] = rng.choice(len(REGIONS), k, p=[0.3, 0.25, 0.25, 0.2])
    age = rng.choice(len(AGE_BANDS), k, p=[0.14, 0.3, 0.26, 0.18, 0.12]).astype(np.int8)
    world.age_band[ids] = age
    channel = rng.choice(len(CHANNELS), k, p=[0.35, 0.25, 0.2, 0.12, 0.08]).astype(np.int8)
    drift = config.drift
    if drift and drift.new_channel and not initial and day >= (drift.start - config.start).days:
        switched = rng.random(k) < drift.new_channel_share
        channel[switched] = len(channels(config)) - 1
    world.channel[ids] = channel
    # Referral and organic customers engage more, paid social less; the young use it most.
    channel_effect = np.array([0.15, -0.05, -0.2, 0.25, 0.0, -0.3])[channel]
    age_effect = np.array([0.2, 0.1, 0.0, -0.1, -0.25])[age]
    world.base[ids] = channel_effect + age_effect + rng.normal(0.0, 0.45, k)
    world.price_sensitivity[ids] = rng.gamma(2.0, 0.5, k)
    world.promo_propensity[ids] = rng.normal(0.0, 1.0, k)
    world.deviation[ids] = rng.normal(0.0, _ENGAGEMENT_SD, k)
    if initial:  # start near the steady state: some of the base is already sliding
        sliding = rng.random(k) < 0.08
        world.declining[ids] = sliding
        world.decline[ids] = np.where(sliding, rng.uniform(0.0, 1.0, k), 0.0)
    world.active[ids] = True
    return ids


def _day_frame(columns: dict[str, np.ndarray], day: date) -> dict[str, np.ndarray]:
    n = len(next(iter(columns.values())))
    return {**columns, "ds": np.full(n, np.datetime64(day, "D"))}


def simulate(config: SimulatorConfig, first: date, last: date) -> dict[str, pl.DataFrame]:
    """Simulate the business from ``config.start`` to ``last``; return the events of ``first..last``.

    Returns one frame per raw table (customers, sessions, support_tickets, promotions,
    plan_changes, cancellations), each with a ``ds`` column: the day the record lands.
    Customers on the books at the start land on the first day.
    """
    return next(simulate_windows(config, [(first, last)]))


def simulate_windows(
    config: SimulatorConfig,
    windows: list[tuple[date, date]],
    contacts: pl.DataFrame | None = None,
    truth: list[pl.DataFrame] | None = None,
) -> Iterator[dict[str, pl.DataFrame]]:
    """Simulate once up to the last window's end; yield each window's events (as ``simulate``) when it ends.

    ``windows`` are ``(first, last)`` pairs in order, not overlapping. The events of a
    window are the same as ``simulate`` gives for it alone. Retention contacts
    (``customer_id``, ``contacted_on``; by default those exported to ``config.contacts_dir``)
    act on the churn hazard from the day after (``simulator.treatment``); a list passed as
    ``truth`` receives, at the end, the true effect of each contact (for tests only).
    """
    for (first, last), after in zip(windows, [*windows[1:], None], strict=True):
        if first < config.start:
            raise ValueError(f"first day {first} is before the simulation start {config.start}")
        if last < first:
            raise ValueError(f"last day {last} is before first day {first}")
        if after is not None and after[0] <= last:
            raise ValueError(f"windows overlap or are out of order: {first}..{last} then {after[0]}..{after[1]}")
    bounds = [((a - config.start).days, (b - config.start).days) for a, b in windows]
    n_days = bounds[-1][1] + 1
    initial = round(config.customers * 0.7)
    daily_signups = config.customers * 0.3 / config.days
    capacity = initial + int(daily_signups * n_days + 8 * math.sqrt(daily_signups * n_days + 1) + 16)
    world = _World(config, capacity)
    chans = channels(config)
    drift = config.drift
    drift_day = (drift.start - config.start).days if drift else None
    contacts = read_contacts(config.contacts_dir) if contacts is None else contacts
    reaction = Reaction(contacts, config.start, capacity, truth is not None) if contacts.height else None

    out: dict[str, list[dict[str, np.ndarray]]] = {t: [] for t in TABLES}
    window = 0
    for t in range(n_days):
        rng = np.random.default_rng([config.seed, t])
        day = config.start + timedelta(days=t)
        drifted = drift is not None and t >= drift_day
        keep = bounds[window][0] <= t

        if t == 0:
            new = _add_customers(world, rng, initial, t, initial=True)
        else:
            new = _add_customers(world, rng, int(rng.poisson(daily_signups)), t, initial=False)
        if keep:
            out["customers"].append(
                _day_frame({"customer_idx": new, "plan": world.plan[new], "charge": world.charge[new]}, day)
            )

        idx = np.flatnonzero(world.active[: world.n])
        m = len(idx)
        tenure = t - world.signup_day[idx]

        # Engagement: a mean-reverting deviation plus, for some, a slide that recovers rarely.
        world.deviation[idx] = 0.95 * world.deviation[idx] + rng.normal(0.0, 0.12, m)
        starts = (~world.declining[idx]) & (rng.random(m) < 0.002)
        recovers = world.declining[idx] & (rng.random(m) < 0.015)
        world.declining[idx[starts]] = True
        world.declining[idx[recovers]] = False
        world.decline[idx] = np.where(world.declining[idx], world.decline[idx] + 0.045, world.decline[idx] * 0.9)
        engagement = world.base[idx] + world.deviation[idx] - world.decline[idx]

        # Sessions: weekly and yearly seasonality on the rate.
        weekday = day.weekday()
        season = 1.0 + 0.08 * math.sin(2 * math.pi * (day.timetuple().tm_yday - 30) / 365)
        rate = _SESSION_RATE * np.exp(engagement) * (0.8 if weekday >= 5 else 1.08) * season
        if drifted:
            rate = rate * drift.session_rate_factor
        counts = rng.poisson(rate)
        who = np.repeat(idx, counts)
        s = len(who)
        minutes = np.exp(np.log(18.0) + 0.25 * np.repeat(engagement, counts) + rng.normal(0.0, 0.5, s))
        if drifted:
            minutes = minutes * drift.session_minutes_factor
        started = np.datetime64(day, "us") + rng.integers(0, 86_400, s).astype("timedelta64[s]")
        device = rng.choice(len(DEVICES), s, p=[0.55, 0.35, 0.1])
        if keep:
            out["sessions"].append(
                _day_frame(
                    {
                        "session_id": t * 100_000_000 + np.arange(s, dtype=np.int64),
                        "customer_idx": who,
                        "started_at": started,
                        "duration_minutes": np.round(minutes, 2),
                        "device": device,
                    },
                    day,
                )
            )

        # Support tickets: more when sliding and on the basic plan; slow or missing resolution hurts.
        ticket_rate = 0.012 * (1.0 + 1.5 * world.declining[idx]) * np.array([1.3, 1.0, 0.8])[world.plan[idx]]
        if drifted:
            ticket_rate = ticket_rate * drift.ticket_rate_factor
        tcount = rng.poisson(ticket_rate)
        twho = np.repeat(idx, tcount)
        k = len(twho)
        sliding = world.declining[twho]
        category = np.where(
            rng.random(k) < np.where(sliding, 0.3, 0.08),
            3,
            rng.choice(3, k, p=[0.47, 0.33, 0.2]),
        )
        hours = rng.exponential(20.0, k) * np.where(category == 0, 2.0, 1.0)
        never = rng.random(k) < 0.08
        hurt = never | (hours > 72.0)
        np.add.at(world.unresolved_load, twho[hurt], 1.0)
        world.unresolved_load[idx] *= 0.97
        opened = np.datetime64(day, "us") + rng.integers(0, 86_400, k).astype("timedelta64[s]")
        resolved = opened + (hours * 3600).astype("timedelta64[s]")
        if keep:
            out["support_tickets"].append(
                _day_frame(
                    {
                        "ticket_id": t * 10_000_000 + np.arange(k, dtype=np.int64),
                        "customer_idx": twho,
                        "opened_at": opened,
                        "category": category,
                        "resolved_at": np.where(never, np.datetime64("NaT"), resolved),
                    },
                    day,
                )
            )

        # Promotions: a campaign every two weeks, aimed a little more at sliding customers.
        if t % 14 == 3:
            targeted = rng.random(m) < 0.15 + 0.2 * world.declining[idx]
            pwho = idx[targeted]
            p = len(pwho)
            accept = rng.random(p) < _sigmoid(-0.8 + 0.8 * world.promo_propensity[pwho] + 0.5 * engagement[targeted])
            world.promo_until[pwho[accept]] = t + 60
            lag = rng.integers(0, 4, p)
            offer = rng.choice(len(OFFER_TYPES), p)
            if keep:
                out["promotions"].append(
                    _day_frame(
                        {
                            "offer_id": t * 10_000_000 + np.arange(p, dtype=np.int64),
                            "customer_idx": pwho,
                            "campaign": np.full(p, f"campaign_{day:%Y%m%d}"),
                            "offer_type": offer,
                            "offered_on": np.full(p, np.datetime64(day, "D")),
                            "responded_on": np.where(
                                accept, np.datetime64(day, "D") + lag.astype("timedelta64[D]"), np.datetime64("NaT")
                            ),
                        },
                        day,
                    )
                )

        # Plan changes: disengaged customers downgrade, engaged ones upgrade.
        changing = rng.random(m) < 0.0015
        cwho = idx[changing]
        down = rng.random(len(cwho)) < _sigmoid(-2.0 * engagement[changing] + 1.5 * world.declining[cwho])
        old_plan = world.plan[cwho].copy()
        new_plan = np.clip(old_plan + np.where(down, -1, 1), 0, 2).astype(np.int8)
        moved = new_plan != old_plan
        cwho, old_plan, new_plan = cwho[moved], old_plan[moved], new_plan[moved]
        price = PLAN_PRICES[new_plan] * rng.uniform(0.9, 1.12, len(cwho)) * (drift.price_factor if drifted else 1.0)
        world.plan[cwho] = new_plan
        world.charge[cwho] = np.round(price, 2)
        if keep:
            out["plan_changes"].append(
                _day_frame(
                    {
                        "customer_idx": cwho,
                        "changed_on": np.full(len(cwho), np.datetime64(day, "D")),
                        "from_plan": old_plan,
                        "to_plan": new_plan,
                        "new_monthly_charge": world.charge[cwho],
                    },
                    day,
                )
            )

        # Cancellation: the hidden state, price, tenure and promotions set the daily hazard.
        overpay = world.charge[idx] / PLAN_PRICES[world.plan[idx]] - 1.0
        parts = np.stack(
            [
                -0.6 * engagement / _ENGAGEMENT_SD + 1.2 * world.declining[idx],  # usage
                0.45 * world.unresolved_load[idx],  # support
                2.5 * overpay * world.price_sensitivity[idx],  # price
                0.9 * (tenure < 60) + 0.4 * (tenure < 180) - 0.9 * (world.promo_until[idx] >= t),
            ]
        )
        logit = -7.9 + parts.sum(axis=0) + 0.2 * math.sin(2 * math.pi * day.timetuple().tm_yday / 365)
        shift = reaction.shift_today(world, idx, t, tenure) if reaction else None
        churn = rng.random(m) < _sigmoid(logit if shift is None else logit + shift)
        if shift is not None:
            reaction.observe(idx, t, logit, shift, churn)
        gone = idx[churn]
        world.active[gone] = False
        noisy = parts[:, churn] + rng.normal(0.0, 0.6, (4, len(gone)))
        if keep:
            out["cancellations"].append(_day_frame({"customer_idx": gone, "reason": np.argmax(noisy, axis=0)}, day))
        if t == bounds[window][1]:
            if truth is not None and t == n_days - 1:
                truth.append(reaction.truth() if reaction else Reaction.empty_truth())
            yield _to_frames(world, chans, out)
            out = {name: [] for name in TABLES}
            window += 1


def _concat(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def _labels(codes: np.ndarray, names: tuple[str, ...]) -> pl.Series:
    return pl.Series(names, dtype=pl.String).gather(codes.astype(np.int64))


def _customer_id(idx: np.ndarray) -> pl.Series:
    return pl.Series("customer_id", idx.astype(np.int64) + 1)


def _to_frames(world: _World, chans: tuple[str, ...], out: dict) -> dict[str, pl.DataFrame]:
    config = world.config
    c = _concat(out["customers"])
    idx = c["customer_idx"]
    first = _FIRST[idx * 7 % len(_FIRST)]
    last = _LAST[idx * 13 % len(_LAST)]
    customers = pl.DataFrame(
        {
            "customer_id": _customer_id(idx),
            "name": np.char.add(np.char.add(np.char.capitalize(first), " "), np.char.capitalize(last)),
            "email": np.char.add(
                np.char.add(np.char.add(np.char.add(first, "."), last), idx.astype(str)), "@example.com"
            ),
            "signup_date": np.datetime64(config.start, "D") + world.signup_day[idx].astype("timedelta64[D]"),
            "plan": _labels(c["plan"], PLANS),
            "monthly_charge": c["charge"],
            "region": _labels(world.region[idx], REGIONS),
            "age_band": _labels(world.age_band[idx], AGE_BANDS),
            "acquisition_channel": _labels(world.channel[idx], chans),
            "ds": c["ds"],
        }
    )
    s = _concat(out["sessions"])
    sessions = pl.DataFrame(
        {
            "session_id": s["session_id"],
            "customer_id": _customer_id(s["customer_idx"]),
            "started_at": s["started_at"],
            "duration_minutes": s["duration_minutes"],
            "device": _labels(s["device"], DEVICES),
            "ds": s["ds"],
        }
    )
    k = _concat(out["support_tickets"])
    tickets = pl.DataFrame(
        {
            "ticket_id": k["ticket_id"],
            "customer_id": _customer_id(k["customer_idx"]),
            "opened_at": k["opened_at"],
            "category": _labels(k["category"], TICKET_CATEGORIES),
            "resolved_at": k["resolved_at"],
            "ds": k["ds"],
        }
    )
    promotions = _promotions_frame(out["promotions"])
    p = _concat(out["plan_changes"])
    plan_changes = pl.DataFrame(
        {
            "customer_id": _customer_id(p["customer_idx"]),
            "changed_on": p["changed_on"],
            "from_plan": _labels(p["from_plan"], PLANS),
            "to_plan": _labels(p["to_plan"], PLANS),
            "new_monthly_charge": p["new_monthly_charge"],
            "ds": p["ds"],
        }
    )
    x = _concat(out["cancellations"])
    cancellations = pl.DataFrame(
        {
            "customer_id": _customer_id(x["customer_idx"]),
            "cancelled_on": x["ds"],
            "reason": _labels(x["reason"], CANCEL_REASONS),
            "ds": x["ds"],
        }
    )
    return {
        "customers": customers,
        "sessions": sessions,
        "support_tickets": tickets,
        "promotions": promotions,
        "plan_changes": plan_changes,
        "cancellations": cancellations,
    }


def _promotions_frame(parts: list[dict[str, np.ndarray]]) -> pl.DataFrame:
    schema = {
        "offer_id": pl.Int64,
        "customer_id": pl.Int64,
        "campaign": pl.String,
        "offer_type": pl.String,
        "offered_on": pl.Date,
        "responded_on": pl.Date,
        "ds": pl.Date,
    }
    if not parts:
        return pl.DataFrame(schema=schema)
    p = _concat(parts)
    return pl.DataFrame(
        {
            "offer_id": p["offer_id"],
            "customer_id": _customer_id(p["customer_idx"]),
            "campaign": p["campaign"],
            "offer_type": _labels(p["offer_type"], OFFER_TYPES),
            "offered_on": p["offered_on"],
            "responded_on": p["responded_on"],
            "ds": p["ds"],
        },
        schema=schema,
    )


EVENT_LOG_FILES = ("subscription_customers", "subscription_sessions", "subscription_cancellations")


def event_log(config: SimulatorConfig) -> dict[str, pl.DataFrame]:
    """The simulated business as three plain event tables, for onboarding it like an outside dataset.

    Who signed up when (and on which plan), every usage session, every cancellation:
    no feature, no label, nothing the platform derived, so dbt SQL has to build the
    weekly snapshots and the churn label itself, as for any transaction log. The same
    config gives the same files.
    """
    frames = simulate(config, config.start, config.end)
    return {
        "subscription_customers": frames["customers"]
        .select("customer_id", "signup_date", "plan", "monthly_charge", "region")
        .sort("customer_id"),
        "subscription_sessions": frames["sessions"]
        .select(
            "customer_id",
            pl.col("started_at").dt.strftime("%Y-%m-%d %H:%M:%S"),
            pl.col("duration_minutes").round(1),
        )
        .sort("started_at", "customer_id"),
        "subscription_cancellations": frames["cancellations"].select("customer_id", "cancelled_on", "reason"),
    }
