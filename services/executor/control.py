"""The executor's decision for one tick: pure logic, no I/O (tests call it directly).

Fixed priority, highest first (docs/executor.md has the table):

1. **manual pause** - the executor writes nothing; the inverter keeps whatever it was doing.
2. **quick actions with a time-to-live** - ``force_charge``, ``force_export``, ``stop`` (battery
   idle), ``heat`` (water heater on, on top of what the lower layers decide). The newest wins;
   each expires at its TTL.
3. **safety** - telemetry missing or stale: no decision is built on a guessed value; the last
   intent is kept if it cannot discharge the battery, else ``hold``; alarm. Plan missing, past
   ``valid_until`` or without a slot for now: safe self-consumption; alarm.
4. **plan** - the setpoint of the plan's slot for now. A fixed-command slot (charge, hold,
   discharge) goes through the import guard (:mod:`shared.execution`, when enabled): from the
   fresh telemetry's house demand without the battery, the battery power is lowered so that the
   grid import stays at most the plan's import + the margin (grid charging reduced first, then
   discharge while the SoC is above the reserve). Telemetry without grid/battery or load/PV
   readings: no adjustment, noted in the reason.

Then, for every layer below the pause, two guards that nothing overrides: SoC unknown -> no
intent that can discharge (``hold``); SoC at or below the reserve -> no discharge or export
(self-consumption with the SoC floor at the reserve, or ``hold`` when the device has no floor).
Finally the intent is clamped to the device limits and written only when it differs from the
last written one beyond the threshold (inverter flash wears out), or when the device may have
lost it (reconnect, failed write). In shadow mode the decision is logged, never written.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Literal

from services.executor.inverter import Intent, Telemetry
from shared.contracts import PlanMsg, PlanSlot
from shared.execution import guard_battery_kw, import_guard_enabled
from shared.modes import planned_mode
from shared.slots import SLOT

QUICK_ACTIONS = ("force_charge", "force_export", "stop", "heat")
Source = Literal["pause", "quick", "safety", "plan"]
EPS_KW = 0.05  # below this a planned flow is numerical noise, not a setpoint


@dataclass(frozen=True)
class QuickAction:
    kind: str
    expires_at: datetime
    power_kw: float | None = None
    started_at: datetime | None = None
    target_soc_frac: float | None = None  # force_charge only: stop charging (hold) once the SoC reaches it

    def __post_init__(self) -> None:
        if self.kind not in QUICK_ACTIONS:
            raise ValueError(f"unknown quick action {self.kind!r}; known: {', '.join(QUICK_ACTIONS)}")
        if self.target_soc_frac is not None and self.kind != "force_charge":
            raise ValueError("target_soc_frac is for force_charge only")


@dataclass(frozen=True)
class Overrides:
    paused: bool = False
    quick: QuickAction | None = None
    paused_until: datetime | None = None  # every pause ends (executor.max_override_s at most)

    def is_paused(self, now: datetime) -> bool:
        return self.paused and (self.paused_until is None or now < self.paused_until)

    def active_quick(self, now: datetime) -> QuickAction | None:
        if self.quick is not None and now < self.quick.expires_at:
            return self.quick
        return None


@dataclass(frozen=True)
class ControlSettings:
    capacity_kwh: float
    reserve_soc_frac: float
    min_soc_frac: float
    max_soc_frac: float
    max_charge_kw: float
    max_discharge_kw: float
    export_limit_kw: float | None = None
    telemetry_stale_s: float = 60.0
    write_threshold_kw: float = 0.2
    shadow: bool = False
    heat_kw: float | None = None
    controls_water: bool = False
    supports_soc_floor: bool = True
    grid_charging_allowed: bool = True
    supported_modes: tuple[str, ...] = ("charge", "discharge", "self_consumption", "hold")
    import_guard: bool = False
    import_guard_margin_kw: float = 0.2
    max_override_s: float = 86400.0

    @classmethod
    def for_device(cls, site: object, inverter: object) -> ControlSettings:
        """Settings for a :class:`~services.executor.modbus.transport.ModbusInverter`: its limits and its profile's abilities."""
        profile = inverter.profile  # type: ignore[attr-defined]
        limits = inverter.limits  # type: ignore[attr-defined]
        settings = cls.from_site(
            site,
            max_charge_kw=limits.max_charge_kw,
            max_discharge_kw=limits.max_discharge_kw,
            supports_soc_floor=profile.has_soc_floor,
            controls_water=profile.supports("water"),
        )
        return replace(settings, supported_modes=profile.supported_modes)

    @classmethod
    def from_site(cls, site: object, *, max_charge_kw: float, max_discharge_kw: float,
                  supports_soc_floor: bool = True, controls_water: bool = False) -> ControlSettings:
        """Build from a SiteConfig (battery, grid, executor settings) and the device's effective limits."""
        battery = site.battery  # type: ignore[attr-defined]
        if battery is None:
            raise ValueError("the executor needs a battery in the site configuration")
        ex = site.executor  # type: ignore[attr-defined]
        heaters = site.water_heaters  # type: ignore[attr-defined]
        export = site.grid.max_export_kw if site.tariff.export_enabled else 0.0  # type: ignore[attr-defined]
        return cls(
            capacity_kwh=battery.capacity_kwh,
            reserve_soc_frac=battery.reserve_soc_frac,
            min_soc_frac=battery.min_soc_frac,
            max_soc_frac=battery.max_soc_frac,
            max_charge_kw=max_charge_kw,
            max_discharge_kw=max_discharge_kw,
            export_limit_kw=export,
            telemetry_stale_s=ex.telemetry_stale_s,
            max_override_s=ex.max_override_s,
            write_threshold_kw=ex.write_threshold_kw,
            shadow=ex.shadow_mode,
            heat_kw=heaters[0].power_kw if heaters else None,
            controls_water=controls_water and bool(heaters),
            supports_soc_floor=supports_soc_floor,
            grid_charging_allowed=battery.grid_charging_allowed,
            import_guard=import_guard_enabled(site),  # type: ignore[arg-type]
            import_guard_margin_kw=ex.import_guard_margin_kw,
        )


@dataclass(frozen=True)
class Decision:
    intent: Intent | None  # None: nothing to command (paused)
    source: Source
    reason: str
    alarms: tuple[str, ...] = ()
    override: QuickAction | None = None
    write: bool = False  # send it to the inverter now
    changed: bool = False  # differs from the last written intent (shadow mode: would write)
    planned: PlanSlot | None = None
    plan_id: str | None = None
    guards: tuple[str, ...] = field(default=())

    @property
    def mode(self) -> str:
        if self.intent is None:
            return "paused" if self.source == "pause" else "unknown"
        return self.intent.mode


def slot_for(plan: PlanMsg, now: datetime) -> PlanSlot | None:
    for slot in plan.slots:
        if slot.start <= now < slot.start + SLOT:
            return slot
    return None


def intent_from_slot(slot: PlanSlot, settings: ControlSettings) -> tuple[Intent, str]:
    """How to run a planned slot. The reason code says why the planner chose the flows; without one, the flows decide."""
    code = slot.reason_code or ""
    base = _base(settings)
    planned = planned_mode(code)
    mode = planned.mode if planned is not None else None
    if planned is not None and planned.curtail:
        return replace(base, mode="self_consumption", export_limit_kw=0.0), "plan: curtail (negative export price)"
    if mode == "charge":
        return replace(base, mode="charge", power_kw=slot.charge_kw), f"plan: charge {slot.charge_kw:.2f} kW ({code})"
    if mode == "discharge":
        return replace(base, mode="discharge", power_kw=slot.discharge_kw), f"plan: discharge {slot.discharge_kw:.2f} kW ({code})"
    if mode == "hold":
        return replace(base, mode="hold"), f"plan: hold ({code})"
    if mode == "self_consumption":
        return replace(base, mode="self_consumption"), f"plan: self-consumption ({code})"
    # No (known) reason code: read the flows. Grid charging is charging beyond the PV surplus.
    surplus = (slot.pv_kw - slot.load_kw) if slot.pv_kw is not None and slot.load_kw is not None else None
    if slot.charge_kw > EPS_KW and slot.import_kw > EPS_KW and (surplus is None or slot.charge_kw > max(surplus, 0) + EPS_KW):
        return replace(base, mode="charge", power_kw=slot.charge_kw), f"plan: grid charge {slot.charge_kw:.2f} kW"
    if slot.discharge_kw > EPS_KW and slot.export_kw > EPS_KW:
        return replace(base, mode="discharge", power_kw=slot.discharge_kw), f"plan: discharge {slot.discharge_kw:.2f} kW to export"
    if slot.charge_kw <= EPS_KW and slot.discharge_kw <= EPS_KW and slot.import_kw > EPS_KW:
        return replace(base, mode="hold"), "plan: hold (battery idle while importing)"
    return replace(base, mode="self_consumption"), "plan: self-consumption"


def house_net_kw(telemetry: Telemetry) -> float | None:
    """Measured demand on the grid without the battery (load + water + EV - PV), or None when unknown.
    Grid minus battery power when both are read (it includes curtailment), else from load and PV."""
    if telemetry.grid_kw is not None and telemetry.battery_kw is not None:
        value = telemetry.grid_kw - telemetry.battery_kw
    elif telemetry.load_kw is not None and telemetry.pv_kw is not None:
        value = telemetry.load_kw + (telemetry.water_kw or 0.0) + (telemetry.ev_kw or 0.0) - telemetry.pv_kw
    else:
        return None
    return value if math.isfinite(value) else None


def apply_import_guard(intent: Intent, slot: PlanSlot, telemetry: Telemetry, soc_frac: float | None,
                       settings: ControlSettings) -> tuple[Intent, str | None]:
    """The import guard on a plan intent with a fixed battery command (see module doc). Returns the
    (possibly adjusted) intent and a note for the reason, None when nothing changed."""
    if intent.mode not in ("charge", "hold", "discharge"):
        return intent, None
    house_kw = house_net_kw(telemetry)
    if house_kw is None:
        return intent, "import guard: no grid/battery or load/PV reading, no adjustment"
    setpoint_kw = {"charge": intent.power_kw, "discharge": -intent.power_kw}.get(intent.mode, 0.0)
    above_reserve = soc_frac is not None and soc_frac > settings.reserve_soc_frac + 1e-9
    max_discharge_kw = settings.max_discharge_kw if above_reserve else 0.0
    margin_kw = settings.import_guard_margin_kw
    guarded_kw = guard_battery_kw(setpoint_kw, slot.import_kw, house_kw, margin_kw=margin_kw,
                                  max_discharge_kw=max_discharge_kw)
    if guarded_kw >= setpoint_kw - 1e-9:
        return intent, None
    if guarded_kw > EPS_KW:
        adjusted = replace(intent, mode="charge", power_kw=guarded_kw)
    elif guarded_kw < -EPS_KW:
        adjusted = replace(intent, mode="discharge", power_kw=-guarded_kw)
    else:
        adjusted = replace(intent, mode="hold", power_kw=0.0)
    note = (f"import guard: house {house_kw:.2f} kW, import capped at {slot.import_kw + margin_kw:.2f} kW"
            f" -> battery {guarded_kw:+.2f} kW")
    return adjusted, note


def _base(settings: ControlSettings) -> Intent:
    floor = settings.reserve_soc_frac if settings.supports_soc_floor else None
    ceiling = settings.max_soc_frac if settings.supports_soc_floor else None
    return Intent(
        mode="self_consumption",
        export_limit_kw=settings.export_limit_kw,
        soc_floor_frac=floor,
        soc_ceiling_frac=ceiling,
        water_kw=0.0 if settings.controls_water else None,
    )


def safe_intent(settings: ControlSettings, soc_frac: float | None) -> Intent:
    """The fallback when a write keeps failing: self-consumption with the floor at the reserve, or
    hold when the SoC is unknown or the device has no floor."""
    base = _base(settings)
    if soc_frac is None or not settings.supports_soc_floor:
        return replace(base, mode="hold")
    return base


def _differs(a: Intent, b: Intent, threshold_kw: float) -> bool:
    if a.mode != b.mode:
        return True
    if a.mode in ("charge", "discharge") and abs(a.power_kw - b.power_kw) > threshold_kw:
        return True

    def opt_differs(x: float | None, y: float | None, tol: float) -> bool:
        if x is None or y is None:
            return (x is None) != (y is None)
        return abs(x - y) > tol

    return (
        opt_differs(a.export_limit_kw, b.export_limit_kw, threshold_kw)
        or opt_differs(a.soc_floor_frac, b.soc_floor_frac, 0.005)
        or opt_differs(a.soc_ceiling_frac, b.soc_ceiling_frac, 0.005)
        or opt_differs(a.water_kw, b.water_kw, threshold_kw)
    )


def _clamp(intent: Intent, settings: ControlSettings) -> Intent:
    power = intent.power_kw if math.isfinite(intent.power_kw) else 0.0
    cap = {"charge": settings.max_charge_kw, "discharge": settings.max_discharge_kw}.get(intent.mode, 0.0)
    return replace(intent, power_kw=min(max(power, 0.0), cap))


@dataclass(frozen=True)
class _Situation:
    """What the tick knows: nothing stale or missing is used as if it were measured."""

    fresh: bool
    soc: float | None
    slot: PlanSlot | None
    plan_problem: str | None
    plan_id: str | None
    alarms: tuple[str, ...]


@dataclass(frozen=True)
class _Draft:
    """The intent under construction as it passes the steps, with why and from which layer."""

    intent: Intent
    reason: str
    source: Source
    guards: tuple[str, ...] = ()

    def guarded(self, guard: str, intent: Intent, note: str) -> _Draft:
        return replace(self, intent=intent, reason=self.reason + note, guards=self.guards + (guard,))


def assess(telemetry: Telemetry | None, plan: PlanMsg | None, now: datetime, settings: ControlSettings) -> _Situation:
    """Step 0: freshness of the telemetry, the SoC, and the plan's slot for now (each problem an alarm)."""
    alarms: list[str] = []
    fresh = telemetry is not None and (now - telemetry.ts) <= timedelta(seconds=settings.telemetry_stale_s)
    if telemetry is None:
        alarms.append("telemetry_missing")
    elif not fresh:
        alarms.append("telemetry_stale")
    soc = telemetry.soc_frac if (fresh and telemetry is not None) else None
    if fresh and soc is None:
        alarms.append("soc_unknown")

    slot: PlanSlot | None = None
    plan_problem: str | None = None
    if plan is None:
        plan_problem = "plan_missing"
    elif now >= plan.valid_until:
        plan_problem = "plan_expired"
    else:
        slot = slot_for(plan, now)
        if slot is None:
            plan_problem = "plan_no_slot"
    if plan_problem:
        alarms.append(plan_problem)
    plan_id = plan.plan_id if plan is not None else None
    return _Situation(fresh, soc, slot, plan_problem, plan_id, tuple(alarms))


_PLAN_PROBLEM_REASONS = {
    "plan_missing": "no plan: safe self-consumption",
    "plan_expired": "plan past valid_until: safe self-consumption",
    "plan_no_slot": "plan has no slot for now: safe self-consumption",
}


def safety_step(situation: _Situation, settings: ControlSettings, last_written: Intent | None) -> _Draft | None:
    """Stale or missing telemetry, or no usable plan: a safe intent; None when the plan can be followed."""
    if not situation.fresh:
        if last_written is not None and not last_written.may_discharge:
            return _Draft(last_written, "telemetry missing or stale: keeping the last safe mode", "safety")
        return _Draft(replace(_base(settings), mode="hold"), "telemetry missing or stale: battery on hold", "safety")
    if situation.plan_problem:
        return _Draft(_base(settings), _PLAN_PROBLEM_REASONS[situation.plan_problem], "safety")
    return None


def plan_step(situation: _Situation, telemetry: Telemetry | None, settings: ControlSettings) -> _Draft:
    """The plan's slot for now, with the planned water heating and the import guard."""
    slot = situation.slot
    assert slot is not None
    candidate, reason = intent_from_slot(slot, settings)
    if settings.controls_water:
        candidate = replace(candidate, water_kw=slot.water_kw)
    if settings.import_guard and telemetry is not None:
        candidate, note = apply_import_guard(candidate, slot, telemetry, situation.soc, settings)
        if note:  # a normal adjustment, not an alarm: it goes in the reason (logged every tick)
            reason += f"; {note}"
    return _Draft(candidate, reason, "plan")


def quick_action_step(draft: _Draft, quick: QuickAction, settings: ControlSettings,
                      soc: float | None = None) -> _Draft:
    """A quick action replaces the lower layers' intent ("heat" rides on top of it). A force charge
    with a target SoC holds the battery once the SoC is there, and while the SoC is unknown
    (no charging past a target nobody can check)."""
    base = _base(settings)
    candidate = draft.intent
    reason = f"quick action {quick.kind} until {quick.expires_at.isoformat()}"
    if quick.kind == "force_charge" and quick.target_soc_frac is not None:
        reason += f" to {quick.target_soc_frac:.0%}"
        if soc is None or soc >= quick.target_soc_frac - 1e-9:
            why = "SoC unknown" if soc is None else "target SoC reached"
            return _Draft(replace(base, mode="hold"), f"{reason}; {why}: battery on hold", "quick")
    if quick.kind == "force_charge":
        candidate = replace(base, mode="charge", power_kw=quick.power_kw if quick.power_kw is not None else settings.max_charge_kw)
    elif quick.kind == "force_export":
        candidate = replace(base, mode="discharge", power_kw=quick.power_kw if quick.power_kw is not None else settings.max_discharge_kw)
    elif quick.kind == "stop":
        candidate = replace(base, mode="hold")
    elif quick.kind == "heat":
        heat = quick.power_kw if quick.power_kw is not None else settings.heat_kw
        candidate = replace(candidate, water_kw=heat)
    return _Draft(candidate, reason, "quick")


def device_guards(draft: _Draft, settings: ControlSettings) -> _Draft:
    """What the site or the device does not allow: grid charging when forbidden, modes the profile lacks."""
    if draft.intent.mode == "charge" and not settings.grid_charging_allowed:
        draft = draft.guarded("grid_charging_not_allowed", replace(draft.intent, mode="self_consumption", power_kw=0.0),
                              "; grid charging not allowed: self-consumption")
    if draft.intent.mode not in settings.supported_modes:
        draft = draft.guarded(f"{draft.intent.mode}_unsupported", replace(draft.intent, mode="self_consumption", power_kw=0.0),
                              f"; the device cannot {draft.intent.mode}: self-consumption")
    return draft


def reserve_guards(draft: _Draft, soc: float | None, settings: ControlSettings) -> _Draft:
    """Hardware and reserve protection, whatever the layer above asked."""
    if soc is None and draft.intent.may_discharge:
        return draft.guarded("soc_unknown_no_discharge", replace(draft.intent, mode="hold", power_kw=0.0),
                             "; SoC unknown: battery on hold")
    if soc is not None and soc <= settings.reserve_soc_frac + 1e-9 and draft.intent.may_discharge:
        if draft.intent.mode == "discharge" or not settings.supports_soc_floor:
            if settings.supports_soc_floor:
                draft = draft.guarded("reserve_no_discharge", replace(draft.intent, mode="self_consumption", power_kw=0.0),
                                      "; SoC at reserve: no discharge (self-consumption, floor at reserve)")
            else:
                draft = draft.guarded("reserve_no_discharge", replace(draft.intent, mode="hold", power_kw=0.0),
                                      "; SoC at reserve: battery on hold")
        if draft.intent.mode == "self_consumption" and settings.supports_soc_floor:
            floor = max(draft.intent.soc_floor_frac or 0.0, settings.reserve_soc_frac)
            draft = replace(draft, intent=replace(draft.intent, soc_floor_frac=floor))
    return draft


def decide(
    telemetry: Telemetry | None,
    plan: PlanMsg | None,
    overrides: Overrides,
    now: datetime,
    settings: ControlSettings,
    last_written: Intent | None = None,
    must_rewrite: bool = False,
) -> Decision:
    """One tick's decision: pause, else (safety or plan) -> quick action -> device guards -> reserve
    guards -> clamp and write threshold. ``last_written`` is the intent the device holds as far as
    we know (None when unknown); ``must_rewrite`` forces a write (reconnect, failed or unverified write)."""
    situation = assess(telemetry, plan, now, settings)
    if overrides.is_paused(now):
        return Decision(None, "pause", "manual pause: the executor writes nothing", situation.alarms,
                        planned=situation.slot, plan_id=situation.plan_id)

    # Lower layers first, so "heat" can ride on top of them.
    draft = safety_step(situation, settings, last_written) or plan_step(situation, telemetry, settings)
    quick = overrides.active_quick(now)
    if quick is not None:
        draft = quick_action_step(draft, quick, settings, situation.soc)
    draft = reserve_guards(device_guards(draft, settings), situation.soc, settings)

    alarms = list(situation.alarms)
    alarms.extend(g for g in draft.guards if g not in alarms)
    candidate = _clamp(draft.intent, settings)
    changed = must_rewrite or last_written is None or _differs(candidate, last_written, settings.write_threshold_kw)
    return Decision(
        intent=candidate,
        source=draft.source,
        reason=draft.reason,
        alarms=tuple(alarms),
        override=quick,
        write=changed and not settings.shadow,
        changed=changed,
        planned=situation.slot,
        plan_id=situation.plan_id,
        guards=draft.guards,
    )
