"""Planner (Kepler) service: replans on new inputs and on a schedule, publishes the retained plan.

Triggers: new prices, new forecast, a context change, a command, SoC drifting from the plan
by more than ``planner.soc_drift_replan_frac`` of capacity, and every ``planner.replan_minutes``.
Requests are coalesced on one planning thread, so a burst of inputs gives one solve.
Never a broken plan: Kepler relaxes soft limits and falls back to safe self-consumption
(flagged) itself; without a fresh measured SoC no plan is made at all (the executor's
stale-plan rule then keeps the inverter in its safe mode) and an error event says why.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta
from typing import Any, ClassVar

import pandas as pd

from shared.contracts import CommandMsg, ContextMsg, ForecastMsg, Message, PlanMsg, PricesMsg, TelemetryMsg
from shared.cost import CapacityState
from shared.homeassistant import Entity, command_button, context_controls, plan_chart_entity
from shared.optimize.inputs import ManualBlock, PlanInputError, WaterState
from shared.optimize.messages import inputs_from_messages, plan_message, previous_battery_kw
from shared.service import Service
from shared.slots import as_utc, floor_slot, local_day_bounds

log = logging.getLogger("darkstar.planner")
TELEMETRY_MAX_AGE = timedelta(minutes=5)


class PlannerService(Service):
    name: ClassVar[str] = "planner"
    inputs: ClassVar[dict[str, float | None]] = {
        "prices": 36 * 3600.0,
        "forecast": 6 * 3600.0,
        "telemetry": 600.0,
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tick_s = float(self.site.planner.replan_minutes * 60)
        self.soc_kwh: float | None = None
        self.soc_at: datetime | None = None
        self.plan: PlanMsg | None = None
        self.manual_blocks: list[ManualBlock] = []
        self.replans = 0
        self._wake = threading.Event()
        self._reasons: list[str] = []
        self._plan_lock = threading.Lock()
        self._planner_thread: threading.Thread | None = None
        self._awaited: str | None = None  # inputs the last "not planning" log line named

    # ------------------------------------------------------------------ lifecycle
    def register_commands(self) -> None:
        self.register_command("replan", self._cmd_replan)
        self.register_command("manual_block", self._cmd_manual_block)
        self.register_command("clear_manual_blocks", self._cmd_clear_manual_blocks)

    def on_start(self) -> None:
        self._planner_thread = threading.Thread(target=self._planning_loop, name="planner", daemon=True)
        self._planner_thread.start()

    def on_stop(self) -> None:
        self._wake.set()
        if self._planner_thread is not None:
            self._planner_thread.join(30)

    # ------------------------------------------------------------------ triggers
    def handle(self, kind: str, parts: dict[str, str], msg: Message, retained: bool) -> None:
        if isinstance(msg, PricesMsg):
            self.request_replan("new prices")
        elif isinstance(msg, ForecastMsg):
            self.request_replan("new forecast")
        elif isinstance(msg, ContextMsg):
            self.request_replan(f"context {msg.name} changed")
        elif isinstance(msg, TelemetryMsg):
            self._on_telemetry(msg)

    def _on_telemetry(self, msg: TelemetryMsg) -> None:
        battery = self.site.battery
        soc = msg.soc_kwh
        if soc is None and msg.soc_frac is not None and battery is not None:
            soc = msg.soc_frac * battery.capacity_kwh
        if soc is None:
            return  # unknown SoC: never guessed; the plan stays as it is
        self.soc_kwh, self.soc_at = soc, as_utc(msg.ts).to_pydatetime()
        planned = self._planned_soc_now()
        if planned is not None and battery is not None:
            drift = abs(soc - planned) / battery.capacity_kwh
            if drift > self.site.planner.soc_drift_replan_frac:
                self.request_replan(f"SoC {soc:.1f} kWh drifted from planned {planned:.1f} kWh")
        elif self.plan is None:
            self.request_replan("first SoC reading")

    def tick(self) -> None:
        self.request_replan("schedule")

    def request_replan(self, reason: str) -> None:
        with self._plan_lock:
            self._reasons.append(reason)
        self._wake.set()

    def _planning_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait()
            self._wake.clear()
            if self._stop.is_set():
                return
            with self._plan_lock:
                reasons, self._reasons = self._reasons, []
            try:
                self.replan(", ".join(dict.fromkeys(reasons)) or "request")
            except Exception as err:  # noqa: BLE001 - the loop must keep planning
                log.exception("replan failed")
                self.report_error("plan", f"replan failed: {type(err).__name__}: {err}", None)

    # ------------------------------------------------------------------ planning
    def _planned_soc_now(self) -> float | None:
        plan = self.plan
        if plan is None:
            return None
        current = floor_slot(self.clock.now())
        for i, slot in enumerate(plan.slots):
            if as_utc(slot.start) == current:
                # SoC at the start of the current slot = end of the previous slot
                return plan.slots[i - 1].soc_kwh if i > 0 else None
        return None

    def _fresh_soc(self, now: datetime) -> float | None:
        if self.site.battery is None:
            return 0.0
        if self.soc_kwh is None or self.soc_at is None or now - self.soc_at > TELEMETRY_MAX_AGE:
            return None
        return self.soc_kwh

    def _context(self, now: datetime) -> dict[str, Any]:
        ctx: dict[str, Any] = {
            "vacation": bool(self.context_value("vacation", False)),
            "away": bool(self.context_value("away", False)),
        }
        plugged = self.context_value("ev_plugged")
        if plugged is not None:
            ctx["ev_plugged"] = bool(plugged)
        departure = self.context_value("ev_departure")
        if departure is not None:
            ctx["ev_departure"] = pd.Timestamp(departure)
        target = self.context_value("ev_target_kwh")
        if target is None and self.site.evs:
            # No charger to compute it (the executor's does): from the car's SoC (e.g. Home Assistant)
            # and the wanted SoC; the first EV, as every EV context.
            ev = self.site.evs[0]
            soc, wanted = self.context_value("ev_soc_frac"), self.context_value("ev_target_soc_frac", ev.target_soc_frac)
            target = ev.needed_kwh(None if soc is None else float(soc), None if wanted is None else float(wanted))
        if target is not None:
            ctx["ev_target_kwh"] = float(target)
        risk = self.context_value("risk")
        if risk in ("cautious", "balanced", "bold"):
            ctx["risk"] = risk
        elif risk is not None:
            log.warning("context risk %r ignored: not cautious, balanced or bold", risk)
        reserve = self.context_value("reserve_soc_frac")
        if reserve is not None:
            ctx["reserve_soc_frac"] = min(1.0, max(0.0, float(reserve)))
        self.manual_blocks = [b for b in self.manual_blocks if b.end > pd.Timestamp(now)]
        ctx["manual_blocks"] = list(self.manual_blocks)
        ctx.update(self._history_state(now))
        return ctx

    def _history_state(self, now: datetime) -> dict[str, Any]:
        """Capacity-tariff peaks of the period so far and hot water done today, from measured slots."""
        if self.store is None:
            return {}
        tz = self.site.tz
        today = pd.Timestamp(now).tz_convert(tz).date()
        period_start, _ = local_day_bounds(today.replace(day=1), tz)
        day_start, _ = local_day_bounds(today, tz)
        try:
            obs = self.store.observations_between(self.site.site_id, period_start.to_pydatetime(), now)
        except Exception:  # noqa: BLE001 - history is an improvement, not a requirement
            log.warning("could not read observations for capacity and water state", exc_info=True)
            return {}
        out: dict[str, Any] = {}
        if obs is None or obs.empty:
            return out
        if self.site.tariff.capacity.enabled and "import_kwh" in obs.columns:
            import_kw = obs["import_kwh"].dropna() * 4.0
            out["capacity_state"] = CapacityState.from_import_history(import_kw, self.site)
        if self.site.water_heaters and "water_kwh" in obs.columns:
            water = obs["water_kwh"].dropna()
            heated = water[water > 0.01]
            hours_since = (pd.Timestamp(now) - heated.index[-1]).total_seconds() / 3600 if len(heated) else 24.0
            done_today = float(water[water.index >= day_start].sum())
            # one measured water channel: it is the first heater's
            first = self.site.water_heaters[0].name
            out["water"] = {first: WaterState(done_today_kwh=done_today, hours_since_heated=hours_since)}
        return out

    def replan(self, reason: str) -> PlanMsg | None:
        now = self.clock.now()
        prices, forecast = self.latest.get("prices"), self.latest.get("forecast")
        if not isinstance(prices, PricesMsg) or not isinstance(forecast, ForecastMsg):
            missing = " and ".join(k for k, v in (("prices", prices), ("forecast", forecast)) if v is None)
            # Every telemetry reading asks for a first plan: say what is awaited once, not 4 times a second.
            level = logging.DEBUG if missing == self._awaited else logging.INFO
            self._awaited = missing
            log.log(level, "not planning (%s): waiting for %s", reason, missing)
            return None
        self._awaited = None
        soc = self._fresh_soc(now)
        if soc is None:
            self.report_error("plan", "no fresh measured battery SoC (telemetry missing or older than 5 min): "
                              "not planning; the executor keeps its safe mode", None)
            return None
        try:
            inputs = inputs_from_messages(now, self.site, prices, forecast, soc,
                                          previous_battery_kw=previous_battery_kw(self.plan),
                                          **self._context(now))
        except PlanInputError as err:
            self.report_error("plan", f"cannot plan: {err}", None)
            return None
        from shared.optimize.solve import solve_plan  # PuLP and HiGHS load with the first plan

        result = solve_plan(inputs, self.site, time_limit_s=self.site.planner.time_limit_s)
        msg = plan_message(result, self.site, now,
                           inputs={"prices_id": prices.prices_id, "forecast_id": forecast.forecast_id,
                                   "trigger": reason[:200]},
                           prices=inputs.prices)
        if result.fallback:
            self.report_error("plan", "optimisation failed; published a safe self-consumption plan (fallback): "
                              + "; ".join(result.messages)[:500], None)
        elif result.status == "feasible":
            log.warning("plan not proven optimal (%s): proven gap %.3f %% (planner.mip_gap %.3f %%)",
                        result.stats.status, 100 * result.stats.mip_gap, 100 * self.site.planner.mip_gap)
        self.plan = msg
        self.replans += 1
        self.publish("plan", msg)
        log.info("plan %s (%s): %s; cost %.2f %s; solve %.0f ms", msg.plan_id[:8], reason, result.status,
                 msg.cost.total_cost, msg.cost.currency, 1000 * (result.stats.build_s + result.stats.solve_s))
        return msg

    # ------------------------------------------------------------------ commands
    def _cmd_replan(self, msg: CommandMsg) -> dict[str, Any]:
        plan = self.replan("command")
        if plan is None:
            raise RuntimeError("no plan: inputs missing or SoC unknown (see events/error and /readyz)")
        return {"plan_id": plan.plan_id, "total_cost": plan.cost.total_cost, "reason": plan.reason,
                "fallback": plan.fallback}

    def _cmd_manual_block(self, msg: CommandMsg) -> dict[str, Any]:
        args = msg.args
        try:
            block = ManualBlock(start=pd.Timestamp(args["start"]), end=pd.Timestamp(args["end"]),
                                action=args["action"], power_kw=args.get("power_kw"))
        except KeyError as err:
            raise ValueError(f"manual_block needs args start, end, action (missing {err})") from None
        if block.start.tzinfo is None or block.end.tzinfo is None or block.end <= block.start:
            raise ValueError("manual_block: start and end need UTC offsets and end must be after start")
        if block.action not in ("charge", "discharge", "export", "hold", "heat"):
            raise ValueError(f"manual_block: unknown action {block.action!r}")
        self.manual_blocks.append(block)
        self.request_replan("manual block")
        return {"blocks": len(self.manual_blocks)}

    def _cmd_clear_manual_blocks(self, msg: CommandMsg) -> dict[str, Any]:
        self.manual_blocks = []
        self.request_replan("manual blocks cleared")
        return {"blocks": 0}

    # ------------------------------------------------------------------ Home Assistant
    def ha_entities(self) -> list[Entity]:
        cur = self.site.tariff.currency
        days = "(value_json.explanation.cost_per_local_day.values() | list)"
        return [
            Entity(component="sensor", object_id="next_action", name="Next action", state_topic="plan",
                   value_template="{{ value_json.explanation.next_action }}", icon="mdi:battery-sync"),
            Entity(component="sensor", object_id="plan_reason", name="Plan reason", state_topic="plan",
                   value_template="{{ value_json.reason[:250] }}", icon="mdi:comment-text-outline"),
            Entity(component="sensor", object_id="soc_target", name="SoC target", state_topic="plan",
                   value_template="{{ ((value_json.slots[0].soc_target_frac or 0) * 100) | round(1) }}",
                   unit="%", device_class="battery"),
            Entity(component="sensor", object_id="planned_cost_today", name="Planned cost today",
                   state_topic="plan", value_template="{{ %s[0] if %s | length > 0 else 0 }}" % (days, days),
                   unit=cur, device_class="monetary"),
            Entity(component="sensor", object_id="planned_cost_tomorrow", name="Planned cost tomorrow",
                   state_topic="plan", value_template="{{ %s[1] if %s | length > 1 else 0 }}" % (days, days),
                   unit=cur, device_class="monetary"),
            command_button(self.site.site_id, "replan", "Replan now", "planner/replan", "mdi:refresh"),
            plan_chart_entity(),
            *context_controls(self.site),
        ]
