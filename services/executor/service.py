"""Executor service shell: follows the plan on the inverter (Modbus), with overrides and safety.

A thin shell around :class:`~services.executor.loop.ExecutorLoop` (the control logic lives there
and in ``control.py``): the loop runs on its own thread and event loop (``ThreadedExecutor``),
ticking every ``executor.tick_s`` seconds of the service's clock. This shell wires it to the bus
and the database:

- ``plan`` messages (validated by the base class; a bad one becomes ``events/error``) -> ``set_plan``;
- the loop's telemetry (QoS 0), retained ``executor/state`` and slot-end ``observations`` -> the bus;
- one ``execution_log`` row per decision -> ``store.store_execution``;
- newly raised serious alarms (device unreachable, write failed, telemetry or SoC missing) ->
  one ``events/error`` each time they appear (not every tick);
- commands ``cmd/executor/{pause,resume,cancel,force_charge,force_export,stop,heat}`` (args
  ``ttl_s``, ``power_kw``) and the same over ``POST /admin/command/{action}``;
- Home Assistant: SoC, battery power, mode and override sensors, buttons and a pause switch.

``/readyz`` is ready only when the broker (and database) are, the inverter answered the last
read, the telemetry is fresh with a SoC, and a plan is present, not expired and has a slot for now.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, ClassVar

import pandas as pd
from fastapi import APIRouter

from services.executor.chargers.wiring import EvWiring
from services.executor.control import QUICK_ACTIONS, ControlSettings, slot_for
from services.executor.inverter import Inverter
from services.executor.loop import DEFAULT_TTL_S, ExecutorLoop, ThreadedExecutor
from services.executor.loop import ha_entities as loop_ha_entities
from services.executor.modbus.profile import load_profile
from services.executor.modbus.transport import ModbusInverter
from shared.clock import WALL_CLOCK, Clock
from shared.config import SiteConfig
from shared.contracts import (
    CommandMsg,
    ContextMsg,
    EnergyTotalsMsg,
    ExecutorStateMsg,
    Message,
    ObservationMsg,
    PlanMsg,
    TelemetryMsg,
)
from shared.cost import battery_saving
from shared.homeassistant import Entity, energy_total_entities
from shared.mqtt import MqttClient
from shared.service import Service

log = logging.getLogger("darkstar.executor")

ACTIONS = ("pause", "resume", "cancel", *QUICK_ACTIONS)
# Alarms worth an events/error message when they appear (plan_missing at start-up is normal).
REPORTED_ALARMS = (
    "modbus_unreachable", "write_failed", "readback_mismatch", "safe_mode",
    "telemetry_missing", "telemetry_stale", "soc_unknown", "plan_expired", "database_unreachable",
)


class ExecutorService(Service):
    name: ClassVar[str] = "executor"
    inputs: ClassVar[dict[str, float | None]] = {"plan": None}

    def __init__(
        self,
        site: SiteConfig,
        *,
        store: Any = None,
        mqtt: MqttClient | None = None,
        clock: Clock = WALL_CLOCK,
        inverter: Inverter | None = None,
        settings: ControlSettings | None = None,
        system_id: str = "live",
    ) -> None:
        """Defaults come from ``site.executor``: profile, Modbus connection, tick, shadow mode.

        ``inverter`` replaces the Modbus inverter built from the config (it must read time from
        ``clock``); ``settings`` replaces the control settings derived from the site and device;
        ``system_id`` keeps simulated execution-log rows apart from real ones ('live').
        A site without a battery runs the service without a control loop (``/readyz`` says why).
        One start/stop per instance: the loop's thread and event loop end with ``stop()``.
        """
        if clock.wall_seconds(site.executor.tick_s) <= 0:
            # e.g. simulator.ManualClock: time never moves by itself, so the loop would spin.
            raise ValueError(f"ExecutorService needs a clock that runs by itself (Clock, SimClock), not "
                             f"{type(clock).__name__}; drive ExecutorLoop.tick() directly with a manual clock")
        super().__init__(site, store=store, mqtt=mqtt, clock=clock)
        self.system_id = system_id
        self.inverter: Inverter | None = None
        self.loop: ExecutorLoop | None = None
        self.runner: ThreadedExecutor | None = None
        self.disabled_why: str | None = None
        self._reported_alarms: set[str] = set()
        self.energy_totals: EnergyTotalsMsg | None = None
        self._car_published: dict[str, Any] = {}  # last EV context published from HA readings
        self.ev = EvWiring(self)  # EV chargers (evs[].charger): their own loop beside the inverter's
        if site.battery is None:
            self.disabled_why = "no battery in the site configuration: nothing to control"
            log.warning("executor: %s", self.disabled_why)
            return
        if inverter is None and site.executor.backend == "homeassistant":
            from services.executor.ha_profile import load_ha_profile
            from services.executor.homeassistant import HomeAssistantInverter

            assert site.homeassistant is not None  # SiteConfig checks this
            ha_profile = load_ha_profile(site.homeassistant.profile)
            inverter = HomeAssistantInverter(site, ha_profile, clock=clock.now)
            if settings is None:
                settings = replace(ControlSettings.from_site(
                    site, max_charge_kw=inverter.limits.max_charge_kw, max_discharge_kw=inverter.limits.max_discharge_kw,
                    supports_soc_floor=False, controls_water=inverter.controls_water,
                ), supported_modes=inverter.supported_modes)
        if inverter is None:
            # A bad profile name or file fails here, at start-up, naming the profile.
            inverter = ModbusInverter(
                load_profile(site.executor.profile), site.executor.modbus, battery=site.battery,
                max_export_kw=site.grid.max_export_kw, clock=clock.now,
            )
        if settings is None:
            settings = (ControlSettings.for_device(site, inverter) if isinstance(inverter, ModbusInverter)
                        else ControlSettings.from_site(site, max_charge_kw=site.battery.max_charge_kw,
                                                       max_discharge_kw=site.battery.max_discharge_kw))
        self.inverter = inverter
        self.loop = ExecutorLoop(
            self.ev.wrap(inverter), settings, site_id=site.site_id, clock=clock, tick_s=site.executor.tick_s,
            publish_telemetry=self._publish_telemetry,
            publish_state=self._publish_state,
            publish_observation=self._publish_observation,
            log_execution=self._log_execution,
        )

    def register_commands(self) -> None:
        for action in ACTIONS:
            self.register_command(action, self._command_handler(action))

    # ------------------------------------------------------------------ lifecycle
    def on_start(self) -> None:
        self.ev.start()
        if self.loop is not None and self.runner is None:
            self.runner = ThreadedExecutor(self.loop)
            self.runner.start()

    def on_stop(self) -> None:
        # Stop the loop before the MQTT client, so its last state and observation still go out.
        if self.runner is not None:
            self.runner.stop(timeout_s=15.0)
        self.ev.stop()  # chargers to their safe fallback before the MQTT client goes

    # ------------------------------------------------------------------ bus input
    def handle(self, kind: str, parts: dict[str, str], msg: Message, retained: bool) -> None:
        if kind == "plan" and isinstance(msg, PlanMsg):
            refused = plan_refusal(msg, self.clock.now(), self.site.planner.horizon_hours)
            if refused:
                self.report_error(self.mqtt.topic("plan"), refused, None)
                return
            if self.loop is not None:
                self.loop.set_plan(msg)
            self.ev.plan_changed()

    # ------------------------------------------------------------------ loop callbacks (loop thread)
    def _publish_telemetry(self, msg: TelemetryMsg) -> None:
        self.publish("telemetry", msg)
        if self.ev.chargers is None:  # a charger, when there is one, is the car's authority (chargers/wiring.py)
            self._car_context(msg)

    def _car_context(self, msg: TelemetryMsg) -> None:
        """The car's plug and SoC read from HA entities, as the planner's context, on change only."""
        for name, value in (("ev_plugged", msg.ev_plugged),
                            ("ev_soc_frac", None if msg.ev_soc_frac is None else round(msg.ev_soc_frac, 2))):
            if value is None or self._car_published.get(name) == value:
                continue
            self.publish("context", ContextMsg(site_id=self.site.site_id, name=name, value=value,
                                               source="homeassistant"), name=name)
            self._car_published[name] = value

    def _publish_observation(self, msg: ObservationMsg) -> None:
        self.publish("observations", msg)
        # Running totals for HA's energy dashboard (total_increasing: a restart reads as a meter reset).
        totals = self.energy_totals or EnergyTotalsMsg(site_id=self.site.site_id, since=msg.slot_start,
                                                       saving=0.0, currency=self.site.tariff.currency)
        added: dict[str, Any] = {k: getattr(totals, k) + (getattr(msg, k) or 0.0)
                                 for k in ("import_kwh", "export_kwh", "pv_kwh", "load_kwh", "charge_kwh",
                                           "discharge_kwh")}
        saving = self._slot_saving(msg)
        if saving is None:
            added["saving_unpriced_slots"] = totals.saving_unpriced_slots + 1
        else:
            added["saving"] = round((totals.saving or 0.0) + saving, 6)
        self.energy_totals = totals.model_copy(update={**added, "ts": self.clock.now()})
        self.publish("energy_totals", self.energy_totals)

    def _slot_saving(self, msg: ObservationMsg) -> float | None:
        """The battery's saving in one measured slot at the plan's prices; None when no price is known
        (the slot is counted as unpriced, never guessed)."""
        plan = self.loop.plan if self.loop is not None else None
        slot = next((s for s in plan.slots if s.start == msg.slot_start), None) if plan is not None else None
        if slot is None or slot.import_price_per_kwh is None or slot.export_price_per_kwh is None:
            log.info("no price for measured slot %s: left out of the battery saving", msg.slot_start.isoformat())
            return None
        prices = pd.DataFrame({"import_price_per_kwh": [slot.import_price_per_kwh],
                               "export_price_per_kwh": [slot.export_price_per_kwh]},
                              index=pd.DatetimeIndex([msg.slot_start]))
        return battery_saving(prices.index, [msg.import_kwh or 0.0], [msg.export_kwh or 0.0],
                              [msg.charge_kwh or 0.0], [msg.discharge_kwh or 0.0], prices, self.site)

    def _publish_state(self, msg: ExecutorStateMsg) -> None:
        if self.writer is not None and self.writer.outage is not None and "database_unreachable" not in msg.alarms:
            msg = msg.model_copy(update={"alarms": [*msg.alarms, "database_unreachable"]})
        self.publish("executor_state", msg)
        raised = {a for a in msg.alarms if a in REPORTED_ALARMS}
        for alarm in sorted(raised - self._reported_alarms):
            reason = self.loop.last_decision.reason if self.loop and self.loop.last_decision else ""
            why = f"alarm {alarm} raised; mode {msg.mode}. {reason}".strip()
            self.report_error(f"executor/{alarm}", why, None)
        self._reported_alarms = raised

    def _log_execution(self, row: dict[str, Any]) -> None:
        if self.writer is None:
            return
        self.writer.write("store_execution", execution_record(row, self.loop, self.system_id))

    # ------------------------------------------------------------------ commands
    def _command_handler(self, action: str) -> Any:
        def handler(msg: CommandMsg) -> dict[str, Any]:
            if self.loop is None:
                raise RuntimeError(self.disabled_why or "the executor control loop is not running")
            args = dict(msg.args)
            if action == "pause" and args.pop("paused", True) is False:  # the HA switch turned off
                return {"action": "resume", **self.loop.command("resume")}
            allowed = {"ttl_s", "power_kw"} if action in QUICK_ACTIONS else {"ttl_s"} if action == "pause" else set()
            if action == "force_charge":
                allowed.add("target_soc_frac")
            unknown = sorted(set(args) - allowed)
            if unknown:
                raise ValueError(f"unknown argument(s) {', '.join(unknown)} for {action}; "
                                 f"allowed: {', '.join(sorted(allowed)) or 'none'}")
            ttl_s = _number(args, "ttl_s", action)
            if ttl_s is None and msg.ttl_s is not None:
                ttl_s = msg.ttl_s  # Home Assistant buttons carry the TTL on the command itself
            power_kw = _number(args, "power_kw", action)
            if action == "force_charge":
                state = self.loop.command(action, ttl_s=ttl_s, power_kw=power_kw,
                                          target_soc_frac=_number(args, "target_soc_frac", action))
            elif action in QUICK_ACTIONS:
                state = self.loop.command(action, ttl_s=ttl_s, power_kw=power_kw)
            elif action == "pause":
                state = self.loop.command(action, ttl_s=ttl_s)
            else:
                state = self.loop.command(action)
            return {"action": action, **state}

        handler.__name__ = f"cmd_{action}"
        return handler

    # ------------------------------------------------------------------ Home Assistant, HTTP
    def ha_entities(self) -> list[Entity]:
        if self.loop is None:
            return []
        command = {"schema": "darkstar.command/1", "site_id": self.site.site_id}
        pause_switch = Entity(
            component="switch", object_id="executor_paused", name="Executor paused",
            state_topic="executor/state", command_topic="cmd/executor/pause",
            value_template=("{{ 'ON' if value_json.override and value_json.override.kind == 'pause' "
                            "else 'OFF' }}"),
            payload_on=json.dumps({**command, "args": {"paused": True}}),
            payload_off=json.dumps({**command, "args": {"paused": False}}),
            icon="mdi:pause-circle", extra={"state_on": "ON", "state_off": "OFF"},
        )
        return [*loop_ha_entities(self.site.site_id, DEFAULT_TTL_S), pause_switch,
                *energy_total_entities(self.site.tariff.currency),
                *self.ev.ha_entities()]

    def extra_routes(self, router: APIRouter, admin: APIRouter) -> None:
        @router.get("/state")
        def state() -> dict[str, Any]:
            """The executor's current state (as on the retained executor/state topic) and overrides."""
            if self.loop is None:
                return {"enabled": False, "why": self.disabled_why, "chargers": self.ev.state()}
            return {"enabled": True, **self.loop.state_msg().model_dump(mode="json", by_alias=True),
                    "overrides": self.loop.override_state(), "chargers": self.ev.state()}

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        ok, checks = super().readiness()
        ex_ok, checks["executor"] = self.executor_checks()
        ev_ok, ev_checks = self.ev.checks()
        if ev_checks:
            checks["chargers"] = ev_checks
        return ok and ex_ok and ev_ok, checks

    def executor_checks(self) -> tuple[bool, dict[str, Any]]:
        """Inverter reachable, telemetry fresh with a SoC, plan present and usable now."""
        loop = self.loop
        if loop is None:
            return False, {"control_loop": self.disabled_why}
        now = self.clock.now()
        checks: dict[str, Any] = {"shadow": loop.settings.shadow, "mode": loop.state_msg(now).mode,
                                  "alarms": loop.alarms()}
        thread = self.runner._thread if self.runner is not None else None
        running = thread is not None and thread.is_alive()
        checks["control_loop"] = "running" if running else "not running"
        telemetry = loop.last_telemetry
        if loop.consecutive_failures:
            checks["inverter"] = f"unreachable: last {loop.consecutive_failures} read(s) failed"
        elif telemetry is None:
            checks["inverter"] = "not read yet"
        else:
            checks["inverter"] = "ok"
        if telemetry is None:
            checks["telemetry"] = "none yet"
            fresh = False
        else:
            age_s = (now - telemetry.ts).total_seconds()
            fresh = age_s <= loop.settings.telemetry_stale_s
            checks["telemetry"] = (f"fresh: {age_s:.0f} s old" if fresh else
                                   f"stale: {age_s:.0f} s old (limit {loop.settings.telemetry_stale_s:g} s)")
            if fresh and telemetry.soc_frac is None:
                checks["telemetry"] = "fresh but without SoC"
                fresh = False
        plan = loop.plan
        plan_ok = False
        if plan is None:
            checks["plan"] = "none received"
        elif now >= plan.valid_until:
            checks["plan"] = f"expired: {plan.plan_id} was valid until {plan.valid_until.isoformat()}"
        elif slot_for(plan, now) is None:
            checks["plan"] = f"{plan.plan_id} has no slot for {now.isoformat()}"
        else:
            checks["plan"] = f"ok: {plan.plan_id}, valid until {plan.valid_until.isoformat()}"
            plan_ok = True
        return running and checks["inverter"] == "ok" and fresh and plan_ok, checks


def _number(args: dict[str, Any], key: str, action: str) -> float | None:
    value = args.get(key)
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"{action}: {key} must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{action}: {key} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"{action}: {key} must be finite, got {value!r}")
    return number


PLAN_CLOCK_SKEW = timedelta(minutes=5)


def plan_refusal(plan: PlanMsg, now: datetime, horizon_hours: float) -> str | None:
    """Why a (contract-valid) plan must not be followed, or None.

    Who published it is the broker's business (only the planner's login may publish ``plan``,
    shared/auth.py); this bounds what even a genuine-looking plan may claim in time.
    """
    if plan.created_at > now + PLAN_CLOCK_SKEW:
        return f"plan {plan.plan_id} refused: created_at {plan.created_at.isoformat()} is in the future"
    latest = plan.created_at + timedelta(hours=horizon_hours)
    if plan.valid_until > latest:
        return (f"plan {plan.plan_id} refused: valid_until {plan.valid_until.isoformat()} is beyond created_at "
                f"+ the planner horizon ({horizon_hours:g} h, {latest.isoformat()})")
    return None


def execution_record(row: dict[str, Any], loop: ExecutorLoop | None = None, system_id: str = "live") -> Any:
    """The loop's per-decision row as a storage ``ExecutionRecord`` (the rest goes to ``detail``)."""
    from shared.storage.repository import ExecutionRecord

    planned = row.get("planned") or None
    commanded = row.get("commanded") or None
    measured = row.get("measured") or {}
    if commanded is not None:
        mode = commanded["mode"]
        power = float(commanded.get("power_kw") or 0.0)
        # Signed like telemetry (+ charge); self-consumption follows load and PV: no fixed setpoint.
        commanded_battery_kw = {"charge": power, "discharge": -power, "hold": 0.0}.get(mode)
    else:
        mode = "paused" if row.get("source") == "pause" else "unknown"
        commanded_battery_kw = None
    planned_battery_kw = None
    if planned is not None:
        charge_kw, discharge_kw = planned.get("charge_kw") or 0.0, planned.get("discharge_kw") or 0.0
        planned_battery_kw = float(charge_kw) - float(discharge_kw)
    override_kind = row.get("override")
    expires_at: datetime | None = None
    if loop is not None and override_kind not in (None, "pause"):
        quick = loop.overrides.quick
        if quick is not None and quick.kind == override_kind:
            expires_at = quick.expires_at
    detail_keys = ("source", "reason", "planned", "commanded", "written", "measured", "alarms", "shadow")
    return ExecutionRecord(
        site_id=row["site_id"],
        system_id=system_id,
        ts=datetime.fromisoformat(row["ts"]),
        slot_start=datetime.fromisoformat(row["slot_start"]) if row.get("slot_start") else None,
        mode=mode,
        success=bool(row["success"]),
        plan_id=row.get("plan_id"),
        planned_mode=planned.get("mode") if planned else None,
        planned_battery_kw=planned_battery_kw,
        commanded_battery_kw=commanded_battery_kw,
        measured_battery_kw=measured.get("battery_kw"),
        measured_grid_kw=measured.get("grid_kw"),
        measured_soc_frac=measured.get("soc_frac"),
        override_kind=override_kind,
        override_expires_at=expires_at,
        error=row.get("error"),
        detail={k: row.get(k) for k in detail_keys},
    )
