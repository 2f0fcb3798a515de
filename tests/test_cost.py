"""The shared cost model: what a schedule of flows costs, including every capacity-tariff variant."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from shared.config import site_config_from_dict
from shared.cost import CapacityState, capacity_cost, plan_cost
from shared.slots import SLOT_HOURS


def site(capacity=None, **extra):
    data = {"site_id": "c", "location": {"latitude": 55.0, "longitude": 13.0, "timezone": "Europe/Stockholm"},
            "battery": {"capacity_kwh": 10, "max_charge_kw": 5, "max_discharge_kw": 5, "wear_cost_per_kwh": 0.02,
                        "min_soc_frac": 0.1, "reserve_soc_frac": 0.2, "reserve_penalty_per_kwh": 1.0},
            "water_heaters": [{"power_kw": 3.0, "start_cost": 0.05}]}
    if capacity:
        data["tariff"] = {"capacity": {"enabled": True, **capacity}}
    data.update(extra)
    return site_config_from_dict(data, environ={})


def frame(index, **cols):
    return pd.DataFrame({k: np.asarray(v, dtype=float) for k, v in cols.items()}, index=index)


IDX = pd.date_range("2025-08-05T10:00Z", periods=4, freq="15min")
PRICES = frame(IDX, import_price_per_kwh=[0.1, 0.2, -0.1, 0.3], export_price_per_kwh=[0.05, 0.05, -0.2, 0.1])


def test_energy_wear_reserve_and_start_costs_add_up_by_hand():
    flows = frame(IDX, import_kw=[4, 0, 2, 0], export_kw=[0, 2, 0, 1], charge_kw=[4, 0, 0, 0],
                  discharge_kw=[0, 2, 0, 0], soc_kwh=[3, 1.5, 1.5, 1.5], water0_kw=[0, 3, 3, 0])
    c = plan_cost(flows, PRICES, site())
    assert c.import_cost == pytest.approx((4 * 0.1 + 2 * -0.1) * 0.25)
    assert c.export_revenue == pytest.approx((2 * 0.05 + 1 * 0.1) * 0.25)
    assert c.wear_cost == pytest.approx(0.02 * 6 * 0.25)
    assert c.reserve_penalty == pytest.approx(1.0 * 0.5 * 3 * 0.25)  # reserve 2 kWh, 0.5 below for 3 slots
    assert c.water_start_cost == pytest.approx(0.05)  # one rising edge
    assert c.import_kwh == pytest.approx(1.5) and c.export_kwh == pytest.approx(0.75)
    assert c.total == pytest.approx(c.import_cost - c.export_revenue + c.wear_cost + c.reserve_penalty + 0.05)


def hourly_index(start: str, hours: int) -> pd.DatetimeIndex:
    return pd.date_range(start, periods=hours * 4, freq="15min")


def test_max_hourly_pays_only_for_raising_the_peak_so_far():
    s = site({"price_per_kw": 10.0, "method": "max_hourly"})
    idx = hourly_index("2025-08-05T08:00Z", 2)
    imp = np.array([1, 1, 5, 5, 2, 2, 2, 2], dtype=float)  # hour 1 averages 3 kW
    state = CapacityState({date(2025, 8, 1): 2.5})
    assert capacity_cost(idx, imp, s, state) == pytest.approx(10.0 * 0.5)
    assert capacity_cost(idx, imp, s, CapacityState({date(2025, 8, 1): 4.0})) == 0.0
    # a new month starts with no peak: the plan pays its whole peak there
    idx2 = hourly_index("2025-08-31T21:00Z", 2)  # 23:00-01:00 local, crosses into September
    assert capacity_cost(idx2, imp, s, CapacityState({date(2025, 8, 1): 4.0})) == pytest.approx(10.0 * 2.0)


def test_daily_period_bills_every_day_peak():
    s = site({"price_per_kw": 1.0, "method": "max_hourly", "period": "day"})
    idx = hourly_index("2025-08-05T21:00Z", 2)  # 23:00 on the 5th and 00:00 on the 6th, local
    imp = np.array([2, 2, 2, 2, 1, 1, 1, 1], dtype=float)
    assert capacity_cost(idx, imp, s, CapacityState({date(2025, 8, 5): 1.5})) == pytest.approx(0.5 + 1.0)


def test_sweden_mean_of_top_n_hours_on_distinct_days():
    s = site({"price_per_kw": 30.0, "method": "mean_top_n_distinct_days", "top_n": 3})
    idx = hourly_index("2025-08-05T10:00Z", 2)
    imp = np.array([6] * 4 + [8] * 4, dtype=float)  # the day's peak: 8 kW (two high hours, one day)
    state = CapacityState({date(2025, 8, 1): 5.0, date(2025, 8, 2): 4.0, date(2025, 8, 3): 1.0})
    before = (5 + 4 + 1) / 3
    after = (8 + 5 + 4) / 3
    assert capacity_cost(idx, imp, s, state) == pytest.approx(30.0 * (after - before))


def test_norway_tiers_by_mean_of_three_daily_peaks():
    tiers = [{"above_kw": 0, "cost_per_period": 100}, {"above_kw": 5, "cost_per_period": 200},
             {"above_kw": 10, "cost_per_period": 400}]
    s = site({"method": "tiers_mean_top3_daily", "tiers": tiers})
    idx = hourly_index("2025-08-05T10:00Z", 1)
    state = CapacityState({date(2025, 8, 1): 9.0, date(2025, 8, 2): 6.0})
    # before: mean (9 + 6 + 0) / 3 = 5 -> tier 0 (not strictly above 5); after with a 4 kW day: 19/3 > 5
    assert capacity_cost(idx, np.full(4, 4.0), s, state) == pytest.approx(100.0)
    assert capacity_cost(idx, np.full(4, 0.0), s, state) == pytest.approx(0.0)


def test_belgium_monthly_quarter_hour_peak():
    s = site({"price_per_kw": 4.0, "method": "max_15min"})
    idx = hourly_index("2025-08-05T10:00Z", 1)
    assert capacity_cost(idx, np.array([1, 7, 1, 1.0]), s, CapacityState({date(2025, 8, 2): 3.0})) == pytest.approx(16.0)


def test_state_from_import_history_matches_the_daily_peaks():
    s = site({"price_per_kw": 1.0, "method": "max_hourly"})
    hist = pd.Series([1, 1, 3, 3] + [2, 2, 2, 2], index=hourly_index("2025-08-04T10:00Z", 2), dtype=float)
    state = CapacityState.from_import_history(hist, s)
    assert state.daily_peaks_kw == {date(2025, 8, 4): pytest.approx(2.0)}
    assert state.peak_so_far_kw() == pytest.approx(2.0)


def test_flows_and_prices_must_share_the_slots():
    with pytest.raises(ValueError, match="same slot index"):
        plan_cost(frame(IDX[:2], import_kw=[1, 1]), PRICES, site())
    assert SLOT_HOURS == 0.25


def test_the_battery_saving_is_the_home_without_it_minus_what_was_paid_and_wear():
    from shared.cost import battery_saving

    idx = pd.date_range("2025-07-01", periods=2, freq="15min", tz="UTC")
    prices = frame(idx, import_price_per_kwh=[0.30, 0.10], export_price_per_kwh=[0.05, 0.02])
    s = site(battery={"capacity_kwh": 10, "max_charge_kw": 5, "max_discharge_kw": 5, "wear_cost_per_kwh": 0.01})
    # slot 0: 1 kWh discharged covered the load (nothing crossed the meter; without it 1 kWh imported at 0.30)
    # slot 1: 2 kWh charged: 1.5 kWh of PV that would have been exported at 0.02, 0.5 kWh imported at 0.10
    saving = battery_saving(idx, [0.0, 0.5], [0.0, 0.0], [0.0, 2.0], [1.0, 0.0], prices, s)
    without = 1.0 * 0.30 + (-(2.0 - 0.5) * 0.02)  # slot 1 without the battery: net -1.5 kWh exported at 0.02
    paid = 0.5 * 0.10 + 0.01 * (1.0 + 2.0)
    assert saving == pytest.approx(without - paid)
    # no battery flows: no saving, whatever the prices
    assert battery_saving(idx, [1.0, 0.0], [0.0, 2.0], [0.0, 0.0], [0.0, 0.0], prices, s) == pytest.approx(0.0)
