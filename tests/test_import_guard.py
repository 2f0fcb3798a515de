"""The import guard (shared/execution.py): a fixed-command slot imports at most what the plan imports."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from shared.config import load_site_config
from shared.execution import guard_battery_kw, import_guard_enabled
from shared.simulator import replay


def _plan(code: str, charge_kw: float = 0.0, import_kw: float = 1.0) -> pd.DataFrame:
    index = pd.date_range("2025-10-02T01:00Z", periods=4, freq="15min")
    return pd.DataFrame({"load_kw": 1.0, "pv_kw": 0.0, "charge_kw": charge_kw, "discharge_kw": 0.0,
                         "import_kw": import_kw, "export_kw": 0.0, "pv_curtail_kw": 0.0, "reason_code": code},
                        index=index)


@pytest.fixture(scope="module")
def se4_site():
    site = load_site_config("examples/se4-home.yaml")
    assert site.tariff.capacity.enabled and import_guard_enabled(site)  # auto: on with a capacity tariff
    return site


def test_load_spike_in_a_grid_charging_slot_reduces_charging_not_the_cap(se4_site):
    plan = _plan("charge_grid_cheap", charge_kw=5.0, import_kw=6.0)
    spike = np.array([1.0, 4.0, 1.5, 1.0])  # 3 kW and 0.5 kW above the forecast in slots 1 and 2
    flows = replay(plan, spike, np.zeros(4), se4_site, 10.0, rule="executor")
    cap = 6.0 + se4_site.executor.import_guard_margin_kw
    assert flows["import_kw"].max() <= cap + 1e-9
    assert flows["import_kw"].iloc[1] == pytest.approx(cap)
    assert flows["charge_kw"].to_numpy() == pytest.approx([5.0, 5.0 - 2.8, 5.0 - 0.3, 5.0])
    assert flows["discharge_kw"].sum() == 0.0


def test_load_spike_in_a_hold_slot_is_covered_by_the_battery(se4_site):
    plan = _plan("hold_for_later", import_kw=1.0)
    spike = np.array([1.0, 6.0, 1.1, 1.0])
    flows = replay(plan, spike, np.zeros(4), se4_site, 10.0, rule="executor")
    cap = 1.0 + se4_site.executor.import_guard_margin_kw
    # slot 2 is within the margin: left alone
    assert flows["import_kw"].to_numpy() == pytest.approx([1.0, cap, 1.1, 1.0])
    assert flows["discharge_kw"].to_numpy() == pytest.approx([0.0, 6.0 - cap, 0.0, 0.0])
    assert flows["charge_kw"].sum() == 0.0


def test_hold_slot_guard_stops_at_the_reserve_and_can_be_switched_off(se4_site):
    plan = _plan("hold_for_later", import_kw=1.0)
    spike = np.full(4, 6.0)
    reserve = se4_site.battery.reserve_soc_kwh
    flows = replay(plan, spike, np.zeros(4), se4_site, reserve + 0.5, rule="executor")
    assert flows["soc_kwh"].min() == pytest.approx(reserve)
    assert flows["import_kw"].iloc[-1] == pytest.approx(6.0)  # nothing left above the reserve
    executor_off = se4_site.executor.model_copy(update={"import_guard": "off"})
    off = se4_site.model_copy(update={"executor": executor_off})
    assert not import_guard_enabled(off)
    flows_off = replay(plan, spike, np.zeros(4), off, 10.0, rule="executor")
    assert flows_off["import_kw"].to_numpy() == pytest.approx(spike)
    assert flows_off["discharge_kw"].sum() == 0.0


def test_guard_is_off_by_default_without_a_capacity_tariff():
    site = load_site_config("examples/citylearn-home.yaml")
    assert not site.tariff.capacity.enabled and not import_guard_enabled(site)


def test_guard_rule_never_raises_power_and_respects_the_discharge_limit():
    # below the cap: the setpoint stands, even when the house uses less than forecast
    assert guard_battery_kw(3.0, 4.0, 0.5, margin_kw=0.2, max_discharge_kw=5.0) == 3.0
    # charging cut to zero, then 2 kW of discharge, bounded by the limit
    assert guard_battery_kw(3.0, 4.0, 6.2, margin_kw=0.2, max_discharge_kw=5.0) == pytest.approx(-2.0)
    assert guard_battery_kw(3.0, 4.0, 12.0, margin_kw=0.2, max_discharge_kw=5.0) == pytest.approx(-5.0)
    assert guard_battery_kw(0.0, 1.0, 9.0, margin_kw=0.0, max_discharge_kw=0.0) == 0.0
    with pytest.raises(ValueError, match="house_net_kw"):
        guard_battery_kw(0.0, 1.0, float("nan"), margin_kw=0.2, max_discharge_kw=1.0)
