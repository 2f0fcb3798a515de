"""What an EV charger should do this tick: pure rules, no I/O (tests call :func:`decide_charge`).

Priority, highest first (the inverter's order, docs/ev.md has the table):

1. **charger unreachable** - nothing can be sent; the charger's stored fallback is in force
   (OCPP: Darkstar's profile expires at the plan's ``valid_until``, then its default applies).
2. **faulted connector** - nothing is sent; alarm; the planner is told the car is not available.
3. **quick action** ``ev_charge`` with a TTL - charge at the maximum current until the car's SoC
   reaches the asked target (or the TTL ends when the SoC is unknown).
4. **safety** - plan missing, expired or without a slot for now: the configured fallback
   (``evs[].charger.fallback``); alarm ``ev_plan_missing``/``ev_plan_expired``/``ev_plan_no_slot``.
5. **plan** - the slot's EV power, lowered by the import guard (:func:`shared.execution.guard_ev_kw`)
   when it is on and the inverter's telemetry is fresh with a grid reading.

Power becomes a per-phase current: below ``min_current_a`` the car cannot charge, so 0 A; above
``max_current_a`` clamped. Future slots of the plan go along as the schedule the charger keeps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from services.executor.chargers.base import ChargeCommand, ChargerReading
from shared.config import EVConfig
from shared.contracts import PlanMsg
from shared.execution import guard_ev_kw
from shared.slots import SLOT

EV_QUICK_ACTION = "ev_charge"


@dataclass(frozen=True)
class EvQuick:
    """``charge now to X %``: full current until the SoC reaches ``target_soc_frac`` or ``expires_at``."""

    target_soc_frac: float
    expires_at: datetime


@dataclass(frozen=True)
class GuardInput:
    """The inverter side of the import guard: its fresh grid reading (+ = import) and whether it is on."""

    enabled: bool
    margin_kw: float
    grid_kw: float | None = None  # None: stale or not reported -> no adjustment


@dataclass(frozen=True)
class EvDecision:
    command: ChargeCommand | None  # None: send nothing (unreachable, faulted) or fall back
    fallback: bool = False
    source: str = "plan"  # unreachable | faulted | quick | safety | plan
    reason: str = ""
    alarms: tuple[str, ...] = field(default=())


def amps_for(ev: EVConfig, power_kw: float) -> float:
    """Per-phase current for ``power_kw`` on this charger: 0 below the minimum, clamped to the maximum."""
    cfg = ev.charger
    if not math.isfinite(power_kw) or power_kw <= 0:
        return 0.0
    amps = cfg.amps_for_kw(min(power_kw, ev.max_charge_kw))
    if amps < cfg.min_current_a - 1e-6:
        return 0.0
    return round(min(amps, cfg.max_current_a), 1)


def planned_ev_kw(plan: PlanMsg, start: datetime, share: float) -> float | None:
    for slot in plan.slots:
        if slot.start <= start < slot.start + SLOT:
            return slot.ev_kw * share
    return None


def decide_charge(
    now: datetime,
    ev: EVConfig,
    plan: PlanMsg | None,
    reading: ChargerReading,
    *,
    share: float = 1.0,
    quick: EvQuick | None = None,
    guard: GuardInput | None = None,
    target_soc_frac: float | None = None,
    departure: datetime | None = None,
) -> EvDecision:
    """The decision for one tick (module doc). ``share`` is this EV's part of the plan's ``ev_kw``."""
    cfg = ev.charger
    if not reading.connected:
        return EvDecision(None, source="unreachable", alarms=("charger_unreachable",),
                          reason=f"charger {cfg.identity} not connected: its stored fallback applies")
    if reading.faulted:
        return EvDecision(None, source="faulted", alarms=("charger_faulted",),
                          reason=f"charger {cfg.identity} reports a fault ({reading.status or 'Faulted'})")
    if quick is not None and now < quick.expires_at:
        if reading.soc_frac is None or reading.soc_frac < quick.target_soc_frac:
            amps = cfg.max_current_a
            # A lease of 15-30 min renewed every slot, not the whole TTL (up to a day): a Darkstar that
            # dies mid-action leaves the full current for at most half an hour, then the fallback.
            slot_start = now.replace(minute=now.minute - now.minute % 15, second=0, microsecond=0)
            until = min(quick.expires_at, slot_start + 2 * SLOT)
            return EvDecision(
                ChargeCommand(amps, cfg.kw_for_amps(amps), until=until, source="quick",
                              reason=f"charge now to {quick.target_soc_frac:.0%}",
                              target_soc_frac=quick.target_soc_frac),
                source="quick", reason=f"quick action: charge now to {quick.target_soc_frac:.0%} "
                f"until {quick.expires_at.isoformat()}")
    if plan is None:
        return EvDecision(None, fallback=True, source="safety", alarms=("ev_plan_missing",),
                          reason="no plan: charger fallback")
    if now >= plan.valid_until:
        return EvDecision(None, fallback=True, source="safety", alarms=("ev_plan_expired",),
                          reason=f"plan {plan.plan_id} expired at {plan.valid_until.isoformat()}: charger fallback")
    now_kw = planned_ev_kw(plan, now, share)
    if now_kw is None:
        return EvDecision(None, fallback=True, source="safety", alarms=("ev_plan_no_slot",),
                          reason=f"plan {plan.plan_id} has no slot for now: charger fallback")
    reason = f"plan: EV {now_kw:.2f} kW"
    source = "plan"
    if guard is not None and guard.enabled and now_kw > 0:
        if guard.grid_kw is None:
            reason += " (import guard: no fresh grid reading, no adjustment)"
        else:
            ev_now_kw = reading.power_kw or 0.0
            slot = next(s for s in plan.slots if s.start <= now < s.start + SLOT)
            capped = guard_ev_kw(now_kw, slot.import_kw, guard.grid_kw - ev_now_kw, margin_kw=guard.margin_kw)
            if capped < now_kw - 0.05:
                reason += f"; import guard: import capped at {slot.import_kw + guard.margin_kw:.2f} kW -> EV {capped:.2f} kW"
                now_kw, source = capped, "guard"
    first = now.replace(second=0, microsecond=0)
    first = first.replace(minute=first.minute - first.minute % 15)
    schedule = tuple((s.start, amps_for(ev, s.ev_kw * share)) for s in plan.slots
                     if s.start > first and s.start < plan.valid_until)
    amps = amps_for(ev, now_kw)
    command = ChargeCommand(amps, cfg.kw_for_amps(amps), until=plan.valid_until, schedule=schedule,
                            source=source, reason=reason, target_soc_frac=target_soc_frac, departure=departure)
    return EvDecision(command, source=source, reason=f"{reason} -> {amps:g} A x {cfg.phases}")


def command_changed(old: ChargeCommand | None, new: ChargeCommand, threshold_a: float = 0.5) -> bool:
    """Whether ``new`` must be sent: a different current now, schedule or expiry (chargers' flash wears too)."""
    if old is None:
        return True
    if abs(old.limit_a - new.limit_a) >= threshold_a or old.until != new.until:
        return True
    return dict(old.schedule) != dict(new.schedule)


def summary(command: ChargeCommand | None) -> dict[str, Any] | None:
    if command is None:
        return None
    return {"limit_a": command.limit_a, "limit_kw": round(command.limit_kw, 3), "until": command.until.isoformat(),
            "source": command.source, "slots": len(command.schedule)}
