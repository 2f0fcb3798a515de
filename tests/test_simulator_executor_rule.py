"""The backtest's execution rule ``executor``: slots run as the live executor runs them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from shared.config import load_site_config
from shared.simulator import replay


def _plan(code: str, charge_kw: float = 0.0, discharge_kw: float = 0.0, import_kw: float = 1.0) -> pd.DataFrame:
    index = pd.date_range("2017-03-02T04:00Z", periods=4, freq="15min")
    return pd.DataFrame({"load_kw": 1.0, "pv_kw": 0.0, "charge_kw": charge_kw, "discharge_kw": discharge_kw,
                         "import_kw": import_kw, "export_kw": 0.0, "pv_curtail_kw": 0.0, "reason_code": code},
                        index=index)


@pytest.fixture(scope="module")
def site():
    return load_site_config("examples/citylearn-home.yaml")


def test_idle_night_slot_does_not_charge_from_the_grid_when_the_load_is_below_its_forecast(site):
    plan = _plan("hold_for_later")
    measured_load = np.full(4, 0.4)  # 0.6 kW below the forecast
    absorb = replay(plan, measured_load, np.zeros(4), site, 3.0, rule="absorb")
    executor = replay(plan, measured_load, np.zeros(4), site, 3.0, rule="executor")
    # a grid-setpoint inverter keeps importing 1 kW and stores the 0.6 kW difference
    assert absorb["charge_kw"].to_numpy() == pytest.approx(np.full(4, 0.6))
    # the executor holds: the battery stays idle and the grid imports only what the house uses
    assert executor["charge_kw"].sum() == 0.0 and executor["soc_kwh"].iloc[-1] == pytest.approx(3.0)
    assert executor["import_kw"].to_numpy() == pytest.approx(measured_load)


def test_self_consumption_slot_absorbs_the_error_as_before(site):
    plan = _plan("discharge_cover_load", discharge_kw=1.0, import_kw=0.0)
    measured_load = np.full(4, 1.5)
    absorb = replay(plan, measured_load, np.zeros(4), site, 3.0, rule="absorb")
    executor = replay(plan, measured_load, np.zeros(4), site, 3.0, rule="executor")
    pd.testing.assert_frame_equal(absorb, executor)
    assert executor["import_kw"].sum() == pytest.approx(0.0)  # the battery covers the extra 0.5 kW


def test_perfect_forecast_executor_rule_is_the_plan(site):
    plan = _plan("charge_grid_cheap", charge_kw=2.0, import_kw=3.0)
    flows = replay(plan, np.full(4, 1.0), np.zeros(4), site, 1.0, rule="executor")
    assert flows["charge_kw"].to_numpy() == pytest.approx(np.full(4, 2.0))
    assert flows["import_kw"].to_numpy() == pytest.approx(np.full(4, 3.0))


def test_partial_cover_slot_runs_in_self_consumption_and_never_charges_from_the_grid(site):
    # the plan covers 0.3 of a 1 kW load forecast and imports 0.7; the house uses only 0.4 kW
    plan = _plan("discharge_cover_load", discharge_kw=0.3, import_kw=0.7)
    measured_load = np.full(4, 0.4)
    absorb = replay(plan, measured_load, np.zeros(4), site, 3.0, rule="absorb")
    executor = replay(plan, measured_load, np.zeros(4), site, 3.0, rule="executor")
    # a grid-setpoint inverter keeps importing 0.7 kW and charges the battery with 0.3 kW
    assert absorb["charge_kw"].to_numpy() == pytest.approx(np.full(4, 0.3))
    # in self-consumption mode the battery covers the measured load and nothing is imported
    assert executor["charge_kw"].sum() == 0.0
    assert executor["discharge_kw"].to_numpy() == pytest.approx(measured_load)
    assert executor["import_kw"].sum() == pytest.approx(0.0)


def test_self_consumption_slot_stores_the_measured_surplus_and_stops_at_the_reserve(site):
    plan = _plan("charge_pv_surplus", charge_kw=1.0, import_kw=0.0)
    plan["pv_kw"] = 2.0
    flows = replay(plan, np.full(4, 1.0), np.full(4, 3.5), site, 3.0, rule="executor")
    assert flows["charge_kw"].to_numpy() == pytest.approx(np.full(4, 2.5))  # not the planned 1.0
    assert flows["import_kw"].sum() == 0.0 and flows["export_kw"].sum() == pytest.approx(0.0)
    reserve_site = site.model_copy(update={"battery": site.battery.model_copy(update={"reserve_soc_frac": 0.5})})
    plan = _plan("discharge_cover_load", discharge_kw=1.0, import_kw=0.0)
    flows = replay(plan, np.full(4, 2.0), np.zeros(4), reserve_site, 3.3, rule="executor")
    assert flows["soc_kwh"].iloc[-1] == pytest.approx(reserve_site.battery.reserve_soc_kwh)  # the executor's floor
    assert flows["import_kw"].iloc[-1] == pytest.approx(2.0)
