"""Properties every Kepler plan has, on random small instances (hypothesis)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.battery import soc_after_kwh
from shared.cost import plan_cost
from shared.optimize import solve_plan
from tests.optimize_helpers import make_inputs, make_site

TOL = 1e-5


@st.composite
def instances(draw):
    n = draw(st.integers(4, 24))
    price = st.floats(-0.5, 1.0, allow_nan=False).map(lambda v: round(v, 3))
    import_price = np.array(draw(st.lists(price, min_size=n, max_size=n)))
    spread = np.array(draw(st.lists(st.floats(-0.3, 0.5).map(lambda v: round(v, 3)), min_size=n, max_size=n)))
    export_price = import_price - spread  # sometimes above the import price (negative-price VAT case)
    load = np.array(draw(st.lists(st.floats(0, 5).map(lambda v: round(v, 3)), min_size=n, max_size=n)))
    pv = np.array(draw(st.lists(st.floats(0, 8).map(lambda v: round(v, 3)), min_size=n, max_size=n)))
    battery = {
        "capacity_kwh": draw(st.floats(1, 20)),
        "max_charge_kw": draw(st.floats(0.5, 6)),
        "max_discharge_kw": draw(st.floats(0.5, 6)),
        "charge_efficiency": draw(st.floats(0.8, 1.0)),
        "discharge_efficiency": draw(st.floats(0.8, 1.0)),
        "wear_cost_per_kwh": draw(st.sampled_from([0.0, 0.01, 0.05])),
        "min_soc_frac": 0.1, "reserve_soc_frac": draw(st.sampled_from([0.1, 0.3])), "max_soc_frac": 0.95,
        "terminal_value_per_kwh": None,
    }
    extra = {}
    if draw(st.booleans()):
        extra["water_heaters"] = [{"power_kw": 2.0, "daily_min_kwh": draw(st.sampled_from([0.0, 1.0])),
                                   "min_run_minutes": draw(st.sampled_from([15, 30])), "start_cost": 0.01}]
    if draw(st.booleans()):
        extra["tariff"] = {"capacity": {"enabled": True, "price_per_kw": 2.0, "method": draw(
            st.sampled_from(["max_hourly", "mean_top_n_distinct_days", "max_15min"]))}}
    curtail = draw(st.booleans())
    soc0_frac = draw(st.floats(0.1, 0.95))
    return n, import_price, export_price, load, pv, battery, extra, curtail, soc0_frac


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(instances())
def test_every_plan_balances_stays_in_bounds_never_burns_energy_and_costs_what_the_cost_model_says(inst):
    n, import_price, export_price, load, pv, battery, extra, curtail, soc0_frac = inst
    site = make_site(battery=battery, pv={"curtailment_allowed": curtail}, **extra)
    soc0 = soc0_frac * battery["capacity_kwh"]
    inputs = make_inputs(site, load, pv, import_price, export_price, soc_kwh=soc0)
    r = solve_plan(inputs, site)
    assert not r.fallback, r.messages  # bounded and feasible even at negative prices
    f = r.slots
    b = site.battery

    # energy balance on the AC bus, every slot
    supply = f["pv_kw"] - f["pv_curtail_kw"] + f["import_kw"] + f["discharge_kw"]
    demand = f["load_kw"] + f["charge_kw"] + f["export_kw"] + f["water_kw"] + f["ev_kw"]
    assert np.allclose(supply, demand, atol=TOL)
    assert (f["pv_curtail_kw"] <= f["pv_kw"] + TOL).all() and (f["pv_curtail_kw"] >= -TOL).all()
    if not curtail:
        assert np.allclose(f["pv_curtail_kw"], 0, atol=TOL)

    # SoC follows the shared battery model and stays within the hard limits
    soc = soc0
    for t in range(n):
        soc = soc_after_kwh(soc, f["charge_kw"].iloc[t], f["discharge_kw"].iloc[t], 0.25, b)
        assert f["soc_kwh"].iloc[t] == pytest.approx(soc, abs=1e-4)
        assert min(b.min_soc_kwh, soc0) - TOL <= soc <= max(b.max_soc_kwh, soc0) + TOL

    # no phantom sink: never charge and discharge, or import and export, in the same slot
    assert (np.minimum(f["charge_kw"], f["discharge_kw"]) <= 1e-4).all()
    assert (np.minimum(f["import_kw"], f["export_kw"]) <= 1e-4).all()
    assert (f["import_kw"] <= site.grid.max_import_kw + TOL).all()

    # the reported cost is the shared cost model on the plan, and the objective is made of it
    again = plan_cost(f, inputs.prices, site, reserve_kwh=r.strategy.reserve_kwh,
                      water_shortfall_kwh={h.name: 0.0 for h in site.water_heaters})
    for key in ("import_cost", "export_revenue", "wear_cost", "capacity_cost", "water_start_cost", "reserve_penalty"):
        assert getattr(again, key) == pytest.approx(getattr(r.cost, key), abs=1e-5), key
    terms = r.objective_terms
    assert terms.get("import_cost", 0) == pytest.approx(r.cost.import_cost, abs=1e-5)
    assert -terms.get("export_revenue", 0) == pytest.approx(r.cost.export_revenue, abs=1e-5)
    assert terms.get("capacity_cost", 0) == pytest.approx(r.cost.capacity_cost, abs=1e-5)
    assert terms.get("water_start_cost", 0) == pytest.approx(r.cost.water_start_cost, abs=1e-5)
    assert sum(terms.values()) == pytest.approx(r.objective, abs=1e-5)


@settings(max_examples=10, deadline=None)
@given(st.integers(4, 12), st.floats(-2.0, -0.01), st.floats(-2.0, 0.5))
def test_all_negative_prices_stay_bounded_and_fill_the_battery_once(n, import_price, export_price):
    site = make_site(battery={"capacity_kwh": 5.0, "charge_efficiency": 0.9, "discharge_efficiency": 0.9},
                     pv={"curtailment_allowed": False})
    r = solve_plan(make_inputs(site, [0.5] * n, [3.0] * n, [import_price] * n, [export_price] * n, soc_kwh=1.0), site)
    assert r.status == "optimal"
    f = r.slots
    assert (np.minimum(f["charge_kw"], f["discharge_kw"]) <= 1e-4).all()
    assert (np.minimum(f["import_kw"], f["export_kw"]) <= 1e-4).all()
    assert np.isfinite(r.objective)
