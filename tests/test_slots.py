"""The slot grid: UTC quarter hours, local days of 92/96/100 slots, hourly -> 15-min expansion."""

from __future__ import annotations

from datetime import date
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest

from shared.slots import expand_to_slots, floor_slot, local_day_slots, slot_range

STOCKHOLM = ZoneInfo("Europe/Stockholm")


@pytest.mark.parametrize(("day", "n"), [(date(2025, 3, 30), 92), (date(2025, 10, 26), 100), (date(2025, 7, 1), 96)])
def test_local_days_have_the_right_number_of_slots(day: date, n: int):
    slots = local_day_slots(day, STOCKHOLM)
    assert len(slots) == n
    assert slots[0].tz_convert(STOCKHOLM).hour == 0
    assert (slots[-1] + pd.Timedelta(minutes=15)).tz_convert(STOCKHOLM).date() == day + pd.Timedelta(days=1)


def test_floor_slot_aligns_to_utc_quarter_hour_and_refuses_naive_times():
    assert floor_slot("2025-01-01T10:07:30+01:00") == pd.Timestamp("2025-01-01T09:00:00Z")
    with pytest.raises(ValueError, match="no UTC offset"):
        floor_slot("2025-01-01T10:07:30")


def test_hourly_power_repeats_and_energy_divides():
    idx = pd.date_range("2025-01-01", periods=2, freq="h", tz="UTC")
    power = expand_to_slots(pd.Series([2.0, 4.0], index=idx), "power")
    energy = expand_to_slots(pd.Series([2.0, 4.0], index=idx), "energy")
    assert list(power) == [2, 2, 2, 2, 4, 4, 4, 4]
    assert energy.sum() == pytest.approx(6.0)
    assert len(slot_range(idx[0], idx[-1] + pd.Timedelta(hours=1))) == len(power)


def test_missing_hour_stays_missing_after_expansion():
    idx = pd.DatetimeIndex(["2025-01-01T00:00Z", "2025-01-01T01:00Z", "2025-01-01T02:00Z"])
    out = expand_to_slots(pd.Series([1.0, np.nan, 3.0], index=idx))
    assert out.isna().sum() == 4 and out.iloc[:4].eq(1.0).all()
