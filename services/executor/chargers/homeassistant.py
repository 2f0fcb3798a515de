"""A charger Home Assistant already controls (``evs[].charger.type: homeassistant``), over the HA
executor backend's connection (``shared.ha.live.LiveEntities``) and writer (``HAWriter``).

Entities, from the site's ``homeassistant:`` block:

- read (``homeassistant.entities`` roles): ``ev_plugged`` (binary), ``ev_power`` (W or kW by its
  unit), ``ev_soc`` (%, optional);
- write (``homeassistant.controls``): ``ev_current`` (a number/input_number in amps per phase) and
  ``ev_charging`` (a switch/input_boolean): amps > 0 -> current set, switch on; 0 -> switch off.

Fallback: mode ``current`` -> ``ev_current`` = ``fallback.current_a`` and the switch on; mode
``default`` -> the switch off (the integration's own logic takes over). Like evcc, HA has no
expiring schedule: the last current stays until Darkstar changes it. A write that HA's rate limit
(``homeassistant.min_write_interval_s``) holds back is sent on a later tick, not counted as refused.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from typing import Any

from services.executor.chargers.base import ChargeCommand, ChargerBusy, ChargerError, ChargerReading
from services.executor.ha_profile import HAStep
from services.executor.homeassistant import FIRST_CONNECT_S, HAWriter
from shared.config import ChargerConfig, SiteConfig
from shared.ha.client import HAError
from shared.ha.live import LiveEntities

READ_ROLES = ("ev_plugged", "ev_power", "ev_soc")
CONTROLS = ("ev_current", "ev_charging")


class HomeAssistantCharger:
    def __init__(self, name: str, config: ChargerConfig, site: SiteConfig):
        ha = site.homeassistant
        if ha is None:
            raise ValueError(f"evs {name}: a homeassistant charger needs the site's homeassistant: block")
        missing = [f"homeassistant.entities.{r}" for r in READ_ROLES[:2] if r not in ha.entities]
        missing += [f"homeassistant.controls.{c}" for c in CONTROLS if c not in ha.controls]
        if missing:
            raise ValueError(f"evs {name}: a homeassistant charger needs {', '.join(missing)}")
        self.name, self.config = name, config
        entities = {r: e for r, e in ha.entities.items() if r in READ_ROLES}
        controls = {c: ha.controls[c] for c in CONTROLS}
        self.controls = controls
        self.live = LiveEntities(ha.model_copy(update={"entities": entities, "controls": controls}))
        self.writer = HAWriter(self.live, min_interval_s=ha.min_write_interval_s, verify_timeout_s=ha.verify_timeout_s)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self.live.run(), name="ha-charger-entities")
            try:
                await asyncio.wait_for(self.live.connected.wait(), FIRST_CONNECT_S)
            except asyncio.TimeoutError:
                pass  # read() says not connected until it is

    async def read(self) -> ChargerReading:
        now = datetime.now(timezone.utc)
        if not self.live.connected.is_set():
            return ChargerReading(ts=now, connected=False, error=self.live.connection_problem)
        values = {role: v.value for role, v in self.live.values().items()}
        plugged, power, soc = values.get("ev_plugged"), values.get("ev_power"), values.get("ev_soc")
        switch = self.writer.current(self.controls["ev_charging"])
        return ChargerReading(
            ts=now, connected=True, plugged=None if plugged is None else bool(plugged),
            charging=bool(plugged) and power is not None and power > 0.05,
            power_kw=None if power is None else max(0.0, float(power)),
            soc_frac=None if soc is None else float(soc), status=f"switch {switch}")

    async def _write(self, steps: list[tuple[str, str, dict[str, Any]]]) -> None:
        records = []
        try:
            for action, control, data in steps:
                step = HAStep(action=action, control=control, data=data)
                records.append(await self.writer.call(step, self.controls[control], step.service_data({})))
        except RuntimeError as err:  # the per-entity rate limit: try again on a later tick
            raise ChargerBusy(str(err)) from None
        except (HAError, ValueError) as err:
            raise ChargerError(f"Home Assistant: {err}") from None
        mismatches = await self.writer.verify([r for r in records if not r.get("skipped")])
        if mismatches:
            raise ChargerError(f"Home Assistant did not take the command: {'; '.join(mismatches)}")

    async def apply(self, command: ChargeCommand) -> None:
        if command.limit_a <= 0:
            await self._write([("turn_off", "ev_charging", {})])
            return
        await self._write([("set_value", "ev_current", {"value": command.limit_a}), ("turn_on", "ev_charging", {})])

    async def fallback(self) -> None:
        fb = self.config.fallback
        if fb.mode == "default" or fb.current_a <= 0:
            await self._write([("turn_off", "ev_charging", {})])
            return
        await self._write([("set_value", "ev_current", {"value": fb.current_a}), ("turn_on", "ev_charging", {})])

    async def close(self) -> None:
        await self.live.stop()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
