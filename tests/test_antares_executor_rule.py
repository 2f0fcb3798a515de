"""A learned policy's setpoint is run as the live executor runs a planned slot without a reason code."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from services.executor.control import ControlSettings, intent_from_slot
from shared.antares.evaluate import executor_rule_for_setpoint
from shared.contracts import PlanSlot

SETTINGS = ControlSettings(
    capacity_kwh=6.4, reserve_soc_frac=0.0, min_soc_frac=0.0, max_soc_frac=1.0,
    max_charge_kw=5.0, max_discharge_kw=5.0, export_limit_kw=10.0, telemetry_stale_s=60.0, write_threshold_kw=0.2,
)
FIXED_MODES = {"charge", "discharge", "hold"}


def slot_from_setpoint(battery_kw: float, load_kw: float, pv_kw: float) -> PlanSlot:
    net_kw = load_kw - pv_kw + battery_kw  # + = import
    return PlanSlot(start=datetime(2017, 3, 1, tzinfo=timezone.utc), mode="x", charge_kw=max(battery_kw, 0.0),
                    discharge_kw=max(-battery_kw, 0.0), import_kw=max(net_kw, 0.0), export_kw=max(-net_kw, 0.0),
                    soc_kwh=3.0, load_kw=load_kw, pv_kw=pv_kw)


@pytest.mark.parametrize(("battery_kw", "load_kw", "pv_kw", "expected"), [
    (3.0, 1.0, 0.0, "setpoint"),          # grid charging
    (1.5, 0.5, 3.0, "self_consumption"),  # storing part of the PV surplus
    (4.0, 0.5, 3.0, "setpoint"),          # charging beyond the surplus: grid charging
    (-1.0, 2.0, 0.0, "self_consumption"),  # covering part of the load
    (-4.0, 1.0, 0.0, "setpoint"),         # discharging beyond the load: export
    (0.0, 1.0, 0.0, "setpoint"),          # idle while importing: hold
    (0.0, 0.5, 2.0, "self_consumption"),  # idle with a surplus: nothing to hold
])
def test_policy_setpoint_runs_as_the_executor_runs_the_slot(battery_kw, load_kw, pv_kw, expected):
    rule = executor_rule_for_setpoint(battery_kw, load_kw, pv_kw)
    assert rule == expected
    intent, _ = intent_from_slot(slot_from_setpoint(battery_kw, load_kw, pv_kw), SETTINGS)
    assert (intent.mode in FIXED_MODES) == (rule == "setpoint")
