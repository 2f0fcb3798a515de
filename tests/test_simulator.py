"""The simulator replays plans with the one battery model and the one cost model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from shared.optimize import solve_plan
from shared.optimize.inputs import inputs_from_recorded
from shared.simulator import SimulationError, execute_slot, replay, simulate
from tests.optimize_helpers import make_inputs, make_site


def _agree(site, inputs):
    plan = solve_plan(inputs, site)
    assert plan.status == "optimal"
    sim = simulate(plan.slots, inputs.load_kw, inputs.pv_kw, inputs.prices, site, inputs.soc_kwh,
                   capacity_state=inputs.capacity_state, reserve_kwh=plan.strategy.reserve_kwh,
                   water_on_before={n: s.on_now for n, s in inputs.water.items()})
    return plan, sim


def test_executing_a_perfect_forecast_plan_costs_what_the_planner_said_to_the_cent_se4(se4):
    # water heater, capacity tariff, wear, reserve, grid fees with VAT: every cost term in play
    site, frame = se4
    inputs = inputs_from_recorded(frame, site, "2025-10-20T00:00+02:00", 24, soc_kwh=12.0)
    plan, sim = _agree(site, inputs)
    assert sim.cost.total == pytest.approx(plan.cost.total, abs=0.005)
    assert sim.cost.import_cost == pytest.approx(plan.cost.import_cost, abs=0.005)
    assert sim.cost.capacity_cost == pytest.approx(plan.cost.capacity_cost, abs=0.005)
    assert sim.cost.wear_cost == pytest.approx(plan.cost.wear_cost, abs=0.005)
    np.testing.assert_allclose(sim.flows["soc_kwh"], plan.slots["soc_kwh"], atol=1e-4)
    assert sim.cost.wear_cost > 0 and sim.cost.capacity_cost > 0


def test_executing_a_perfect_forecast_plan_costs_what_the_planner_said_to_the_cent_citylearn(citylearn):
    site, frame = citylearn
    inputs = inputs_from_recorded(frame, site, "2016-08-03T00:00-08:00", 48, soc_kwh=3.0)
    plan, sim = _agree(site, inputs)
    assert sim.cost.total == pytest.approx(plan.cost.total, abs=0.005)
    assert sim.soc_end_kwh == pytest.approx(float(plan.slots["soc_kwh"].iloc[-1]), abs=1e-4)


def test_forecast_error_keeps_energy_balance_and_soc_limits(se4):
    site, frame = se4
    inputs = inputs_from_recorded(frame, site, "2025-08-10T00:00+02:00", 24, soc_kwh=10.0)
    plan = solve_plan(inputs, site)
    rng = np.random.default_rng(1)
    load = inputs.load_kw * rng.uniform(0.3, 2.5, len(inputs.load_kw))
    pv = inputs.pv_kw * rng.uniform(0.0, 1.5, len(inputs.pv_kw))
    f = replay(plan.slots, load, pv, site, 10.0)
    bus = f["load_kw"] + f["water_kw"] + f["ev_kw"] + f["charge_kw"] - f["discharge_kw"] - (f["pv_kw"] - f["pv_curtail_kw"])
    np.testing.assert_allclose(f["import_kw"] - f["export_kw"], bus, atol=1e-9)
    assert (f[["import_kw", "export_kw", "charge_kw", "discharge_kw", "pv_curtail_kw"]] >= 0).all().all()
    assert ((f["import_kw"] > 1e-9) & (f["export_kw"] > 1e-9)).sum() == 0
    b = site.battery
    assert f["soc_kwh"].min() >= b.min_soc_kwh - 1e-9 and f["soc_kwh"].max() <= b.max_soc_kwh + 1e-9
    # SoC path follows shared.battery: each step's energy change matches the AC powers and efficiencies
    soc_prev = np.concatenate([[10.0], f["soc_kwh"].to_numpy()[:-1]])
    delta = f["charge_kw"] * b.charge_efficiency * 0.25 - f["discharge_kw"] / b.discharge_efficiency * 0.25
    np.testing.assert_allclose(f["soc_kwh"] - soc_prev, delta, atol=1e-9)


def test_battery_absorbs_unforecast_load_so_the_grid_stays_at_plan():
    site = make_site(battery={"capacity_kwh": 10.0, "max_charge_kw": 5.0, "max_discharge_kw": 5.0})
    # plan: 1 kW load, battery idle, 1 kW import; reality: 3 kW load
    o = execute_slot(site, 5.0, 3.0, 0.0, 0.0, load_forecast_kw=1.0, pv_forecast_kw=0.0)
    assert o.discharge_kw == pytest.approx(2.0) and o.import_kw == pytest.approx(1.0)
    # the setpoint rule leaves the error to the grid
    o = execute_slot(site, 5.0, 3.0, 0.0, 0.0, load_forecast_kw=1.0, pv_forecast_kw=0.0, rule="setpoint")
    assert o.discharge_kw == 0.0 and o.import_kw == pytest.approx(3.0)
    # surplus PV beyond the forecast charges the battery instead of being exported
    o = execute_slot(site, 5.0, 1.0, 4.0, 0.0, load_forecast_kw=1.0, pv_forecast_kw=1.0)
    assert o.charge_kw == pytest.approx(3.0) and o.export_kw == pytest.approx(0.0)


def test_an_empty_battery_cannot_absorb_and_the_grid_takes_the_rest():
    site = make_site(battery={"capacity_kwh": 10.0, "max_charge_kw": 5.0, "max_discharge_kw": 5.0,
                              "min_soc_frac": 0.1, "reserve_soc_frac": 0.1})
    # 0.5 kWh above the floor: at most 2 kW over a quarter hour (efficiency 1)
    o = execute_slot(site, 1.5, 6.0, 0.0, -5.0, load_forecast_kw=6.0, pv_forecast_kw=0.0)
    assert o.discharge_kw == pytest.approx(2.0) and o.soc_kwh == pytest.approx(1.0)
    assert o.import_kw == pytest.approx(4.0)


def test_export_beyond_the_limit_is_curtailed_and_disabled_export_exports_nothing():
    site = make_site(battery={"capacity_kwh": 1.0}, grid={"max_import_kw": 20.0, "max_export_kw": 2.0})
    o = execute_slot(site, 1.0, 0.0, 6.0, 0.0, load_forecast_kw=0.0, pv_forecast_kw=6.0)
    assert o.export_kw == pytest.approx(2.0) and o.pv_curtail_kw == pytest.approx(4.0)
    no_export = make_site(battery={"capacity_kwh": 1.0}, tariff={"export_enabled": False})
    o = execute_slot(no_export, 1.0, 0.0, 6.0, 0.0, load_forecast_kw=0.0, pv_forecast_kw=6.0)
    assert o.export_kw == 0.0 and o.pv_curtail_kw == pytest.approx(6.0)


def test_missing_measurements_are_refused_with_the_slot_named():
    site = make_site(battery={})
    inputs = make_inputs(site, [1, 1], [0, 0], [0.1, 0.2], soc_kwh=0.5)
    plan = solve_plan(inputs, site)
    with pytest.raises(SimulationError, match="2025-08-05T00:15"):
        replay(plan.slots, np.array([1.0, np.nan]), np.array([0.0, 0.0]), site, 0.5)


def test_cost_of_a_replay_is_import_minus_export_at_slot_prices():
    site = make_site(battery={})
    inputs = make_inputs(site, [2, 0], [0, 3], [0.5, 0.5], export_price=[0.1, 0.1], soc_kwh=0.0)
    plan = pd.DataFrame({"charge_kw": [0.0, 0.0], "discharge_kw": [0.0, 0.0], "load_kw": [2.0, 0.0],
                         "pv_kw": [0.0, 3.0]}, index=inputs.index)
    sim = simulate(plan, [2.0, 0.0], [0.0, 3.0], inputs.prices, site, 0.0)
    assert sim.cost.import_cost == pytest.approx(2 * 0.25 * 0.5)
    assert sim.cost.export_revenue == pytest.approx(3 * 0.25 * 0.1)
    assert sim.realized_cost == pytest.approx(0.25 - 0.075)
