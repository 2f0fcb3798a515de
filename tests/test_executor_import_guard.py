"""The live executor's import guard at the decide() level: the latest telemetry adjusts the setpoint."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from services.executor.control import ControlSettings, Overrides, QuickAction, decide
from services.executor.inverter import Intent, Telemetry
from shared.config import load_site_config
from shared.contracts import CostBreakdown, PlanMsg, PlanSlot, SolverStats

NOW = datetime(2025, 10, 2, 1, 5, tzinfo=timezone.utc)
SLOT_START = datetime(2025, 10, 2, 1, 0, tzinfo=timezone.utc)
SETTINGS = ControlSettings(
    capacity_kwh=10.0, reserve_soc_frac=0.1, min_soc_frac=0.05, max_soc_frac=1.0,
    max_charge_kw=5.0, max_discharge_kw=4.0, export_limit_kw=10.0, telemetry_stale_s=60.0,
    write_threshold_kw=0.2, import_guard=True, import_guard_margin_kw=0.2,
)


def plan(code: str, charge_kw: float = 0.0, import_kw: float = 1.0) -> PlanMsg:
    slot = PlanSlot(start=SLOT_START, mode="x", charge_kw=charge_kw, discharge_kw=0.0, import_kw=import_kw,
                    export_kw=0.0, soc_kwh=5.0, load_kw=1.0, pv_kw=0.0, reason_code=code)
    return PlanMsg(site_id="home", valid_until=SLOT_START + timedelta(hours=2), slots=[slot],
                   cost=CostBreakdown(currency="EUR", import_cost=0, export_revenue=0, total_cost=0),
                   solver=SolverStats(status="optimal"))


def reading(house_kw: float, battery_kw: float = 0.0, soc: float = 0.6, age_s: float = 5.0) -> Telemetry:
    """House demand ``house_kw`` without the battery; the grid sees it plus the battery's power now."""
    return Telemetry(ts=NOW - timedelta(seconds=age_s), soc_frac=soc, battery_kw=battery_kw,
                     grid_kw=house_kw + battery_kw)


def test_executor_guard_reduces_grid_charging_on_a_load_spike() -> None:
    p = plan("charge_grid_cheap", charge_kw=3.0, import_kw=4.0)
    calm = decide(reading(1.0, battery_kw=3.0), p, Overrides(), NOW, SETTINGS)
    assert (calm.intent.mode, calm.intent.power_kw) == ("charge", 3.0)
    spike = decide(reading(2.5, battery_kw=3.0), p, Overrides(), NOW, SETTINGS, last_written=calm.intent)
    assert spike.intent.mode == "charge" and spike.intent.power_kw == pytest.approx(4.2 - 2.5)
    assert "import guard" in spike.reason and spike.write and spike.source == "plan"
    assert not spike.alarms


def test_executor_guard_discharges_the_excess_in_a_hold_slot_above_the_reserve_only() -> None:
    p = plan("hold_for_later", import_kw=1.0)
    d = decide(reading(3.0), p, Overrides(), NOW, SETTINGS)
    assert d.intent.mode == "discharge" and d.intent.power_kw == pytest.approx(3.0 - 1.2)
    big = decide(reading(9.0), p, Overrides(), NOW, SETTINGS)
    assert big.intent.power_kw == pytest.approx(4.0), "never beyond the inverter limit"
    at_reserve = decide(reading(3.0, soc=0.1), p, Overrides(), NOW, SETTINGS)
    assert at_reserve.intent.mode == "hold"
    small = decide(reading(1.1), p, Overrides(), NOW, SETTINGS)
    assert small.intent.mode == "hold", "within the margin: the plan's command stands"


def test_executor_guard_makes_no_adjustment_on_stale_or_incomplete_telemetry() -> None:
    p = plan("hold_for_later", import_kw=1.0)
    stale = decide(reading(5.0, age_s=120), p, Overrides(), NOW, SETTINGS)
    assert stale.intent.mode == "hold" and stale.source == "safety" and "telemetry_stale" in stale.alarms
    blind = decide(Telemetry(ts=NOW, soc_frac=0.6), p, Overrides(), NOW, SETTINGS)
    assert blind.intent.mode == "hold" and "no adjustment" in blind.reason
    off = decide(reading(5.0), p, Overrides(), NOW, replace(SETTINGS, import_guard=False))
    assert off.intent == Intent(mode="hold", export_limit_kw=10.0, soc_floor_frac=0.1, soc_ceiling_frac=1.0)


def test_executor_guard_leaves_self_consumption_and_quick_actions_alone() -> None:
    sc = decide(reading(5.0), plan("discharge_cover_load", import_kw=0.0), Overrides(), NOW, SETTINGS)
    assert sc.intent.mode == "self_consumption" and "import guard" not in sc.reason
    force = Overrides(quick=QuickAction("force_charge", expires_at=NOW + timedelta(minutes=10)))
    q = decide(reading(5.0), plan("hold_for_later", import_kw=1.0), force, NOW, SETTINGS)
    assert (q.intent.mode, q.intent.power_kw, q.source) == ("charge", 5.0, "quick")


def test_executor_settings_from_the_se4_site_enable_the_guard() -> None:
    se4 = load_site_config("examples/se4-home.yaml")
    s = ControlSettings.from_site(se4, max_charge_kw=10.0, max_discharge_kw=10.0)
    assert s.import_guard and s.import_guard_margin_kw == pytest.approx(0.2)
    citylearn = load_site_config("examples/citylearn-home.yaml")
    assert not ControlSettings.from_site(citylearn, max_charge_kw=5.0, max_discharge_kw=5.0).import_guard
