"""The executor service's EV part: chargers on the bus (commands, context, replan, telemetry, HA).

Kept apart from ``service.py`` so the service only calls :class:`EvWiring` at a few points:
construction, start/stop, a new plan, the HTTP state and readiness.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import replace
from typing import Any

from services.executor.chargers import ChargerSet, build_chargers
from services.executor.chargers.control import EV_QUICK_ACTION
from shared.contracts import CommandMsg, ContextMsg
from shared.homeassistant import Entity, _context_command

log = logging.getLogger("darkstar.executor.ev")

EV_ACTIONS = (EV_QUICK_ACTION, "ev_cancel")
DEFAULT_EV_TTL_S = 6 * 3600.0


class EvMeteredInverter:
    """The inverter role with the chargers' measured power as ``ev_kw`` when the inverter has none,
    so telemetry, observations and the import guard see the EV (the loop is unchanged)."""

    def __init__(self, inverter: Any, chargers: ChargerSet):
        self._inverter, self._chargers = inverter, chargers

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inverter, name)

    async def read_telemetry(self) -> Any:
        reading = await self._inverter.read_telemetry()
        if reading.ev_kw is None:
            reading = replace(reading, ev_kw=self._chargers.ev_kw())
        return reading

    async def apply(self, intent: Any) -> Any:
        return await self._inverter.apply(intent)

    async def close(self) -> None:
        await self._inverter.close()


class EvWiring:
    def __init__(self, service: Any):
        self.service = service
        site = service.site
        self.chargers: ChargerSet | None = build_chargers(
            site, service.clock,
            plan=lambda: service.loop.plan if service.loop is not None else service.latest.get("plan"),
            telemetry=lambda: service.loop.last_telemetry if service.loop is not None else None,
            context=service.context_value,
            publish_context=self._publish_context,
            request_replan=self._request_replan,
            report=lambda what, why: service.report_error(what, why, None),
            hands_off=self._hands_off,
        )
        if self.chargers is not None:
            for action in EV_ACTIONS:
                service.register_command(action, self._command(action))

    def wrap(self, inverter: Any) -> Any:
        return inverter if self.chargers is None else EvMeteredInverter(inverter, self.chargers)

    # ------------------------------------------------------------------ lifecycle and inputs
    def start(self) -> None:
        if self.chargers is not None:
            self.chargers.runner.start()

    def stop(self) -> None:
        if self.chargers is not None:
            self.chargers.runner.stop()

    def plan_changed(self) -> None:
        if self.chargers is not None:
            self.chargers.runner.poke()

    def _hands_off(self) -> str | None:
        """The inverter loop's reasons to write nothing hold for the chargers too (one safety loop)."""
        loop = self.service.loop
        if loop is None:
            return "shadow mode" if self.service.site.executor.shadow_mode else None
        if loop.settings.shadow:
            return "shadow mode"
        now = self.service.clock.now()
        if loop.overrides.is_paused(now):
            until = loop.overrides.paused_until
            return f"executor paused until {until.isoformat()}" if until else "executor paused"
        return None

    # ------------------------------------------------------------------ to the bus
    def _publish_context(self, name: str, value: Any) -> None:
        site_id = self.service.site.site_id
        try:
            self.service.publish("context", ContextMsg(site_id=site_id, name=name, value=value, source="executor"),
                                 name=name)
        except RuntimeError as err:  # not connected yet: the next change publishes again
            log.debug("context %s not published: %s", name, err)

    def _request_replan(self, reason: str) -> None:
        log.info("EV deviation, asking for a replan: %s", reason)
        try:
            self.service.publish("command", CommandMsg(site_id=self.service.site.site_id, args={"reason": reason}),
                                 service="planner", action="replan")
        except RuntimeError as err:
            log.warning("replan request not published: %s", err)

    # ------------------------------------------------------------------ commands
    def _command(self, action: str) -> Any:
        def handler(msg: CommandMsg) -> dict[str, Any]:
            assert self.chargers is not None
            args = dict(msg.args)
            allowed = {"ev", "target_soc_frac", "ttl_s"} if action == EV_QUICK_ACTION else {"ev"}
            unknown = sorted(set(args) - allowed)
            if unknown:
                raise ValueError(f"unknown argument(s) {', '.join(unknown)} for {action}; allowed: {', '.join(sorted(allowed))}")
            controller = self.chargers.by_name(args.get("ev"))
            if action == "ev_cancel":
                state = controller.cancel()
            else:
                target = _number(args.get("target_soc_frac", 1.0), "target_soc_frac")
                ttl = args.get("ttl_s", msg.ttl_s if msg.ttl_s is not None else DEFAULT_EV_TTL_S)
                state = controller.charge_now(target, _number(ttl, "ttl_s"))
            self.chargers.runner.poke()
            return {"action": action, **state}

        handler.__name__ = f"cmd_{action}"
        return handler

    # ------------------------------------------------------------------ HTTP, readiness, HA
    def state(self) -> list[dict[str, Any]]:
        return [] if self.chargers is None else [c.state() for c in self.chargers.controllers]

    def checks(self) -> tuple[bool, dict[str, Any]]:
        """Ready when every charger is reachable and not faulted (a car not plugged in is fine)."""
        if self.chargers is None:
            return True, {}
        ok, out = True, {}
        for c in self.chargers.controllers:
            r = c.reading
            if r is None or not r.connected:
                ok, out[c.ev.name] = False, "charger not connected"
            elif r.faulted:
                ok, out[c.ev.name] = False, f"charger faulted ({r.error or r.status})"
            else:
                out[c.ev.name] = f"ok: {r.status or 'connected'}"
        return ok, out

    def ha_entities(self) -> list[Entity]:
        if self.chargers is None:
            return []
        site_id = self.service.site.site_id
        command = {"schema": "darkstar.command/1", "site_id": site_id}
        return [
            Entity(component="sensor", object_id="ev_power", name="EV charging power", state_topic="telemetry",
                   value_template="{{ value_json.ev_kw if value_json.ev_kw is not none }}",
                   unit="kW", device_class="power", state_class="measurement"),
            Entity(component="sensor", object_id="ev_soc", name="EV SoC", state_topic="context/ev_soc_frac",
                   value_template="{{ (value_json.value * 100) | round(0) if value_json.value is not none }}",
                   unit="%", device_class="battery", state_class="measurement"),
            Entity(component="number", object_id="ev_target_soc", name="EV target SoC",
                   state_topic="context/ev_target_soc_frac",
                   value_template="{{ (value_json.value * 100) | round(0) }}",
                   command_topic="context/ev_target_soc_frac", unit="%", icon="mdi:car-electric",
                   extra={"min": 10, "max": 100, "step": 5, "mode": "slider", "retain": True,
                          "command_template": _context_command(site_id, "ev_target_soc_frac", "{{ value / 100 }}")}),
            # "charge now to X %": a number whose every set is the command (HA keeps no state of it)
            Entity(component="number", object_id="ev_charge_now_soc", name="EV charge now to",
                   command_topic=f"cmd/executor/{EV_QUICK_ACTION}", unit="%", icon="mdi:ev-station",
                   extra={"min": 10, "max": 100, "step": 5, "mode": "box", "optimistic": True,
                          "command_template": json.dumps({**command, "args": {"target_soc_frac": 0.0}}).replace(
                              "0.0", "{{ value / 100 }}")}),
            Entity(component="button", object_id="ev_charge_now", name="EV charge now to 80 %",
                   command_topic=f"cmd/executor/{EV_QUICK_ACTION}", icon="mdi:ev-station",
                   payload_press=json.dumps({**command, "args": {"target_soc_frac": 0.8}})),
            Entity(component="button", object_id="ev_cancel", name="EV cancel charge now",
                   command_topic="cmd/executor/ev_cancel", icon="mdi:cancel", payload_press=json.dumps(command)),
        ]


def _number(value: Any, key: str) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{key} must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{key} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"{key} must be finite")
    return number
