"""``darkstar up --demo --ev``: a car on a simulated OCPP charge point that the executor drives.

The car plugs in at 18:00 local time, leaves at 07:00 and wants 80 % by then; each day away uses
``DAILY_USE_KWH``. The charge point (``services.demo.chargepoint``) connects to the executor's
OCPP central system over a websocket with its password, like a wallbox on the home network.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
from dataclasses import dataclass, field
from datetime import datetime, time
from typing import Any

from services.demo.chargepoint import SimCar, SimChargePoint
from shared.asyncthread import LoopThread
from shared.config import EVConfig, SiteConfig

log = logging.getLogger("darkstar.demo.ev")

PLUG_AT = time(18, 0)
LEAVE_AT = time(7, 0)
TARGET_SOC_FRAC = 0.8
DAILY_USE_KWH = 18.0  # about 100 km a day
IDENTITY = "demo-wallbox"


def demo_ev(password: str) -> EVConfig:
    """The demo's car: 60 kWh, 11 kW three-phase wallbox (16 A), 6 A fallback."""
    return EVConfig.model_validate({
        "name": "demo_car", "battery_kwh": 60.0, "max_charge_kw": 11.0, "min_charge_kw": 4.14,
        "plugged_from": PLUG_AT, "departure": LEAVE_AT, "target_soc_frac": TARGET_SOC_FRAC,
        "target_kwh": 18.0,  # used until the car's SoC is known
        "charger": {"type": "ocpp", "identity": IDENTITY, "password": password, "phases": 3,
                    "max_current_a": 16.0, "min_current_a": 6.0, "fallback": {"mode": "current", "current_a": 6.0}},
    })


def with_demo_ev(site: SiteConfig) -> SiteConfig:
    """The demo site plus the car, the central system on a free loopback port with a fresh password."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ev = demo_ev(secrets.token_urlsafe(16))
    return site.model_copy(update={
        "evs": [ev],
        "executor": site.executor.model_copy(update={
            "ocpp": site.executor.ocpp.model_copy(update={"host": "127.0.0.1", "port": port})}),
    })


def plugged_at(local: datetime) -> bool:
    """Whether the car is home and plugged in at this local time (18:00 to 07:00)."""
    t = local.time()
    return t >= PLUG_AT or t < LEAVE_AT


@dataclass
class CarDay:
    """Drives the car through its day: plug in, leave (recording the SoC), come back emptier."""

    car: SimCar
    departures: list[tuple[datetime, float]] = field(default_factory=list)

    async def follow(self, cp: SimChargePoint, local: datetime) -> None:
        home = plugged_at(local)
        if home and not cp.plugged:
            await cp.plug()
        elif not home and cp.plugged:
            self.departures.append((local, self.car.soc_frac))
            await cp.unplug()
            # the day's driving, before it comes home again
            self.car.soc_frac = max(0.05, self.car.soc_frac - DAILY_USE_KWH / self.car.battery_kwh)


class DemoCar:
    """The simulated charge point and car on their own thread, moved by the demo's clock."""

    def __init__(self, site: SiteConfig, clock: Any, *, soc_frac: float = 0.45, interval_s: float | None = None):
        ev = site.evs[0]
        cfg = ev.charger
        port = site.executor.ocpp.port
        # meter values every ~10 simulated seconds, as a wallbox sends them, but at most 10 per wall second
        self.interval_s = interval_s if interval_s is not None else min(1.0, max(0.1, clock.wall_seconds(10.0)))
        self.site, self.clock = site, clock
        self.day = CarDay(SimCar(battery_kwh=ev.battery_kwh, soc_frac=soc_frac, max_kw=ev.max_charge_kw,
                                 efficiency=ev.charge_efficiency))
        url = f"ws://127.0.0.1:{port}/{site.executor.ocpp.path}/{cfg.identity}"
        self.cp = SimChargePoint(cfg.identity or IDENTITY, url, cfg.secret() or "", car=self.day.car,
                                 clock=clock.now, phases=cfg.phases, max_current_a=cfg.max_current_a,
                                 meter_interval_s=3600.0)
        self._thread = LoopThread("demo-chargepoint")
        self._task: asyncio.Task[Any] | None = None

    def start(self) -> None:
        self._thread.start(self._boot, timeout_s=30.0)

    async def _boot(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while True:
            try:
                if not self.cp.connected.is_set():
                    await self.cp.connect()
                await self.day.follow(self.cp, self.clock.now().astimezone(self.site.tz))
                await self.cp.tick()
            except (TimeoutError, OSError) as err:
                log.debug("demo charge point: %s; retrying", err)
            except Exception as err:  # noqa: BLE001 - a closed socket mid-message: reconnect next round
                log.info("demo charge point: %s: %s; reconnecting", type(err).__name__, err)
                await self.cp.disconnect()
            await asyncio.sleep(self.interval_s)

    def stop(self) -> None:
        async def shutdown() -> None:
            if self._task is not None:
                self._task.cancel()
            await self.cp.disconnect()

        self._thread.stop(shutdown)
