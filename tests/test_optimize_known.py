"""Kepler on tiny instances whose answer is known by hand, DST days, price resolutions, horizons, fallback."""

from __future__ import annotations

from datetime import time

import numpy as np
import pandas as pd
import pytest

from shared.config import EVConfig
from shared.cost import plan_cost
from shared.optimize import ManualBlock, solve_plan
from shared.optimize.inputs import inputs_from_recorded
from shared.sitedata import load_site_data
from shared.config import load_site_config
from tests.optimize_helpers import make_inputs, make_site

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]
DT = 0.25


def test_charges_in_the_cheap_slot_to_cover_the_dear_one():
    site = make_site(battery={}, tariff={"export_enabled": False})
    r = solve_plan(make_inputs(site, [0, 4], [0, 0], [0.1, 0.3], soc_kwh=0.0), site)
    f = r.slots
    assert r.status == "optimal"
    assert f["charge_kw"].tolist() == pytest.approx([4, 0])
    assert f["discharge_kw"].tolist() == pytest.approx([0, 4])
    assert r.cost.total == pytest.approx(0.1 * 1.0)  # 1 kWh bought at 0.1 instead of 0.3


def test_losses_make_a_small_spread_not_worth_cycling():
    # round trip 0.81: 0.25 / 0.81 = 0.309 per delivered kWh > 0.30, so the battery stays idle
    site = make_site(battery={"charge_efficiency": 0.9, "discharge_efficiency": 0.9}, tariff={"export_enabled": False})
    r = solve_plan(make_inputs(site, [0, 4], [0, 0], [0.25, 0.30], soc_kwh=0.0), site)
    assert r.slots["charge_kw"].sum() == pytest.approx(0)
    assert r.cost.total == pytest.approx(0.30)
    cheaper = solve_plan(make_inputs(site, [0, 4], [0, 0], [0.20, 0.30], soc_kwh=0.0), site)
    assert cheaper.slots["charge_kw"].iloc[0] == pytest.approx(4.0)


def test_negative_price_fills_the_battery_but_never_burns_energy():
    # paid 0.5 per kWh imported; without the binary the LP would charge and discharge at once
    site = make_site(battery={"charge_efficiency": 0.9, "discharge_efficiency": 0.9}, tariff={"export_enabled": False})
    r = solve_plan(make_inputs(site, [0, 0, 0, 0], [0, 0, 0, 0], [-0.5] * 4, soc_kwh=0.0), site)
    f = r.slots
    assert (np.minimum(f["charge_kw"], f["discharge_kw"]) < 1e-6).all()
    assert f["soc_kwh"].iloc[-1] == pytest.approx(1.0)
    assert r.cost.import_kwh == pytest.approx(1.0 / 0.9)  # exactly what fills it, nothing burnt
    assert r.status == "optimal"


def test_import_below_export_price_does_not_pass_energy_through_the_meter():
    site = make_site(battery=None)
    r = solve_plan(make_inputs(site, [1, 1], [0, 0], [-0.3, 0.1], export_price=[-0.1, 0.0]), site)
    f = r.slots
    assert (np.minimum(f["import_kw"], f["export_kw"]) < 1e-6).all()
    assert f["import_kw"].tolist() == pytest.approx([1, 1])


def test_negative_export_price_curtails_pv():
    site = make_site(battery=None)
    r = solve_plan(make_inputs(site, [1, 1], [5, 5], [0.2, 0.2], export_price=[-0.05, 0.05]), site)
    f = r.slots
    assert f["pv_curtail_kw"].tolist() == pytest.approx([4, 0])
    assert f["export_kw"].tolist() == pytest.approx([0, 4])


def test_terminal_value_keeps_energy_for_after_the_horizon():
    site = make_site(battery={"terminal_value_per_kwh": 0.5}, tariff={"export_enabled": False})
    r = solve_plan(make_inputs(site, [0, 0], [0, 0], [0.2, 0.2], soc_kwh=0.0), site)
    assert r.slots["soc_kwh"].iloc[-1] == pytest.approx(1.0)  # buy at 0.2 what is worth 0.5 later
    assert r.objective_terms["terminal_value"] == pytest.approx(-0.5)


def test_water_heater_heats_its_daily_minimum_in_the_cheapest_block():
    site = make_site(battery=None, water_heaters=[{"power_kw": 3.0, "daily_min_kwh": 1.5, "min_run_minutes": 30}])
    prices = [0.3] * 96
    prices[40:42] = [0.1, 0.1]  # 10:00-10:30 is the cheapest half hour
    r = solve_plan(make_inputs(site, [0.5] * 96, [0] * 96, prices), site)
    w = r.slots["water_kw"].to_numpy()
    assert w.sum() * DT == pytest.approx(1.5)
    assert w[40] == w[41] == 3.0


def test_water_heater_max_gap_forces_heating_in_dear_hours_and_vacation_drops_the_minimum():
    heater = {"power_kw": 2.0, "daily_min_kwh": 1.0, "min_run_minutes": 15, "max_gap_hours": 4}
    site = make_site(battery=None, water_heaters=[heater])
    prices = [0.1] * 4 + [0.5] * 92
    r = solve_plan(make_inputs(site, [0.3] * 96, [0] * 96, prices), site)
    on = np.flatnonzero(r.slots["water_kw"].to_numpy() > 0)
    gaps = np.diff(np.concatenate([[-1], on, [96]]))
    assert gaps.max() <= 16  # never more than 4 h without heating
    vac = solve_plan(make_inputs(site, [0.3] * 96, [0] * 96, prices, vacation=True), site)
    assert vac.slots["water_kw"].sum() == 0


def test_ev_reaches_its_target_by_departure_in_the_cheapest_hours():
    ev = {"max_charge_kw": 4.0, "min_charge_kw": 0.0, "charge_efficiency": 1.0, "target_kwh": 2.0,
          "plugged_from": "00:00", "departure": "06:00"}
    site = make_site(battery=None, evs=[ev])
    prices = [0.3] * 8 + [0.1] * 4 + [0.3] * 84
    r = solve_plan(make_inputs(site, [0.2] * 96, [0] * 96, prices), site)
    ev_kw = r.slots["ev_kw"].to_numpy()
    assert ev_kw.sum() * DT == pytest.approx(2.0)
    assert ev_kw[8:12].sum() * DT == pytest.approx(1.0 * 4 * DT * 2)  # all of it in 02:00-03:00
    assert ev_kw[24:].sum() == 0  # never after departure


def test_unreachable_ev_target_is_a_priced_shortfall_not_a_failure():
    ev = {"max_charge_kw": 1.0, "min_charge_kw": 0.0, "charge_efficiency": 1.0, "target_kwh": 50.0,
          "plugged_from": "00:00", "departure": "02:00", "shortfall_penalty_per_kwh": 2.0}
    site = make_site(battery=None, evs=[ev])
    r = solve_plan(make_inputs(site, [0.2] * 16, [0] * 16, [0.1] * 16), site)
    assert r.status == "optimal"
    assert r.cost.ev_shortfall_penalty == pytest.approx(2.0 * (50 - 2.0))


def test_manual_hold_is_obeyed_and_an_impossible_block_is_relaxed():
    site = make_site(battery={}, tariff={"export_enabled": False})
    idx = pd.date_range("2025-08-05T00:00Z", periods=2, freq="15min")
    hold = ManualBlock(start=idx[0], end=idx[1] + pd.Timedelta(minutes=15), action="hold")
    r = solve_plan(make_inputs(site, [0, 4], [0, 0], [0.1, 0.3], soc_kwh=1.0, manual_blocks=[hold]), site)
    assert r.slots["discharge_kw"].sum() == 0 and r.status == "optimal"
    assert r.slots["reason_code"].tolist() == ["manual_hold", "manual_hold"]
    charge_full = ManualBlock(start=idx[0], end=idx[0] + pd.Timedelta(minutes=15), action="charge")
    r2 = solve_plan(make_inputs(site, [0, 4], [0, 0], [0.1, 0.3], soc_kwh=1.0, manual_blocks=[charge_full]), site)
    assert r2.status == "relaxed" and not r2.fallback


def test_infeasible_site_gets_the_flagged_self_consumption_fallback():
    site = make_site(battery={}, grid={"max_import_kw": 2.0})
    r = solve_plan(make_inputs(site, [10, 10], [0, 0], [0.1, 0.1], soc_kwh=0.5), site)
    assert r.fallback and r.status == "fallback"
    f = r.slots
    assert f["charge_kw"].sum() == 0  # never buys to charge
    balance = f["pv_kw"] - f["pv_curtail_kw"] + f["import_kw"] + f["discharge_kw"] - f["load_kw"] - f["charge_kw"] - f["export_kw"]
    assert np.allclose(balance, 0)


def test_capacity_tariff_spreads_an_ev_charge_to_keep_the_peak_down():
    ev = {"max_charge_kw": 8.0, "min_charge_kw": 0.0, "charge_efficiency": 1.0, "target_kwh": 8.0,
          "plugged_from": "00:00", "departure": "08:00"}
    cap = {"enabled": True, "price_per_kw": 5.0, "method": "max_hourly"}
    site = make_site(battery=None, evs=[ev], tariff={"capacity": cap})
    r = solve_plan(make_inputs(site, [0.0] * 32, [0] * 32, [0.1] * 32), site)
    hourly_kw = r.slots["import_kw"].to_numpy().reshape(8, 4).mean(axis=1)
    assert hourly_kw == pytest.approx(np.ones(8))  # 8 kWh over 8 h: 1 kW in every hour
    assert r.cost.capacity_cost == pytest.approx(5.0)


@pytest.mark.parametrize("day,slots", [("2025-10-26", 100), ("2025-03-30", 92)])
def test_dst_days_meet_the_daily_minimum_over_the_local_day(day, slots):
    site = make_site(battery={}, tz="Europe/Stockholm",
                     water_heaters=[{"power_kw": 3.0, "daily_min_kwh": 4.5, "min_run_minutes": 30}])
    start = pd.Timestamp(day, tz="Europe/Stockholm").tz_convert("UTC")
    rng = np.random.default_rng(1)
    r = solve_plan(make_inputs(site, [0.5] * slots, [0] * slots, rng.uniform(0.1, 0.4, slots), start=start.isoformat()), site)
    assert len(r.slots) == slots
    assert r.slots["water_kw"].sum() * DT == pytest.approx(4.5)
    assert sum(r.mode_changes_per_day.values()) >= 0 and list(r.mode_changes_per_day) == [day]


def test_hourly_and_quarter_hour_prices_both_plan_and_finer_prices_are_used():
    ev = {"max_charge_kw": 4.0, "min_charge_kw": 1.4, "charge_efficiency": 1.0, "target_kwh": 1.0,
          "plugged_from": "00:00", "departure": "04:00"}
    site = make_site(battery=None, evs=[ev])
    hourly = np.repeat([0.3, 0.2, 0.3, 0.3], 4)
    quarter = hourly.copy()
    quarter[5] = 0.05  # one cheap quarter hour inside the second hour
    r60 = solve_plan(make_inputs(site, [0.2] * 16, [0] * 16, hourly), site)
    r15 = solve_plan(make_inputs(site, [0.2] * 16, [0] * 16, quarter), site)
    assert r60.slots["ev_kw"].iloc[4:8].sum() * DT == pytest.approx(1.0)
    assert r15.slots["ev_kw"].iloc[5] == pytest.approx(4.0)  # the whole 1 kWh in the cheap quarter
    assert r15.cost.total < r60.cost.total


def test_horizon_ends_at_the_last_published_price():
    site = load_site_config(ROOT / "examples" / "se4-home.yaml", environ={})
    frame = load_site_data(ROOT / "examples" / "data" / "se4_home_2025-07_2025-10.csv.gz").frame.copy()
    start = pd.Timestamp("2025-08-05T00:00+02:00")
    frame.loc[frame.index >= start + pd.Timedelta(hours=30), "spot_price"] = np.nan
    inputs = inputs_from_recorded(frame, site, start, 48, soc_kwh=10.0)
    assert len(inputs.index) == 30 * 4
    r = solve_plan(inputs, site)
    assert r.status == "optimal" and len(r.slots) == 120
    assert r.slots.index[-1] == start.tz_convert("UTC") + pd.Timedelta(hours=30) - pd.Timedelta(minutes=15)


def test_reported_cost_is_the_shared_cost_model_on_real_data_with_every_component():
    site = load_site_config(ROOT / "examples" / "se4-home.yaml", environ={})
    site = site.model_copy(update={"evs": [EVConfig(max_charge_kw=11, target_kwh=10, plugged_from=time(17),
                                                    departure=time(7))]})
    frame = load_site_data(ROOT / "examples" / "data" / "se4_home_2025-07_2025-10.csv.gz").frame
    inputs = inputs_from_recorded(frame, site, "2025-09-10T12:00+02:00", 24, soc_kwh=10.0)
    r = solve_plan(inputs, site)
    again = plan_cost(r.slots, inputs.prices, site, reserve_kwh=r.strategy.reserve_kwh)
    for key in ("import_cost", "export_revenue", "wear_cost", "capacity_cost", "water_start_cost", "reserve_penalty"):
        assert getattr(again, key) == pytest.approx(getattr(r.cost, key), abs=1e-6), key
        assert r.objective_terms.get(key, 0.0) * (-1 if key == "export_revenue" else 1) == pytest.approx(
            getattr(r.cost, key), abs=1e-6), key
    assert sum(r.objective_terms.values()) == pytest.approx(r.objective, abs=1e-6)
    ev_kw = r.slots["ev_kw"].to_numpy()
    assert ((ev_kw < 1e-6) | (ev_kw >= 1.4 - 1e-6)).all()  # the charger's minimum power holds in every slot
    assert r.slots["ev_kw"].sum() * 0.25 * 0.9 == pytest.approx(10.0, abs=1e-4)  # target met by departure
    assert r.stats.mip_gap <= site.planner.mip_gap + 1e-9
    assert r.reason and set(r.slots["reason_code"]) <= set(__import__("shared.optimize.explain", fromlist=["x"]).REASON_CODES)


def test_stability_keeps_the_previous_plan_between_equal_options():
    site = make_site(battery={}, tariff={"export_enabled": False}, planner={"setpoint_change_cost_per_kw": 0.002})
    idx = pd.date_range("2025-08-05T00:00Z", periods=3, freq="15min")
    for previous_slot in (0, 1):
        prev = pd.Series([0.0, 0.0, -4.0], index=idx)  # the previous plan discharged in the dear slot
        prev.iloc[previous_slot] = 4.0
        r = solve_plan(make_inputs(site, [0, 0, 4], [0, 0, 0], [0.1, 0.1, 0.3], soc_kwh=0.0,
                                   previous_battery_kw=prev), site)
        assert r.slots["charge_kw"].iloc[previous_slot] == pytest.approx(4.0)
        assert r.objective_terms["stability_cost"] == pytest.approx(0.0, abs=1e-9)


def test_ev_context_unplugged_or_earlier_departure_is_followed():
    ev = {"max_charge_kw": 4.0, "min_charge_kw": 0.0, "charge_efficiency": 1.0, "target_kwh": 2.0,
          "plugged_from": "00:00", "departure": "06:00"}
    site = make_site(battery=None, evs=[ev])
    prices = [0.3] * 8 + [0.1] * 4 + [0.3] * 84
    unplugged = solve_plan(make_inputs(site, [0.2] * 96, [0] * 96, prices, ev_plugged=False), site)
    assert unplugged.slots["ev_kw"].iloc[:24].sum() == 0
    early = pd.Timestamp("2025-08-05T01:00Z")
    r = solve_plan(make_inputs(site, [0.2] * 96, [0] * 96, prices, ev_departure=early, ev_target_kwh=1.0), site)
    assert r.slots["ev_kw"].iloc[4:24].sum() == 0  # nothing after the given departure
    assert r.slots["ev_kw"].iloc[:4].sum() * DT == pytest.approx(1.0)


def test_vacation_runs_the_anti_legionella_cycle_when_it_falls_due():
    from shared.optimize import WaterState

    heater = {"name": "tank", "power_kw": 3.0, "daily_min_kwh": 6.0, "legionella_interval_days": 7, "legionella_kwh": 3.0}
    site = make_site(battery=None, water_heaters=[heater])
    due = {"tank": WaterState(days_since_legionella=6.75)}  # due in 6 h
    r = solve_plan(make_inputs(site, [0.3] * 96, [0] * 96, [0.2] * 96, vacation=True, water=due), site)
    w = r.slots["water_kw"].to_numpy()
    assert w[:24].sum() * DT == pytest.approx(3.0) and w[24:].sum() == 0


def test_cautious_risk_plans_on_the_pessimistic_forecast_with_a_larger_reserve():
    site = make_site(battery={"capacity_kwh": 10.0, "reserve_soc_frac": 0.2, "min_soc_frac": 0.1})
    inputs = make_inputs(site, [1.0] * 8, [2.0] * 8, [0.2] * 8, soc_kwh=5.0, load_p90_kw=np.full(8, 2.0),
                         pv_p10_kw=np.full(8, 0.5), risk="cautious")
    r = solve_plan(inputs, site)
    assert r.strategy.load_quantile == "p90" and r.strategy.pv_quantile == "p10"
    assert r.strategy.reserve_kwh == pytest.approx(3.0)
    assert r.slots["load_kw"].tolist() == [2.0] * 8 and r.slots["pv_kw"].tolist() == [0.5] * 8


def test_a_reserve_set_from_home_assistant_replaces_the_sites_and_the_plan_keeps_it():
    site = make_site(battery={"capacity_kwh": 10.0, "reserve_soc_frac": 0.2, "min_soc_frac": 0.1})
    # expensive now, cheap later: the battery would empty itself down to the reserve
    prices = [0.5] * 4 + [0.1] * 4
    base = solve_plan(make_inputs(site, [2.0] * 8, [0] * 8, prices, soc_kwh=8.0), site)
    assert base.strategy.reserve_kwh == pytest.approx(2.0)
    held = solve_plan(make_inputs(site, [2.0] * 8, [0] * 8, prices, soc_kwh=8.0, reserve_soc_frac=0.5), site)
    assert held.strategy.reserve_kwh == pytest.approx(5.0)
    assert base.slots["soc_kwh"].min() < 4.5  # without it the battery goes well below 5 kWh
    assert held.slots["soc_kwh"].min() >= 5.0 - 1e-6


def test_norway_tiers_make_the_battery_shave_the_peak_that_would_reach_the_next_tier():
    from datetime import date

    from shared.cost import CapacityState

    tiers = [{"above_kw": 0, "cost_per_period": 10}, {"above_kw": 2, "cost_per_period": 20},
             {"above_kw": 5, "cost_per_period": 40}]
    site = make_site(battery={"capacity_kwh": 4.0, "min_soc_frac": 0.0},
                     tariff={"capacity": {"enabled": True, "method": "tiers_mean_top3_daily", "tiers": tiers}})
    state = CapacityState({date(2025, 8, 1): 5.0, date(2025, 8, 2): 5.0, date(2025, 8, 3): 4.9})
    inputs = make_inputs(site, [5.5] * 8, [0] * 8, [0.1] * 8, soc_kwh=4.0, capacity_state=state)
    r = solve_plan(inputs, site)
    # a 5.5 kW day would lift the mean of the 3 highest days to 5.17 kW: the next tier (+20).
    # 1 kWh from the battery keeps the peak at 5 kW and the mean at 5.0 (not above 5).
    hourly_kw = r.slots["import_kw"].to_numpy().reshape(2, 4).mean(axis=1)
    assert hourly_kw.max() <= 5.0 + 1e-6
    assert r.cost.capacity_cost == pytest.approx(0.0, abs=1e-9)
    assert r.objective_terms["capacity_cost"] == pytest.approx(0.0, abs=1e-6)
    unshaved = plan_cost(r.slots.assign(import_kw=5.5), inputs.prices, site, capacity_state=state)
    assert unshaved.capacity_cost == pytest.approx(20.0)


def test_no_burning_to_make_room_for_a_later_negative_price():
    # found by the property test: between two negative import prices, with exporting costly, an
    # LP would charge and discharge at once to empty the battery for the next paid import
    site = make_site(battery={"discharge_efficiency": 0.875, "min_soc_frac": 0.1, "reserve_soc_frac": 0.1,
                              "max_soc_frac": 0.95, "terminal_value_per_kwh": None, "max_charge_kw": 1.0,
                              "max_discharge_kw": 1.0})
    r = solve_plan(make_inputs(site, [0] * 6, [0] * 6, [0, -0.5, 0, -0.5, 0, 0], export_price=[0, -0.5, -0.5, -0.5, 0, 0],
                               soc_kwh=0.75), site)
    f = r.slots
    assert (np.minimum(f["charge_kw"], f["discharge_kw"]) <= 1e-6).all()
    assert (np.minimum(f["import_kw"], f["export_kw"]) <= 1e-6).all()
