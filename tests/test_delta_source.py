"""The dbt source plugin copies the landing days a build names in its environment, and every day otherwise."""

from datetime import date

import pyarrow as pa
import pytest
from deltalake import write_deltalake

from platform_assets.delta_source import FIRST_DAY, FIRST_LANDED_DAY, LAST_DAY, Plugin, build_days

DAYS = [date(2026, 1, n) for n in (1, 2, 3, 4)]


@pytest.fixture
def sessions(tmp_path):
    path = tmp_path / "sessions"
    write_deltalake(str(path), pa.table({"ds": DAYS, "minutes": [1, 2, 3, 4]}), partition_by=["ds"])
    return path


def loaded_days(path, **meta) -> list[date]:
    dataset = Plugin("delta_source", {}).load({"delta_table_path": str(path), "by_landing_day": True, **meta})
    return sorted(dataset.to_table()["ds"].to_pylist())


def test_a_build_copies_its_landing_days_widened_to_the_first_unstaged_one(sessions, monkeypatch):
    for name, value in build_days("2026-01-03", "2026-01-04").items():
        monkeypatch.setenv(name, value)
    assert loaded_days(sessions) == DAYS[2:]
    for name, value in build_days("2026-01-03", "2026-01-04", first_landed_day="2026-01-02").items():
        monkeypatch.setenv(name, value)
    assert loaded_days(sessions) == DAYS[1:]


def test_dbt_run_by_hand_with_the_two_documented_days_copies_those_days(sessions, monkeypatch):
    monkeypatch.delenv(FIRST_LANDED_DAY, raising=False)
    monkeypatch.setenv(FIRST_DAY, "2026-01-02")
    monkeypatch.setenv(LAST_DAY, "2026-01-03")
    assert loaded_days(sessions) == DAYS[1:3]


def test_a_whole_build_copies_every_day_whatever_the_calling_process_had_set(sessions, monkeypatch):
    for name in (FIRST_DAY, LAST_DAY, FIRST_LANDED_DAY):
        monkeypatch.setenv(name, "2026-01-02")
    for name, value in build_days().items():
        monkeypatch.setenv(name, value)
    assert loaded_days(sessions) == DAYS
    assert loaded_days(sessions, by_landing_day=False) == DAYS
