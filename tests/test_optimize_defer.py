"""Kepler buys from the grid as late as equal prices allow (grid charging waits for the PV to be known)."""

from __future__ import annotations

import numpy as np
import pytest

from shared.optimize import solve_plan
from tests.optimize_helpers import make_inputs, make_site


def test_grid_charging_for_the_peak_waits_until_the_last_equal_priced_slots():
    # 4 kWh battery, 2 kW charger: 8 cheap slots, then 4 dear slots that need 2 kWh
    site = make_site(battery={"capacity_kwh": 4.0, "max_charge_kw": 2.0, "max_discharge_kw": 2.0},
                     tariff={"export_enabled": False})
    load = [0.1] * 8 + [2.0] * 4
    r = solve_plan(make_inputs(site, load, [0.0] * 12, [0.2] * 8 + [0.5] * 4, soc_kwh=0.0), site)
    charge = r.slots["charge_kw"].to_numpy()
    # 2 kWh at 2 kW takes the last 4 cheap slots; nothing is bought earlier
    assert charge[:4] == pytest.approx(np.zeros(4), abs=1e-6)
    assert charge[4:8] == pytest.approx(np.full(4, 2.0), abs=1e-6)
    assert r.cost.import_cost == pytest.approx(0.2 * (0.1 * 8 * 0.25 + 2.0))  # the deferral is not money


def test_stored_energy_covers_the_load_now_rather_than_later_at_an_equal_price():
    # 1 kWh stored, flat price: using it now or in an hour costs the same; using it now keeps room
    # for a surplus that may come and buys later what is still missing then
    site = make_site(battery={"capacity_kwh": 2.0, "terminal_value_per_kwh": 0.0}, tariff={"export_enabled": False})
    r = solve_plan(make_inputs(site, [1.0] * 8, [0.0] * 8, [0.2] * 8, soc_kwh=1.0), site)
    discharge = r.slots["discharge_kw"].to_numpy()
    assert discharge[:4] == pytest.approx(np.full(4, 1.0), abs=1e-6)
    assert discharge[4:] == pytest.approx(np.zeros(4), abs=1e-6)
