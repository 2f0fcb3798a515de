"""EV chargers driven by the executor: one backend per ``evs[].charger.type`` behind one control loop.

``build_chargers(site, clock, ...)`` makes a :class:`~services.executor.chargers.controller.ChargerController`
per EV with a charger and the :class:`~services.executor.chargers.controller.ChargerRunner` that ticks
them (and starts the OCPP central system when an OCPP charger is configured). docs/ev.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from services.executor.chargers.base import Charger
from services.executor.chargers.controller import ChargerController, ChargerRunner
from shared.config import SiteConfig
from shared.execution import import_guard_enabled


@dataclass
class ChargerSet:
    controllers: list[ChargerController]
    runner: ChargerRunner
    central_system: Any = None  # services.executor.chargers.ocpp.CentralSystem when OCPP chargers exist

    def by_name(self, name: str | None) -> ChargerController:
        if name is None:
            return self.controllers[0]
        for c in self.controllers:
            if c.ev.name == name:
                return c
        raise ValueError(f"no EV named {name!r} with a charger; known: {', '.join(c.ev.name for c in self.controllers)}")

    def ev_kw(self) -> float | None:
        """Measured EV power over all chargers; None if any charger's power is not known (never guessed)."""
        total = 0.0
        for c in self.controllers:
            r = c.reading
            if r is None or not r.connected:
                return None
            if r.plugged is False:
                continue
            if r.power_kw is None:
                return None
            total += r.power_kw
        return round(total, 3)


def _backend(site: SiteConfig, index: int, clock: Any, central_system: Any, http_client: Any) -> Charger:
    ev = site.evs[index]
    cfg = ev.charger
    if cfg.type == "ocpp":
        from services.executor.chargers.ocpp import OcppCharger

        return OcppCharger(ev.name, cfg, central_system, clock=clock.now)
    if cfg.type == "evcc":
        from services.executor.chargers.evcc import EvccCharger

        return EvccCharger(ev.name, cfg, client=http_client)
    if cfg.type == "homeassistant":
        from services.executor.chargers.homeassistant import HomeAssistantCharger

        return HomeAssistantCharger(ev.name, cfg, site)
    raise ValueError(f"evs.{index}.charger.type {cfg.type!r} has no backend")


def build_chargers(site: SiteConfig, clock: Any, *, http_client: Any = None, **callbacks: Any) -> ChargerSet | None:
    """Controllers for every EV with a charger (``None`` when there is none). ``callbacks`` go to each
    controller (plan, telemetry, context, publish_context, request_replan, report)."""
    indices = [i for i, ev in enumerate(site.evs) if ev.charger.type != "none"]
    if not indices:
        return None
    central_system = None
    ocpp = {site.evs[i].charger.identity: site.evs[i].charger for i in indices if site.evs[i].charger.type == "ocpp"}
    if ocpp:
        from services.executor.chargers.ocpp import CentralSystem

        central_system = CentralSystem(site.executor.ocpp, ocpp)  # type: ignore[arg-type]
        central_system.on_error = callbacks.get("report")
    # The plan's ev_kw is the sum over EVs: each EV's part is its share of the charging power.
    total_kw = sum(site.evs[i].max_charge_kw for i in indices)
    controllers = [
        ChargerController(
            site.evs[i], _backend(site, i, clock, central_system, http_client), clock=clock, first=i == 0,
            share=site.evs[i].max_charge_kw / total_kw if len(site.evs) > 1 else 1.0,
            guard_enabled=import_guard_enabled(site), guard_margin_kw=site.executor.import_guard_margin_kw,
            telemetry_stale_s=site.executor.telemetry_stale_s, **callbacks,
        )
        for i in indices
    ]

    async def setup() -> None:
        if central_system is not None:
            await central_system.start()
        for c in controllers:
            await c.charger.start()

    async def teardown() -> None:
        for c in controllers:
            await c.charger.close()
        if central_system is not None:
            await central_system.stop()

    runner = ChargerRunner(controllers, clock=clock, tick_s=site.executor.tick_s, setup=setup, teardown=teardown)
    return ChargerSet(controllers, runner, central_system)
