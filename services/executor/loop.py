"""The executor's control loop: read, decide, write, read back, report. No MQTT or HTTP in here.

Over 500 lines: the tick and its bookkeeping (energy per slot, report, alarms, TTL) share the
loop's state; the decision itself is apart, in ``control.py``.

The MQTT/HTTP shell wires the injected callbacks to the broker and the database:

- ``publish_telemetry(TelemetryMsg)`` every tick with a reading,
- ``publish_state(ExecutorStateMsg)`` when the state changes (retained topic),
- ``publish_observation(ObservationMsg)`` at each slot end, energies integrated from the ticks,
- ``log_execution(dict)`` one row per decision: planned, commanded, measured, override, success,

Callbacks may be plain functions or coroutines. Plans arrive already validated (``set_plan``):
the service shell decodes them and reports a bad payload on ``events/error``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import json
import logging
import math
import threading
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from services.executor.control import (
    QUICK_ACTIONS,
    ControlSettings,
    Decision,
    Overrides,
    QuickAction,
    decide,
    safe_intent,
)
from services.executor.inverter import Intent, Inverter, InverterError, Telemetry, WriteResult
from shared.contracts import (
    ExecutorStateMsg,
    ObservationMsg,
    OverrideInfo,
    PlanMsg,
    TelemetryMsg,
)
from shared.slots import SLOT, floor_slot

log = logging.getLogger(__name__)
# One line a tick while a device fails is 360 an hour: these are summarised like pymodbus' own
# (what, how often, since when); the consecutive-failure alarm and safe mode say the rest.
DEVICE_LOGGER = "darkstar.executor.device"
device_log = logging.getLogger(DEVICE_LOGGER)

Callback = Callable[..., Any]
ENERGY_FIELDS = {
    "load_kwh": ("load_kw", 1),
    "pv_kwh": ("pv_kw", 1),
    "import_kwh": ("grid_kw", 1),
    "export_kwh": ("grid_kw", -1),
    "charge_kwh": ("battery_kw", 1),
    "discharge_kwh": ("battery_kw", -1),
    "water_kwh": ("water_kw", 1),
    "ev_kwh": ("ev_kw", 1),
}
DEFAULT_TTL_S = 3600.0


async def _call(callback: Callback | None, *args: Any) -> None:
    if callback is None:
        return
    try:
        result = callback(*args)
        if inspect.isawaitable(result):
            await result
    except Exception:  # a broken consumer must not stop the inverter control
        log.exception("executor callback %s failed", getattr(callback, "__name__", callback))


@dataclass
class _SlotEnergy:
    """Energies of one slot, integrated from readings; a field seen in every reading or None."""

    slot_start: datetime
    covered_s: float = 0.0
    energy_kwh: dict[str, float] = field(default_factory=dict)
    field_s: dict[str, float] = field(default_factory=dict)
    soc_end_frac: float | None = None

    def add(self, seconds: float, reading: Telemetry) -> None:
        self.covered_s += seconds
        hours = seconds / 3600.0
        for name, (source, sign) in ENERGY_FIELDS.items():
            value = getattr(reading, source)
            if value is None:
                continue
            self.energy_kwh[name] = self.energy_kwh.get(name, 0.0) + max(sign * value, 0.0) * hours
            self.field_s[name] = self.field_s.get(name, 0.0) + seconds

    def message(self, site_id: str) -> ObservationMsg:
        values: dict[str, float | None] = {}
        for name in ENERGY_FIELDS:
            complete = self.field_s.get(name, 0.0) >= self.covered_s - 1e-6 and self.covered_s > 0
            values[name] = round(self.energy_kwh.get(name, 0.0), 6) if complete else None
        return ObservationMsg(
            site_id=site_id,
            slot_start=self.slot_start,
            coverage_frac=min(1.0, self.covered_s / SLOT.total_seconds()),
            soc_end_frac=self.soc_end_frac,
            **values,
        )


@dataclass
class TickReport:
    ts: datetime
    telemetry: Telemetry | None
    decision: Decision
    result: WriteResult | None
    success: bool
    error: str | None = None



def extra_readings(values: dict[str, float | None]) -> dict[str, Any]:
    """Readings beyond the power flows that a source gives by role (the HA backend): water heater
    temperature, EV plugged and SoC, for ``telemetry``; roles a source lacks stay absent."""
    out: dict[str, Any] = {}
    if values.get("water_heater_temperature") is not None:
        out["water_temp_c"] = round(float(values["water_heater_temperature"]), 2)  # type: ignore[arg-type]
    if values.get("ev_plugged") is not None:
        out["ev_plugged"] = bool(values["ev_plugged"])
    if values.get("ev_soc") is not None:
        out["ev_soc_frac"] = min(1.0, max(0.0, float(values["ev_soc"])))  # type: ignore[arg-type]
    return out

class ExecutorLoop:
    """Every ``tick_s`` (clock seconds): read telemetry, decide, write unless shadow, read back, report."""

    def __init__(
        self,
        inverter: Inverter,
        settings: ControlSettings,
        *,
        site_id: str,
        clock: Any,
        tick_s: float = 10.0,
        publish_telemetry: Callback | None = None,
        publish_state: Callback | None = None,
        publish_observation: Callback | None = None,
        log_execution: Callback | None = None,
        safe_after_failures: int = 3,
        retry_refused_s: float = 300.0,
    ):
        self.inverter = inverter
        self.settings = settings
        self.site_id = site_id
        self.clock = clock
        self.tick_s = tick_s
        self.publish_telemetry = publish_telemetry
        self.publish_state = publish_state
        self.publish_observation = publish_observation
        self.log_execution = log_execution
        self.safe_after_failures = safe_after_failures
        self.retry_refused_s = retry_refused_s  # how long the safe mode stands in for a refused intent
        self.plan: PlanMsg | None = None
        self.overrides = Overrides()
        self.last_written: Intent | None = None
        self.last_result: WriteResult | None = None
        self.last_decision: Decision | None = None
        self.last_telemetry: Telemetry | None = None
        self.consecutive_failures = 0
        self.ticks = 0
        self.writes = 0
        self._must_rewrite = False
        self._failed_intent: Intent | None = None
        self._failed_at: datetime | None = None
        self.safe_mode = False  # writing the safe intent because the decided one failed
        self._written_epoch: int | None = None
        self._energy: _SlotEnergy | None = None
        self._prev_reading: Telemetry | None = None
        self._last_state_key: Any = None
        self._wake = asyncio.Event()
        self._stopping = False
        self._aio: asyncio.AbstractEventLoop | None = None  # the event loop run() is on

    def _poke(self) -> None:
        """Wake run() for an immediate tick; safe from any thread (MQTT and HTTP callbacks)."""
        aio = self._aio
        if aio is None or aio.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is aio:
            self._wake.set()
        else:
            aio.call_soon_threadsafe(self._wake.set)

    # ----------------------------------------------------------------- inputs

    def set_plan(self, plan: PlanMsg) -> None:
        """Use a validated plan from now on (the newest plan replaces the previous one)."""
        if self.plan is not None and plan.created_at < self.plan.created_at:
            log.warning("ignoring plan %s: older than the plan in use %s", plan.plan_id, self.plan.plan_id)
            return
        self.plan = plan
        self._poke()


    def command(self, action: str, *, ttl_s: float | None = None, power_kw: float | None = None,
                target_soc_frac: float | None = None) -> dict[str, Any]:
        """pause, resume, cancel, or a quick action (force_charge, force_export, stop, heat) with a TTL.

        Raises ValueError with a readable reason for a bad command. Returns the new override state.
        """
        now = self.clock.now()
        longest = self.settings.max_override_s
        if action == "pause":
            ttl = _ttl(longest if ttl_s is None else ttl_s, longest)  # a forgotten pause still ends
            self.overrides = replace(self.overrides, paused=True, paused_until=now + timedelta(seconds=ttl))
        elif action == "resume":
            self.overrides = Overrides()
        elif action == "cancel":
            self.overrides = replace(self.overrides, quick=None)
        elif action in QUICK_ACTIONS:
            ttl = _ttl(min(DEFAULT_TTL_S, longest) if ttl_s is None else ttl_s, longest)
            if power_kw is not None and (not math.isfinite(power_kw) or power_kw < 0):
                raise ValueError("power_kw must be a non-negative number")
            if target_soc_frac is not None and not (
                    math.isfinite(target_soc_frac) and 0 < target_soc_frac <= self.settings.max_soc_frac):
                raise ValueError(f"target_soc_frac must be in (0, {self.settings.max_soc_frac}] (battery.max_soc_frac)")
            quick = QuickAction(action, expires_at=now + timedelta(seconds=ttl), power_kw=power_kw, started_at=now,
                                target_soc_frac=target_soc_frac)
            self.overrides = replace(self.overrides, quick=quick)
        else:
            raise ValueError(f"unknown executor command {action!r}; known: pause, resume, cancel, {', '.join(QUICK_ACTIONS)}")
        self._poke()
        return self.override_state()

    def override_state(self) -> dict[str, Any]:
        now = self.clock.now()
        quick = self.overrides.active_quick(now)
        paused = self.overrides.is_paused(now)
        return {
            "paused": paused,
            "paused_until": self.overrides.paused_until.isoformat() if paused and self.overrides.paused_until else None,
            "override": None if quick is None else {
                "kind": quick.kind, "expires_at": quick.expires_at.isoformat(), "power_kw": quick.power_kw,
                "target_soc_frac": quick.target_soc_frac,
            },
        }

    # ----------------------------------------------------------------- one tick

    async def tick(self) -> TickReport:
        now = self.clock.now()
        self.ticks += 1
        telemetry: Telemetry | None = None
        error: str | None = None
        try:
            telemetry = await self.inverter.read_telemetry()
            self.consecutive_failures = 0
        except InverterError as err:
            self.consecutive_failures += 1
            error = str(err)
            device_log.warning("inverter read failed: %s", err)  # summarised (shared/logsummary.py)
        if telemetry is not None:
            self.last_telemetry = telemetry
            # A new connection may be a rebooted device that forgot our command: write it again.
            if self._written_epoch is not None and telemetry.connection_epoch != self._written_epoch:
                self._must_rewrite = True
            await self._observe(telemetry)
            await _call(self.publish_telemetry, self._telemetry_msg(telemetry))

        decision = decide(
            telemetry, self.plan, self.overrides, now, self.settings, self.last_written, self._must_rewrite
        )
        result: WriteResult | None = None
        if decision.write and decision.intent is not None:
            if telemetry is None:
                # The device just failed to answer a read (after retries): a write now would only
                # pile up more retries. The decision is recorded; it is written once the device answers.
                self._must_rewrite = True
            else:
                intent = decision.intent
                if (self._failed_intent is not None and intent == self._failed_intent and self._failed_at is not None
                        and (now - self._failed_at).total_seconds() < self.retry_refused_s):
                    # The device refused this intent after the retries: fall back to the safe mode.
                    intent = safe_intent(self.settings, telemetry.soc_frac)
                    self.safe_mode = True
                result = await self.inverter.apply(intent)
                self.last_result = result
                self.writes += 1
                if result.ok:
                    self.last_written = result.applied
                    self._written_epoch = result.connection_epoch
                    self._must_rewrite = not result.verified
                    if intent == decision.intent:
                        self._failed_intent, self.safe_mode = None, False
                    else:
                        self._must_rewrite = True  # keep trying the decision, falling back each time it fails
                else:
                    # Partially written or not at all: the device state is unknown until the next write.
                    self.last_written = None
                    self._must_rewrite = True
                    if intent == decision.intent:
                        self._failed_intent, self._failed_at = decision.intent, now
                    error = result.error
        self.last_decision = decision
        success = telemetry is not None and (result is None or (result.ok and result.verified))
        report = TickReport(now, telemetry, decision, result, success, error)
        await _call(self.log_execution, self._log_row(report))
        await self._maybe_publish_state(now)
        return report

    def alarms(self) -> list[str]:
        alarms = list(self.last_decision.alarms) if self.last_decision else []
        if self.consecutive_failures:
            alarms.append("modbus_error")
        if self.consecutive_failures >= self.safe_after_failures:
            alarms.append("modbus_unreachable")
        if self.last_result is not None and self.last_result.ok and not self.last_result.verified:
            alarms.append("readback_mismatch")
        if self.last_result is not None and not self.last_result.ok:
            alarms.append("write_failed")
        if self.safe_mode:
            alarms.append("safe_mode")
        # Backends that know more (Home Assistant: which entity is unavailable) add their own lines.
        backend_alarms = getattr(self.inverter, "alarms", None)
        if callable(backend_alarms):
            alarms.extend(backend_alarms())
        return alarms

    # ----------------------------------------------------------------- observations

    async def _observe(self, reading: Telemetry) -> None:
        prev, self._prev_reading = self._prev_reading, reading
        if prev is None:
            return
        start, end = prev.ts, reading.ts
        gap_s = (end - start).total_seconds()
        if gap_s <= 0:
            return
        if gap_s > self.settings.telemetry_stale_s:
            start = end  # readings too far apart: that time is not covered
        # The reading at ``end`` describes the interval since the previous one (the command
        # written after the previous reading was in force during it).
        t = start
        while t < end:
            slot = floor_slot(t).to_pydatetime()
            await self._roll_to(slot)
            seg_end = min(end, slot + SLOT)
            assert self._energy is not None
            self._energy.add((seg_end - t).total_seconds(), reading)
            t = seg_end
        await self._roll_to(floor_slot(end).to_pydatetime())
        if self._energy is not None and reading.soc_frac is not None:
            self._energy.soc_end_frac = reading.soc_frac

    async def _roll_to(self, slot: datetime) -> None:
        if self._energy is not None and self._energy.slot_start == slot:
            return
        if self._energy is not None and self._energy.covered_s > 0:
            await _call(self.publish_observation, self._energy.message(self.site_id))
        self._energy = _SlotEnergy(slot_start=slot)

    async def flush_observation(self) -> None:
        """Publish the slot in progress (e.g. at shut-down); its coverage says how much was seen."""
        if self._energy is not None and self._energy.covered_s > 0:
            await _call(self.publish_observation, self._energy.message(self.site_id))
        self._energy = None

    # ----------------------------------------------------------------- messages

    def _telemetry_msg(self, t: Telemetry) -> TelemetryMsg:
        return TelemetryMsg(
            site_id=self.site_id, ts=t.ts, soc_frac=t.soc_frac, soc_kwh=t.soc_kwh, pv_kw=t.pv_kw, load_kw=t.load_kw,
            grid_kw=t.grid_kw, battery_kw=t.battery_kw, water_kw=t.water_kw, ev_kw=t.ev_kw, source="executor",
            **extra_readings(t.values),
        )

    def state_msg(self, now: datetime | None = None) -> ExecutorStateMsg:
        now = now or self.clock.now()
        decision = self.last_decision
        quick = self.overrides.active_quick(now)
        override = None
        if self.overrides.is_paused(now):
            override = OverrideInfo(kind="pause", expires_at=self.overrides.paused_until)
        elif quick is not None:
            override = OverrideInfo(kind=quick.kind, expires_at=quick.expires_at, power_kw=quick.power_kw,
                                    target_soc_frac=quick.target_soc_frac)
        last_write = None
        if self.last_result is not None:
            last_write = self.last_result.summary()
        return ExecutorStateMsg(
            site_id=self.site_id,
            ts=now,
            mode=decision.mode if decision else "starting",
            override=override,
            plan_id=self.plan.plan_id if self.plan else None,
            last_write=last_write,
            alarms=self.alarms(),
            shadow=self.settings.shadow,
        )

    async def _maybe_publish_state(self, now: datetime) -> None:
        msg = self.state_msg(now)
        key = (msg.mode, msg.override, msg.plan_id, tuple(msg.alarms), repr(msg.last_write))
        if key != self._last_state_key:
            self._last_state_key = key
            await _call(self.publish_state, msg)

    def _log_row(self, report: TickReport) -> dict[str, Any]:
        d = report.decision
        planned = None
        if d.planned is not None:
            s = d.planned
            planned = {
                "slot_start": s.start.isoformat(), "mode": s.mode, "charge_kw": s.charge_kw,
                "discharge_kw": s.discharge_kw, "soc_kwh": s.soc_kwh, "reason_code": s.reason_code,
            }
        return {
            "ts": report.ts.astimezone(timezone.utc).isoformat(),
            "site_id": self.site_id,
            "slot_start": floor_slot(report.ts).isoformat(),
            "plan_id": d.plan_id,
            "source": d.source,
            "reason": d.reason,
            "planned": planned,
            "commanded": d.intent.as_dict() if d.intent is not None else None,
            "written": report.result is not None,
            "measured": report.telemetry.measured() if report.telemetry is not None else None,
            "override": d.override.kind if d.override else ("pause" if d.source == "pause" else None),
            "success": report.success,
            "alarms": list(d.alarms),
            "shadow": self.settings.shadow,
            "error": report.error,
        }

    # ----------------------------------------------------------------- running

    async def run(self) -> None:
        """Tick until ``stop()``; a command or a new plan triggers the next tick at once."""
        self._stopping = False
        self._aio = asyncio.get_running_loop()
        while not self._stopping:
            # Cleared before the tick: a plan, command or stop() arriving during it wakes the next one.
            self._wake.clear()
            try:
                await self.tick()
            except Exception:  # the loop must survive anything a tick throws
                log.exception("executor tick failed")
            if self._stopping:
                break
            wait_s = self.clock.wall_seconds(self.tick_s) if hasattr(self.clock, "wall_seconds") else self.tick_s
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=max(wait_s, 0.0))
            except asyncio.TimeoutError:
                pass
        await self.flush_observation()

    def stop(self) -> None:
        self._stopping = True
        self._poke()


class ThreadedExecutor:
    """Runs an :class:`ExecutorLoop` on its own asyncio event loop in a daemon thread.

    For the thread-based service runtime: ``set_plan``/``command`` may be called from any thread;
    coroutines go through :meth:`submit`.
    """

    def __init__(self, loop: ExecutorLoop):
        self.loop = loop
        self._aio = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._main, name="executor-loop", daemon=True)
        self._thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self._aio)
        try:
            self._aio.run_until_complete(self.loop.run())
            self._aio.run_until_complete(self.loop.inverter.close())
        finally:
            self._aio.close()

    def submit(self, coro: Any) -> concurrent.futures.Future[Any]:
        return asyncio.run_coroutine_threadsafe(coro, self._aio)

    def stop(self, timeout_s: float = 10.0) -> None:
        if self._thread is None:
            return
        if not self._aio.is_closed():
            self._aio.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout_s)
        self._thread = None


def _ttl(ttl_s: float, longest_s: float) -> float:
    """A command's time to live, refused (not clipped) beyond executor.max_override_s."""
    ttl = float(ttl_s)
    if not math.isfinite(ttl) or ttl <= 0 or ttl > longest_s:
        raise ValueError(f"ttl_s must be more than 0 and at most {longest_s:g} s (executor.max_override_s)")
    return ttl


def ha_entities(site_id: str, ttl_s: float = DEFAULT_TTL_S) -> list[Any]:
    """Home Assistant entities of the executor, as data for ``shared.homeassistant``: SoC, battery
    power, mode and active override as sensors; pause, resume and the quick actions as buttons."""
    from shared.homeassistant import Entity

    def button(action: str, label: str, icon: str, ttl: float | None = None) -> Entity:
        payload: dict[str, Any] = {"schema": "darkstar.command/1", "site_id": site_id}
        if ttl is not None:
            payload["ttl_s"] = ttl
        return Entity(component="button", object_id=f"executor_{action}", name=label,
                      command_topic=f"cmd/executor/{action}", payload_press=json.dumps(payload), icon=icon)

    hours = f"{ttl_s / 3600:g} h"
    return [
        Entity(component="sensor", object_id="battery_soc", name="Battery SoC", state_topic="telemetry",
               value_template="{{ (value_json.soc_frac * 100) | round(1) if value_json.soc_frac is not none }}",
               unit="%", device_class="battery", state_class="measurement"),
        Entity(component="sensor", object_id="battery_power", name="Battery power", state_topic="telemetry",
               value_template="{{ value_json.battery_kw if value_json.battery_kw is not none }}",
               unit="kW", device_class="power", state_class="measurement"),
        Entity(component="sensor", object_id="executor_mode", name="Inverter mode", state_topic="executor/state",
               value_template="{{ value_json.mode }}", icon="mdi:battery-sync"),
        Entity(component="sensor", object_id="executor_override", name="Active override", state_topic="executor/state",
               value_template="{{ value_json.override.kind if value_json.override else 'none' }}", icon="mdi:hand-back-right"),
        button("pause", "Pause executor", "mdi:pause"),
        button("resume", "Resume executor", "mdi:play"),
        button("force_charge", f"Force charge ({hours})", "mdi:battery-charging", ttl_s),
        button("force_export", f"Force export ({hours})", "mdi:transmission-tower-export", ttl_s),
        button("stop", f"Battery idle ({hours})", "mdi:battery-lock", ttl_s),
        button("heat", f"Heat water ({hours})", "mdi:water-boiler", ttl_s),
        button("cancel", "Cancel quick action", "mdi:cancel"),
    ]
