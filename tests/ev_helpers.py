"""Shared pieces of the EV charger tests: a clock, plans with EV power, an OCPP rig over a real websocket."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from services.demo.chargepoint import SimCar, SimChargePoint
from services.executor.chargers.controller import ChargerController
from services.executor.chargers.ocpp import CentralSystem, OcppCharger
from shared.clock import ManualClock
from shared.config import EVConfig, OcppServerConfig
from shared.contracts import CostBreakdown, PlanMsg, PlanSlot, SolverStats

SLOT = timedelta(minutes=15)
PASSWORD = "correct horse"


def ev_config(phases: int = 3, max_current_a: float = 16.0, fallback_a: float = 6.0, **charger: Any) -> EVConfig:
    cfg = {"type": "ocpp", "identity": "cp-garage", "password": PASSWORD, "phases": phases,
           "max_current_a": max_current_a, "fallback": {"mode": "current", "current_a": fallback_a}, **charger}
    max_kw = round(max_current_a * 230 * phases / 1000, 2)
    return EVConfig(name="car", battery_kwh=60, max_charge_kw=max_kw, target_soc_frac=0.8, charger=cfg)


def ev_plan(start: datetime, ev_kw: list[float], *, valid_for: timedelta = timedelta(hours=1),
            import_kw: list[float] | None = None, created: datetime | None = None) -> PlanMsg:
    slots = [PlanSlot(start=start + i * SLOT, mode="self_consumption", soc_kwh=5.0, ev_kw=kw,
                      import_kw=(import_kw[i] if import_kw else kw)) for i, kw in enumerate(ev_kw)]
    return PlanMsg(site_id="ev-test", created_at=created or start, valid_until=start + valid_for, slots=slots,
                   cost=CostBreakdown(currency="EUR", import_cost=0, export_revenue=0, total_cost=0),
                   solver=SolverStats(status="optimal"))


@dataclass
class Rig:
    clock: ManualClock
    system: CentralSystem
    cp: SimChargePoint
    controller: ChargerController
    plan: list[PlanMsg | None]
    context: list[tuple[str, Any]]
    replans: list[str]
    reports: list[tuple[str, str]]
    hands_off: list[str | None]  # [why]: what the executor's shadow mode / pause says, None when free

    async def tick(self) -> Any:
        """One controller tick, then let the messages it caused settle on both ends."""
        decision = await self.controller.tick()
        await settle(self.cp)
        return decision


async def settle(cp: SimChargePoint, rounds: int = 3) -> None:
    # Each round trip (call, reply, after-hooks) completes within a few loop iterations on localhost.
    for _ in range(rounds):
        await asyncio.sleep(0.05)
    await cp.tick()
    await asyncio.sleep(0.05)


@asynccontextmanager
async def ocpp_rig(ev: EVConfig, start: datetime, *, soc_frac: float = 0.3, telemetry: Any = None,
                   guard: bool = False, reports_soc: bool = True) -> AsyncIterator[Rig]:
    clock = ManualClock(start)
    system = CentralSystem(OcppServerConfig(host="127.0.0.1", port=0), {ev.charger.identity: ev.charger})
    await system.start()
    cp = SimChargePoint(ev.charger.identity, f"ws://127.0.0.1:{system.port}/ocpp/{ev.charger.identity}", PASSWORD,
                        car=SimCar(battery_kwh=ev.battery_kwh, soc_frac=soc_frac), clock=clock.now,
                        phases=ev.charger.phases, max_current_a=32.0, meter_interval_s=3600, reports_soc=reports_soc)
    plan: list[PlanMsg | None] = [None]
    context: list[tuple[str, Any]] = []
    replans: list[str] = []
    reports: list[tuple[str, str]] = []
    hands_off: list[str | None] = [None]
    controller = ChargerController(
        ev, OcppCharger(ev.name, ev.charger, system, clock=clock.now), clock=clock, guard_enabled=guard,
        plan=lambda: plan[0], telemetry=telemetry or (lambda: None), context=lambda name: None,
        publish_context=lambda n, v: context.append((n, v)), request_replan=replans.append,
        report=lambda what, why: reports.append((what, why)), hands_off=lambda: hands_off[0])
    try:
        await cp.connect()
        await settle(cp)
        yield Rig(clock, system, cp, controller, plan, context, replans, reports, hands_off)
    finally:
        await cp.disconnect()
        await system.stop()
