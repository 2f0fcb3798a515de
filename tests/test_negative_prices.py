"""Negative import prices: the battery's direction binaries only where burning energy pays beyond
its wear (an exact rule), no simultaneous or ping-pong flows, and the benchmark's real days."""

from __future__ import annotations

import numpy as np
import pytest

from services.planner.cli import battery_pv_only, reference_data_path, reference_site
from services.planner.negative_benchmark import (
    _switches_in_negative_hours,
    negative_price_instances,
    negative_price_site,
)
from shared.optimize import components, solve_plan
from shared.optimize.inputs import inputs_from_recorded


@pytest.fixture(scope="module")
def instances():
    site = negative_price_site(battery_pv_only(reference_site(ev=False)))
    return site, negative_price_instances(site, reference_data_path())


def test_the_benchmark_days_are_real_negative_price_days(instances):
    site, days = instances
    assert len(days) == 20
    for _, start, frame in days:
        assert len(frame) == 192 and not frame.isna().any().any()
        inputs = inputs_from_recorded(frame, site, start, 48, soc_kwh=10.0)
        assert (inputs.prices["import_price_per_kwh"] < 0).any()


def test_burning_energy_needs_a_price_below_its_wear(instances):
    site, _ = instances
    b = site.battery
    eta = b.charge_efficiency * b.discharge_efficiency
    threshold = components.burn_threshold_per_kwh(b)
    assert threshold == pytest.approx(b.wear_cost_per_kwh * (1 + eta) / (1 - eta))
    assert threshold > 0.075  # below every SE3/SE4 2023-2024 import price of the benchmark (spot x 1.25)


@pytest.mark.parametrize("price_day", ["2024-08-11", "2023-07-16"])
def test_without_battery_binaries_the_plan_is_as_cheap_and_never_burns(instances, price_day, monkeypatch):
    site, days = instances
    _, start, frame = next(d for d in days if d[0] == price_day)
    frame = frame.iloc[:96]  # 24 h keeps the forced-binary reference quick
    inputs = inputs_from_recorded(frame, site, start, 24, soc_kwh=10.0)
    fast = solve_plan(inputs, site)
    assert fast.status == "optimal"
    f = fast.slots
    assert not ((f["charge_kw"] > 1e-6) & (f["discharge_kw"] > 1e-6)).any()
    assert not ((f["import_kw"] > 1e-6) & (f["export_kw"] > 1e-6)).any()
    assert _switches_in_negative_hours(f, inputs.prices["import_price_per_kwh"].to_numpy()) == 0
    # the reference: a direction binary in every slot up to the last negative price (the old rule)
    monkeypatch.setattr(components, "burn_threshold_per_kwh", lambda b: 0.0)
    reference = solve_plan(inputs, site)
    assert reference.stats.binaries > fast.stats.binaries
    tolerance = site.planner.mip_gap * max(abs(reference.stats.objective), 1.0)
    assert fast.stats.objective == pytest.approx(reference.stats.objective, abs=2 * tolerance)


def test_deep_negative_prices_still_get_battery_binaries(instances):
    site, days = instances
    _, start, frame = days[0]
    frame = frame.iloc[:96].copy()
    frame.loc[frame.index[40:48], "spot_price"] = -0.5  # Australian-style: burning pays beyond its wear
    inputs = inputs_from_recorded(frame, site, start, 24, soc_kwh=10.0)
    result = solve_plan(inputs, site)
    f = result.slots
    assert result.stats.binaries >= 48  # battery directions up to the last deep slot, plus the grid's
    assert not ((f["charge_kw"] > 1e-6) & (f["discharge_kw"] > 1e-6)).any()
    assert np.isfinite(result.stats.objective)


def test_stored_energy_is_not_exported_for_nothing():
    """CityLearn: export paid 0. A full battery before a sunny day once went to the grid for
    nothing (a money tie with wear 0, resolved toward a flat profile) and was bought back later at
    0.22-0.54 USD/kWh; with the example site's wear the tie is gone: keeping the energy is cheaper."""
    from pathlib import Path

    from shared.config import load_site_config
    from shared.sitedata import load_site_data

    root = Path(__file__).resolve().parents[1]
    site = load_site_config(root / "examples" / "citylearn-home.yaml", environ={})
    assert site.battery.wear_cost_per_kwh > 0
    frame = load_site_data(root / "examples" / "data" / "citylearn_building_3.csv.gz").frame  # with wear 0: 1.45 kWh exported
    for start in ("2017-07-03T06:00-08:00", "2017-07-10T06:00-08:00"):
        inputs = inputs_from_recorded(frame, site, start, 48, soc_kwh=site.battery.capacity_kwh)
        f = solve_plan(inputs, site).slots
        exported_from_battery = np.minimum(f["discharge_kw"], f["export_kw"]).sum() * 0.25
        assert exported_from_battery < 1e-6, (start, exported_from_battery)
        assert not (f["reason_code"] == "discharge_export").any()
