"""The executor's decision logic: the documented priority, the safety guards, the write threshold."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from services.executor.control import ControlSettings, Overrides, QuickAction, decide, intent_from_slot
from services.executor.inverter import Intent, Telemetry
from shared.contracts import CostBreakdown, PlanMsg, PlanSlot, SolverStats

NOW = datetime(2025, 7, 14, 12, 5, tzinfo=timezone.utc)
SLOT_START = datetime(2025, 7, 14, 12, 0, tzinfo=timezone.utc)
SETTINGS = ControlSettings(
    capacity_kwh=10.0, reserve_soc_frac=0.1, min_soc_frac=0.05, max_soc_frac=1.0,
    max_charge_kw=5.0, max_discharge_kw=4.0, export_limit_kw=10.0, telemetry_stale_s=60.0, write_threshold_kw=0.2,
)


def plan(code: str = "discharge_export", charge_kw: float = 0.0, discharge_kw: float = 3.0, valid_h: float = 2) -> PlanMsg:
    slot = PlanSlot(start=SLOT_START, mode="x", charge_kw=charge_kw, discharge_kw=discharge_kw,
                    import_kw=charge_kw, export_kw=discharge_kw, soc_kwh=5.0, reason_code=code)
    return PlanMsg(site_id="home", valid_until=SLOT_START + timedelta(hours=valid_h), slots=[slot],
                   cost=CostBreakdown(currency="EUR", import_cost=0, export_revenue=0, total_cost=0),
                   solver=SolverStats(status="optimal"))


def reading(soc: float | None = 0.6, age_s: float = 5.0) -> Telemetry:
    return Telemetry(ts=NOW - timedelta(seconds=age_s), soc_frac=soc, battery_kw=0.0, grid_kw=0.5)


def quick(kind: str, power: float | None = None) -> Overrides:
    return Overrides(quick=QuickAction(kind, expires_at=NOW + timedelta(minutes=10), power_kw=power))


def test_pause_beats_everything_and_writes_nothing() -> None:
    d = decide(reading(), plan(), Overrides(paused=True, quick=quick("force_charge").quick), NOW, SETTINGS)
    assert d.intent is None and d.source == "pause" and not d.write and d.mode == "paused"


def test_quick_action_beats_safety_and_plan_until_its_ttl() -> None:
    d = decide(reading(), None, quick("force_charge"), NOW, SETTINGS)
    assert (d.intent.mode, d.intent.power_kw, d.source) == ("charge", 5.0, "quick")
    assert "plan_missing" in d.alarms  # still reported
    expired = Overrides(quick=QuickAction("force_charge", expires_at=NOW - timedelta(seconds=1)))
    d = decide(reading(), plan(), expired, NOW, SETTINGS)
    assert d.source == "plan" and d.intent.mode == "discharge"
    d = decide(reading(), plan(), quick("heat", 3.0), NOW, replace(SETTINGS, controls_water=True))
    assert d.intent.mode == "discharge" and d.intent.water_kw == 3.0, "heat rides on the plan"


def test_plan_missing_or_expired_gives_safe_self_consumption() -> None:
    for p, alarm in ((None, "plan_missing"), (plan(valid_h=0.05), "plan_expired")):
        d = decide(reading(), p, Overrides(), NOW, SETTINGS)
        assert d.intent.mode == "self_consumption" and d.source == "safety" and alarm in d.alarms
        assert d.intent.soc_floor_frac == 0.1, "the device floor sits at the reserve"


def test_missing_or_stale_telemetry_keeps_the_last_safe_mode_or_holds() -> None:
    charging = Intent("charge", 3.0, 10.0, 0.1, 1.0)
    for t, alarm in ((None, "telemetry_missing"), (reading(age_s=300), "telemetry_stale")):
        d = decide(t, plan(), Overrides(), NOW, SETTINGS, last_written=charging)
        assert d.intent == charging and not d.write and alarm in d.alarms
        d = decide(t, plan(), Overrides(), NOW, SETTINGS, last_written=Intent("discharge", 3.0))
        assert d.intent.mode == "hold" and d.write


def test_reserve_and_unknown_soc_guards() -> None:
    d = decide(reading(soc=0.1), plan(), Overrides(), NOW, SETTINGS)
    assert d.intent.mode == "self_consumption" and d.intent.soc_floor_frac >= 0.1 and "reserve_no_discharge" in d.alarms
    d = decide(reading(soc=0.1), plan(), Overrides(), NOW, replace(SETTINGS, supports_soc_floor=False))
    assert d.intent.mode == "hold"
    d = decide(reading(soc=None), plan(code="charge_pv_surplus"), quick("force_export"), NOW, SETTINGS)
    assert d.intent.mode == "hold" and "soc_unknown" in d.alarms
    d = decide(reading(soc=None), plan(code="charge_grid_cheap", charge_kw=2.0), Overrides(), NOW, SETTINGS)
    assert d.intent.mode == "charge", "charging is safe with an unknown SoC: the device stops at full"


def test_unsupported_mode_and_forbidden_grid_charging_fall_back() -> None:
    d = decide(reading(), plan(), Overrides(), NOW, replace(SETTINGS, supported_modes=("charge", "self_consumption", "hold")))
    assert d.intent.mode == "self_consumption" and "discharge_unsupported" in d.alarms
    d = decide(reading(), plan("charge_grid_cheap", 3.0, 0.0), Overrides(), NOW, replace(SETTINGS, grid_charging_allowed=False))
    assert d.intent.mode == "self_consumption"


def test_write_only_on_a_change_beyond_the_threshold_and_never_in_shadow() -> None:
    last = decide(reading(), plan(discharge_kw=3.0), Overrides(), NOW, SETTINGS).intent
    assert not decide(reading(), plan(discharge_kw=3.15), Overrides(), NOW, SETTINGS, last).write
    assert decide(reading(), plan(discharge_kw=3.5), Overrides(), NOW, SETTINGS, last).write
    assert decide(reading(), plan(discharge_kw=3.0), Overrides(), NOW, SETTINGS, last, must_rewrite=True).write
    shadow = decide(reading(), plan(discharge_kw=3.5), Overrides(), NOW, replace(SETTINGS, shadow=True), last)
    assert shadow.changed and not shadow.write


def test_slot_flows_map_to_intents_without_reason_codes() -> None:
    def slot(**kw) -> PlanSlot:
        return PlanSlot(start=SLOT_START, mode="x", soc_kwh=5.0, **kw)

    assert intent_from_slot(slot(charge_kw=3, import_kw=3.5, load_kw=0.5, pv_kw=0), SETTINGS)[0].mode == "charge"
    assert intent_from_slot(slot(charge_kw=2, pv_kw=3, load_kw=1), SETTINGS)[0].mode == "self_consumption"
    assert intent_from_slot(slot(discharge_kw=3, export_kw=2), SETTINGS)[0].mode == "discharge"
    assert intent_from_slot(slot(import_kw=1.0), SETTINGS)[0].mode == "hold"
    assert intent_from_slot(slot(discharge_kw=1, load_kw=1), SETTINGS)[0].mode == "self_consumption"


@settings(max_examples=300, deadline=None)
@given(
    soc=st.one_of(st.none(), st.floats(0, 1)),
    charge=st.floats(0, 1e6),
    discharge=st.floats(0, 1e6),
    code=st.sampled_from(["charge_grid_cheap", "discharge_export", "hold_for_later", "idle", None]),
    q=st.sampled_from([None, "force_charge", "force_export", "stop", "heat"]),
    qpower=st.one_of(st.none(), st.floats(0, 1e6)),
    device=st.sampled_from([
        SETTINGS,
        replace(SETTINGS, supports_soc_floor=False),
        replace(SETTINGS, grid_charging_allowed=False),
        replace(SETTINGS, supported_modes=("charge", "self_consumption", "hold")),
    ]),
)
def test_any_plan_and_override_stay_within_limits_and_never_discharge_unsafely(
    soc, charge, discharge, code, q, qpower, device
) -> None:
    overrides = quick(q, qpower) if q else Overrides()
    d = decide(reading(soc=soc), plan(code, charge, discharge), overrides, NOW, device)
    assert d.intent.mode in device.supported_modes
    assert d.intent.mode != "charge" or device.grid_charging_allowed
    assert d.intent is not None
    cap = {"charge": SETTINGS.max_charge_kw, "discharge": SETTINGS.max_discharge_kw}.get(d.intent.mode, 0.0)
    assert 0.0 <= d.intent.power_kw <= cap
    if soc is None:
        assert not d.intent.may_discharge
    elif soc <= SETTINGS.reserve_soc_frac:
        assert d.intent.mode != "discharge"
        if d.intent.mode == "self_consumption":  # only with a device floor at the reserve
            assert device.supports_soc_floor and d.intent.soc_floor_frac >= SETTINGS.reserve_soc_frac


def test_home_assistant_buttons_send_valid_commands_the_loop_accepts() -> None:
    from services.executor.loop import ExecutorLoop, ha_entities
    from shared.contracts import CommandMsg, decode

    loop = ExecutorLoop(inverter=None, settings=SETTINGS, site_id="home", clock=type("C", (), {"now": lambda self: NOW})())  # type: ignore[arg-type]
    buttons = [e for e in ha_entities("home") if e.component == "button"]
    assert {b.command_topic.rsplit("/", 1)[1] for b in buttons} >= {"pause", "resume", "force_charge", "force_export",
                                                                      "stop", "heat"}
    for b in buttons:
        msg = decode(b.payload_press, "command")
        assert isinstance(msg, CommandMsg)
        loop.command(b.command_topic.rsplit("/", 1)[1], ttl_s=msg.ttl_s)
    sensors = {e.object_id for e in ha_entities("home") if e.component == "sensor"}
    assert sensors == {"battery_soc", "battery_power", "executor_mode", "executor_override"}


def test_force_charge_to_a_target_soc_holds_once_there_and_while_the_soc_is_unknown() -> None:
    to_80 = Overrides(quick=QuickAction("force_charge", expires_at=NOW + timedelta(minutes=10), target_soc_frac=0.8))
    d = decide(reading(0.6), plan(), to_80, NOW, SETTINGS)
    assert (d.intent.mode, d.intent.power_kw, d.source) == ("charge", 5.0, "quick") and "to 80%" in d.reason
    d = decide(reading(0.8), plan(), to_80, NOW, SETTINGS)
    assert (d.intent.mode, d.source) == ("hold", "quick") and "target SoC reached" in d.reason
    d = decide(reading(None), plan(), to_80, NOW, SETTINGS)
    assert d.intent.mode == "hold" and "SoC unknown" in d.reason  # never charge past a target nobody can check
    d = decide(reading(0.6), plan(), to_80, NOW, replace(SETTINGS, grid_charging_allowed=False))
    assert d.intent.mode == "self_consumption" and "grid_charging_not_allowed" in d.alarms  # safety rules still rule
    try:
        QuickAction("force_export", expires_at=NOW, target_soc_frac=0.5)
    except ValueError as err:
        assert "force_charge only" in str(err)
    else:
        raise AssertionError("a target SoC on force_export must be refused")
