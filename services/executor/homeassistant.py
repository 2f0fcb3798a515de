"""The ``Inverter`` role over Home Assistant: telemetry from the site's entities, intents as service calls.

``executor.backend: homeassistant`` puts this behind the same control loop as Modbus, so the
safety rules, overrides, telemetry and observations are the executor's own. Reading: the role
values of :class:`shared.ha.live.LiveEntities`; a lost connection or a refused token is a failed
read (the loop then holds and, after three, falls back to safe mode) and an entity without a usable
value leaves its field empty with an alarm naming it. Writing: the profile's service calls for the
intent, each entity written at most once per ``min_write_interval_s``, already-correct entities
skipped, then read back until the entity shows the value (``verify_timeout_s``).
Chargers (issue #12) can reuse :class:`HAWriter` for a switch/number pair.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from datetime import datetime
from typing import Any, Callable

from services.executor.ha_profile import HAProfile, HAStep
from services.executor.inverter import (
    DeviceLimits,
    Intent,
    InverterError,
    Telemetry,
    WriteResult,
    clamp_intent,
    intent_params,
)
from shared.config import SiteConfig
from shared.ha.client import HAError
from shared.ha.live import EntityReadings, LiveEntities
from shared.ha.statestream import StatestreamEntities
from shared.ha.units import house_load

log = logging.getLogger("darkstar.executor.ha")

TELEMETRY_ROLES = {"battery_soc": "soc_frac", "battery_power": "battery_kw", "pv_power": "pv_kw",
                   "load_power": "load_kw", "grid_power": "grid_kw", "water_heater_power": "water_kw",
                   "ev_power": "ev_kw"}
FIRST_CONNECT_S = 10.0


def telemetry_from(values: dict[str, Any], ts: datetime, capacity_kwh: float | None, epoch: int) -> Telemetry:
    """Role values -> one reading. House load, when no entity gives it, follows from the balance
    (:func:`shared.ha.units.house_load`: pv, grid and battery all measured), never from fewer."""
    fields: dict[str, float | None] = {field: values.get(role) for role, field in TELEMETRY_ROLES.items()}
    if fields["load_kw"] is None and None not in (fields["pv_kw"], fields["grid_kw"], fields["battery_kw"]):
        fields["load_kw"] = house_load(fields["pv_kw"], fields["grid_kw"], fields["battery_kw"],  # type: ignore[arg-type]
                                       fields["water_kw"], fields["ev_kw"])
    for name in ("pv_kw", "water_kw", "ev_kw"):
        if fields[name] is not None:
            fields[name] = max(0.0, fields[name])  # type: ignore[type-var] # a meter's -0.003 kW at night
    soc = fields["soc_frac"]
    extra = {k: v for k, v in values.items() if k not in TELEMETRY_ROLES and v is not None}
    return Telemetry(ts=ts, soc_kwh=soc * capacity_kwh if soc is not None and capacity_kwh else None,
                     values={k: float(v) for k, v in extra.items()}, connection_epoch=epoch, **fields)


class HAWriter:
    """Service calls with rate limit and read-back, shared by the inverter and HA charger backends."""

    def __init__(self, live: LiveEntities, *, min_interval_s: float, verify_timeout_s: float) -> None:
        self.live = live
        self.min_interval_s = min_interval_s
        self.verify_timeout_s = verify_timeout_s
        self.last_call: dict[str, float] = {}  # entity -> monotonic time of the last service call

    def current(self, entity_id: str) -> str | None:
        state = self.live.states.get(entity_id)
        return None if state is None or state.removed else state.state

    async def call(self, step: HAStep, entity_id: str, data: dict[str, Any]) -> dict[str, Any]:
        """One service call; returns a write record. Raises HAError (HA refused) or RuntimeError (rate limit)."""
        domain, service = step.service(entity_id)
        expected = step.expected_state(data)
        if expected is not None and _matches(self.current(entity_id), expected):
            return {"register": entity_id, "service": f"{domain}.{service}", "data": data, "skipped": "already set"}
        since = time.monotonic() - self.last_call.get(entity_id, -math.inf)
        if since < self.min_interval_s:
            raise RuntimeError(f"{entity_id}: written {since:.0f} s ago, limit one write per "
                               f"{self.min_interval_s:g} s (homeassistant.min_write_interval_s)")
        client = self.live.client
        if client is None or not self.live.connected.is_set():
            raise HAError(self.live.connection_problem or "not connected to Home Assistant")
        self.last_call[entity_id] = time.monotonic()
        await client.call_service(domain, service, entity_id, **data)
        return {"register": entity_id, "service": f"{domain}.{service}", "data": data, "expected": expected}

    async def verify(self, records: list[dict[str, Any]]) -> list[str]:
        """Wait until each written entity shows its value; mismatches name entity, wanted and seen."""
        deadline = time.monotonic() + self.verify_timeout_s
        pending = [r for r in records if r.get("expected") is not None]
        while pending and time.monotonic() < deadline:
            pending = [r for r in pending if not _matches(self.current(r["register"]), r["expected"])]
            if pending:
                await asyncio.sleep(0.1)
        return [f"{r['register']}: wrote {r['expected']!r}, reads {self.current(r['register'])!r}" for r in pending]


def _matches(state: str | None, expected: Any) -> bool:
    if state is None:
        return False
    if isinstance(expected, (int, float)) and not isinstance(expected, bool):
        try:
            return abs(float(state) - float(expected)) <= max(1e-6, abs(float(expected)) * 0.01)
        except ValueError:
            return False
    return str(state) == str(expected)


class HomeAssistantInverter:
    """Implements ``services.executor.inverter.Inverter`` through Home Assistant."""

    def __init__(self, site: SiteConfig, profile: HAProfile, *, clock: Callable[[], datetime]) -> None:
        ha = site.homeassistant
        if ha is None:
            raise ValueError("executor.backend 'homeassistant' needs a homeassistant: block")
        self.site = site
        self.profile = profile
        self.controls = profile.resolve_controls(ha.controls)
        self.supported_modes = tuple(m for m in ("charge", "discharge", "self_consumption", "hold")
                                     if profile.usable(m, self.controls))
        self.controls_water = profile.usable("water_on", self.controls) and profile.usable("water_off", self.controls)
        self.clock = clock
        readable = ha.model_copy(update={"controls": self.controls})
        self.live: EntityReadings
        self.writer: HAWriter | None
        if ha.input == "statestream":  # token-free and read only (config_checks: shadow mode only)
            self.live = StatestreamEntities(readable, site.mqtt, site_currency=site.tariff.currency)
            self.writer = None
        else:
            self.live = LiveEntities(readable, site_currency=site.tariff.currency)
            self.writer = HAWriter(self.live, min_interval_s=ha.min_write_interval_s,
                                   verify_timeout_s=ha.verify_timeout_s)
        battery = site.battery
        charge = [v for v in (profile.limits.max_charge_kw, battery and battery.max_charge_kw) if v]
        discharge = [v for v in (profile.limits.max_discharge_kw, battery and battery.max_discharge_kw) if v]
        if not charge or not discharge:
            raise ValueError(f"Home Assistant profile {profile.name!r}: no power limits and no battery configured")
        self.limits = DeviceLimits(max_charge_kw=min(charge), max_discharge_kw=min(discharge),
                                   max_export_kw=site.grid.max_export_kw,
                                   min_soc_frac=battery.min_soc_frac if battery else 0.0,
                                   max_soc_frac=battery.max_soc_frac if battery else 1.0)
        self._task: asyncio.Task[None] | None = None

    async def _ensure_running(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self.live.run(), name="ha-live-entities")
            try:  # the first read waits for the first connection, later reads never wait
                await asyncio.wait_for(self.live.connected.wait(), FIRST_CONNECT_S)
            except asyncio.TimeoutError:
                pass

    async def read_telemetry(self) -> Telemetry:
        await self._ensure_running()
        if not self.live.connected.is_set():
            raise InverterError(f"Home Assistant: {self.live.connection_problem}")
        values = {role: v.value for role, v in self.live.values().items()}
        capacity = self.site.battery.capacity_kwh if self.site.battery else None
        return telemetry_from(values, self.clock(), capacity, self.live.connection_epoch)

    def alarms(self) -> list[str]:
        """Entity-level problems (each names the entity); shown with the executor's alarms."""
        return self.live.alarms()

    async def apply(self, intent: Intent) -> WriteResult:
        applied, clamped = clamp_intent(intent, self.limits)
        result = WriteResult(requested=intent, applied=applied, ok=False, verified=False, clamped=clamped,
                             connection_epoch=self.live.connection_epoch)
        if self.writer is None:
            result.error = "Home Assistant: read only (homeassistant.input: statestream has no way to write)"
            return result
        steps: list[HAStep] = []
        mode_steps = self.profile.steps_for(applied.mode)
        if mode_steps is None or applied.mode not in self.supported_modes:
            result.unsupported.append(applied.mode)
            result.error = f"profile {self.profile.name!r} cannot {applied.mode!r} with the configured controls"
            return result
        steps += mode_steps
        if applied.export_limit_kw is not None and self.profile.usable("export_limit", self.controls):
            steps += self.profile.intents.export_limit or []
        if applied.water_kw is not None and self.controls_water:
            steps += (self.profile.intents.water_on if applied.water_kw > 0 else self.profile.intents.water_off) or []
        params = intent_params(applied)
        try:
            for step in steps:
                entity_id = self.controls[step.control]
                record = await self.writer.call(step, entity_id, step.service_data(params))
                if record.get("skipped"):
                    result.skipped.append(entity_id)
                else:
                    result.writes.append(record)
        except (HAError, RuntimeError, ValueError) as err:
            result.error = f"Home Assistant: {err}"
            log.warning("executor: %s", result.error)
            return result
        result.ok = True
        result.mismatches = await self.writer.verify(result.writes)
        result.verified = not result.mismatches
        return result

    async def close(self) -> None:
        await self.live.stop()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
