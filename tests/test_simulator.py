"""The built-in data source: deterministic, realistic enough to learn, drift on demand."""

from datetime import date

import numpy as np
import polars as pl
import pytest

from platform_assets import vocabulary
from platform_assets.stable_hash import hashed_uniform
from simulator import world
from simulator.config import DriftSpec, SimulatorConfig
from simulator.treatment import hashed_uniform as world_hash
from simulator.world import simulate, simulate_windows
from tests.conftest import day

CONFIG = SimulatorConfig(customers=3000, days=90)


@pytest.fixture(scope="module")
def history():
    return simulate(CONFIG, CONFIG.start, CONFIG.end)


def test_same_seed_same_data(history):
    again = simulate(CONFIG, CONFIG.start, CONFIG.end)
    for table, frame in history.items():
        assert frame.equals(again[table]), table


def test_another_seed_other_data(history):
    other = simulate(CONFIG.model_copy(update={"seed": 7}), CONFIG.start, CONFIG.end)
    assert not other["sessions"].equals(history["sessions"])


def test_a_window_equals_the_same_days_of_the_whole_history(history):
    first, last = day(40), day(44)
    window = simulate(CONFIG, first, last)
    for table, frame in window.items():
        expected = history[table].filter(pl.col("ds").is_between(first, last))
        assert frame.equals(expected), table
        assert frame.height > 0 or table == "promotions", table


def test_every_table_lands_on_its_day(history):
    for table, frame in history.items():
        assert frame["ds"].min() >= CONFIG.start and frame["ds"].max() <= CONFIG.end, table
    sessions = history["sessions"]
    assert (sessions["started_at"].dt.date() == sessions["ds"]).all()


def test_churn_follows_behaviour(history):
    """Customers who cancel used the product less in their last 30 days than those who stay."""
    cancelled = history["cancellations"].select("customer_id", "cancelled_on")
    late = cancelled.filter(pl.col("cancelled_on") >= day(45))
    usage = history["sessions"].join(late, on="customer_id", how="left")
    before_cancel = usage.filter(
        pl.col("cancelled_on").is_not_null()
        & (pl.col("ds") < pl.col("cancelled_on"))
        & (pl.col("ds") >= pl.col("cancelled_on") - pl.duration(days=30))
    )
    churner_rate = before_cancel.height / late.height / 30
    stayers = history["customers"].join(cancelled, on="customer_id", how="anti")
    stayer_sessions = history["sessions"].join(stayers, on="customer_id", how="semi").filter(pl.col("ds") >= day(60))
    stayer_rate = stayer_sessions.height / stayers.height / 30
    assert churner_rate < 0.75 * stayer_rate
    monthly_churn = cancelled.height / history["customers"].height / 3
    assert 0.02 < monthly_churn < 0.08


def _mean_minutes(frame: pl.DataFrame, first: date, last: date) -> float:
    return frame.filter(pl.col("ds").is_between(first, last))["duration_minutes"].mean()


def test_drift_injection_shifts_only_the_chosen_behaviour(history):
    drift = DriftSpec(
        start_date=day(60).isoformat(),
        session_minutes_factor=0.7,
        ticket_rate_factor=2.0,
        new_channel="tiktok",
        new_channel_share=0.5,
    )
    drifted = simulate(CONFIG.model_copy(update={"drift": drift}), CONFIG.start, CONFIG.end)

    # Before the drift the world is the same, day for day.
    before = drifted["sessions"].filter(pl.col("ds") < day(60))
    assert before.equals(history["sessions"].filter(pl.col("ds") < day(60)))

    # Session time falls 30%; the number of sessions does not move with it.
    ratio = _mean_minutes(drifted["sessions"], day(60), day(89)) / _mean_minutes(history["sessions"], day(60), day(89))
    assert ratio == pytest.approx(0.7, abs=0.05)
    sessions_after = [
        h["sessions"].filter(pl.col("ds").is_between(day(60), day(66))).height for h in (drifted, history)
    ]
    assert sessions_after[0] / sessions_after[1] == pytest.approx(1.0, abs=0.05)

    # Ticket volume doubles.
    tickets_after = drifted["support_tickets"].filter(pl.col("ds") >= day(60)).height
    tickets_base = history["support_tickets"].filter(pl.col("ds") >= day(60)).height
    assert tickets_after / tickets_base == pytest.approx(2.0, rel=0.2)

    # A new acquisition channel appears among signups from the drift day on, never before.
    channel = (
        drifted["customers"].group_by(pl.col("ds") >= day(60)).agg((pl.col("acquisition_channel") == "tiktok").mean())
    )
    shares = dict(channel.iter_rows())
    assert shares[False] == 0.0
    assert shares[True] == pytest.approx(0.5, abs=0.15)


def test_windows_replay_once_and_equal_the_whole_history(history):
    """A long range is simulated in windows (bounded memory); their events are the history's, day for day."""
    windows = [(day(0), day(9)), (day(10), day(39)), (day(40), day(40)), (day(60), day(89))]
    for (first, last), events in zip(windows, simulate_windows(CONFIG, windows), strict=True):
        for table, frame in events.items():
            assert frame.equals(history[table].filter(pl.col("ds").is_between(first, last))), (table, first)


def test_windows_must_be_in_order():
    with pytest.raises(ValueError, match="overlap or are out of order"):
        next(simulate_windows(CONFIG, [(day(5), day(9)), (day(9), day(12))]))


def test_the_world_speaks_the_vocabulary_the_contracts_accept():
    """The simulator imports nothing of the platform, so it keeps its own copy of the vocabularies."""
    for name in ("PLANS", "AGE_BANDS", "DEVICES", "TICKET_CATEGORIES"):
        assert getattr(world, name) == getattr(vocabulary, name), name


def test_the_world_and_the_platform_hash_alike():
    """The holdout assignment and the world's hidden traits use the same splitmix64 (one copy each side)."""
    keys = np.arange(1, 10_000)
    assert np.array_equal(hashed_uniform(42, keys, salt=1), world_hash(42, keys, salt=1))
