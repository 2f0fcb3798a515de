"""The charger control loop: read the charger, decide (``control.py``), send only what changed, report.

One :class:`ChargerController` per EV with a charger; :class:`ChargerRunner` ticks them on their own
thread and asyncio loop (the OCPP central system lives there too), next to the inverter's loop.
Everything outside comes in through callables, so the executor service wires them to the bus:

- ``plan()``, ``telemetry()`` (the inverter's last reading, for the import guard), ``context(name)``;
- ``publish_context(name, value)``: the charger's view of the car for the planner (``ev_plugged``,
  ``ev_soc_frac``, ``ev_target_kwh`` from SoC and target; first EV only, as the planner's context);
- ``request_replan(reason)``: measured EV power off the command for ``deviation_s``;
- ``report(what, why)``: an alarm when it appears (``events/error``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from services.executor.chargers.base import ChargeCommand, Charger, ChargerBusy, ChargerError, ChargerReading
from services.executor.chargers.control import (
    EvDecision,
    EvQuick,
    GuardInput,
    command_changed,
    decide_charge,
    summary,
)
from shared.config import EVConfig

log = logging.getLogger("darkstar.executor.chargers")

RETRY_REFUSED_S = 300.0  # a refused command is not sent again (unchanged) before this
UNREACHABLE_TICKS = 3  # an unreachable charger is reported after this many ticks
TARGET_STEP_KWH = 1.0
QUIET_ALARMS = {"ev_plan_missing"}  # normal at start-up (as the inverter's plan_missing): in state, not reported  # ev_target_kwh is republished when it moved this much (each one is a replan)


def _noop(*_: Any) -> None:
    return None


class ChargerController:
    def __init__(
        self,
        ev: EVConfig,
        charger: Charger,
        *,
        clock: Any,
        first: bool = True,
        share: float = 1.0,
        guard_enabled: bool = False,
        guard_margin_kw: float = 0.2,
        telemetry_stale_s: float = 60.0,
        plan: Callable[[], Any] = _noop,
        telemetry: Callable[[], Any] = _noop,
        context: Callable[[str], Any] = _noop,
        publish_context: Callable[[str, Any], None] = _noop,
        request_replan: Callable[[str], None] = _noop,
        report: Callable[[str, str], None] = _noop,
        hands_off: Callable[[], str | None] = _noop,
    ):
        self.ev, self.charger, self.clock = ev, charger, clock
        self.first, self.share = first, share
        self.guard_enabled, self.guard_margin_kw, self.telemetry_stale_s = guard_enabled, guard_margin_kw, telemetry_stale_s
        self.plan, self.telemetry, self.context = plan, telemetry, context
        self.publish_context, self.request_replan, self.report = publish_context, request_replan, report
        self.hands_off = hands_off  # why nothing may be sent now (shadow mode, executor paused), or None
        self.quick: EvQuick | None = None
        self.reading: ChargerReading | None = None
        self.decision: EvDecision | None = None
        self.sent: ChargeCommand | None = None  # last command the charger accepted
        self.fell_back = False
        self.error: str | None = None
        self._refused: tuple[ChargeCommand, datetime] | None = None
        self._status_key: Any = None
        self._published: dict[str, Any] = {}
        self._deviation_since: datetime | None = None
        self._deviation_reported = False
        self._deviation_key: Any = None
        self._alarms: set[str] = set()
        self._unreachable_ticks = 0

    # ------------------------------------------------------------------ commands
    def charge_now(self, target_soc_frac: float, ttl_s: float) -> dict[str, Any]:
        if not (0.0 < target_soc_frac <= 1.0):
            raise ValueError("target_soc_frac must be in (0, 1]")
        if not (math.isfinite(ttl_s) and 0 < ttl_s <= 7 * 86400):
            raise ValueError("ttl_s must be between 0 and 604800 seconds")
        self.quick = EvQuick(target_soc_frac, self.clock.now() + timedelta(seconds=ttl_s))
        return self.state()

    def cancel(self) -> dict[str, Any]:
        self.quick = None
        return self.state()

    def state(self) -> dict[str, Any]:
        r, d = self.reading, self.decision
        return {
            "ev": self.ev.name, "type": self.ev.charger.type, "identity": self.ev.charger.identity,
            "connected": r.connected if r else False, "plugged": r.plugged if r else None,
            "status": r.status if r else "", "power_kw": r.power_kw if r else None,
            "soc_frac": r.soc_frac if r else None, "energy_kwh": r.energy_kwh if r else None,
            "source": d.source if d else "starting", "reason": d.reason if d else "",
            "command": summary(self.sent), "fallback": self.fell_back, "alarms": sorted(self._alarms),
            "quick": None if self.quick is None else {"target_soc_frac": self.quick.target_soc_frac,
                                                      "expires_at": self.quick.expires_at.isoformat()},
            "error": self.error,
        }

    # ------------------------------------------------------------------ one tick
    async def tick(self) -> EvDecision:
        now = self.clock.now()
        try:
            reading = await self.charger.read()
        except ChargerError as err:
            reading = ChargerReading(ts=now, connected=False, error=str(err))
        if reading.connected and reading.soc_frac is None:
            # Most AC wallboxes never learn the car's SoC: take it from the car's own integration
            # (a Home Assistant ev_soc entity read by the executor), when that reading is fresh.
            reading = replace(reading, soc_frac=self._car_soc(now))
        self.reading = reading
        self._inform_planner(reading)
        if self.quick is not None and (now >= self.quick.expires_at or (
                reading.soc_frac is not None and reading.soc_frac >= self.quick.target_soc_frac)):
            self.quick = None
        decision = decide_charge(now, self.ev, self.plan(), reading, share=self.share, quick=self.quick,
                                 guard=self._guard(now), target_soc_frac=self._target_soc_frac(),
                                 departure=self.context("ev_departure") if self.first else None)
        alarms = set(decision.alarms)
        status_key = (reading.connected, reading.plugged, reading.status)
        resend = status_key != self._status_key
        self._status_key = status_key
        why_not = self.hands_off()
        if why_not:
            # The inverter's rule for the charger too: decided and shown, never sent.
            decision = replace(decision, reason=f"{why_not}: not sent ({decision.reason})")
            self.sent, self.fell_back = None, False  # what it has is not ours: send afresh once allowed
        self.decision = decision
        if why_not:
            pass  # nothing goes to the charger (below: deviation and alarms still apply)
        elif not reading.connected:
            self.sent, self.fell_back = None, False  # whatever it had may be gone: send again on reconnect
        elif decision.fallback:
            if not self.fell_back or resend:
                await self._send(None, now, alarms)
        elif decision.command is not None:
            if resend or command_changed(self.sent, decision.command):
                await self._send(decision.command, now, alarms)
        self._check_deviation(now, decision, reading, alarms)
        self._unreachable_ticks = self._unreachable_ticks + 1 if "charger_unreachable" in alarms else 0
        if 0 < self._unreachable_ticks < UNREACHABLE_TICKS:
            alarms.discard("charger_unreachable")  # a charger still booting or reconnecting is not news
        for alarm in sorted(alarms - self._alarms - QUIET_ALARMS):
            self.report(f"executor/{alarm}", f"EV {self.ev.name}: {decision.reason or alarm}")
        self._alarms = alarms
        return decision

    async def _send(self, command: ChargeCommand | None, now: datetime, alarms: set[str]) -> None:
        if command is not None and self._refused is not None:
            refused, at = self._refused
            if not command_changed(refused, command) and (now - at).total_seconds() < RETRY_REFUSED_S:
                alarms.add("charger_command_refused")
                return
        try:
            if command is None:
                await self.charger.fallback()
                self.sent, self.fell_back = None, True
            else:
                await self.charger.apply(command)
                self.sent, self.fell_back, self._refused = command, False, None
            self.error = None
        except ChargerBusy as err:  # not sent yet; the unchanged ``sent`` makes the next tick try again
            self.error = str(err)
        except (TimeoutError, ChargerError) as err:
            self.error = str(err) or type(err).__name__
            alarms.add("charger_command_refused")
            log.warning("EV %s: %s", self.ev.name, self.error)
            if command is not None:
                # Never leave a higher current in force than asked: fall back to the safe behaviour.
                self._refused = (command, now)
                self.sent = None
                try:
                    await self.charger.fallback()
                    self.fell_back = True
                except (TimeoutError, ChargerError) as err2:
                    log.warning("EV %s: fallback failed too: %s", self.ev.name, err2)

    def _car_soc(self, now: datetime) -> float | None:
        t = self.telemetry()
        if t is None or (now - t.ts).total_seconds() > self.telemetry_stale_s:
            return None
        soc = getattr(t, "values", {}).get("ev_soc")
        return None if soc is None else min(1.0, max(0.0, float(soc)))

    def _guard(self, now: datetime) -> GuardInput:
        t = self.telemetry()
        grid = None
        if t is not None and t.grid_kw is not None and (now - t.ts).total_seconds() <= self.telemetry_stale_s:
            grid = t.grid_kw
        return GuardInput(self.guard_enabled, self.guard_margin_kw, grid)

    def _target_soc_frac(self) -> float | None:
        value = self.context("ev_target_soc_frac") if self.first else None
        return float(value) if value is not None else self.ev.target_soc_frac

    def _inform_planner(self, reading: ChargerReading) -> None:
        """The charger's view of the car as planner context (first EV: the planner's context is for it)."""
        if not self.first or not reading.connected or reading.plugged is None:
            return
        available = bool(reading.plugged) and not reading.faulted
        self._publish("ev_plugged", available)
        need = self.ev.needed_kwh(reading.soc_frac, self._target_soc_frac())
        moved = need is not None and available and self._publish("ev_target_kwh", round(need, 2), step=TARGET_STEP_KWH)
        # The SoC goes out with the target (the planner replans once for both), or when first known.
        if reading.soc_frac is not None and (moved or "ev_soc_frac" not in self._published):
            self._publish("ev_soc_frac", round(reading.soc_frac, 3))

    def _publish(self, name: str, value: Any, step: float | None = None) -> bool:
        old = self._published.get(name)
        if old is not None and (old == value or (step is not None and abs(float(old) - float(value)) < step)):
            return False
        self._published[name] = value
        self.publish_context(name, value)
        return True

    def _check_deviation(self, now: datetime, decision: EvDecision, reading: ChargerReading, alarms: set[str]) -> None:
        """Measured power off the command in force for ``deviation_s``: replan once; above it: alarm too.
        The clock restarts with every new command (the meter needs a moment to see it)."""
        cfg = self.ev.charger
        command = self.sent if decision.command is not None else None
        key = (command.limit_a, command.until) if command is not None else None
        if (command is None or decision.source != "plan" or reading.power_kw is None or not reading.plugged
                or abs(reading.power_kw - command.limit_kw) <= cfg.deviation_kw or key != self._deviation_key):
            self._deviation_since, self._deviation_reported, self._deviation_key = None, False, key
            return
        self._deviation_since = self._deviation_since or now
        if (now - self._deviation_since).total_seconds() < cfg.deviation_s:
            return
        if reading.power_kw > command.limit_kw:
            alarms.add("ev_over_limit")
        if not self._deviation_reported:
            self._deviation_reported = True
            self.request_replan(f"EV {self.ev.name} draws {reading.power_kw:.1f} kW, commanded "
                                f"{command.limit_kw:.1f} kW for {cfg.deviation_s:g} s")

    async def shutdown(self) -> None:
        """Darkstar stops: put the charger in its safe behaviour (if it is reachable), unless shadow mode
        says Darkstar never touches it."""
        if (why_not := self.hands_off()) and why_not.startswith("shadow"):
            return
        try:
            await self.charger.fallback()
            self.fell_back = True
        except (TimeoutError, ChargerError) as err:
            log.warning("EV %s: fallback at shut-down failed (%s); the charger's stored fallback applies "
                        "when Darkstar's profile expires", self.ev.name, err)


class ChargerRunner:
    """Ticks the controllers every ``tick_s`` clock seconds on a daemon thread with its own asyncio loop."""

    def __init__(self, controllers: list[ChargerController], *, clock: Any, tick_s: float,
                 setup: Callable[[], Any] | None = None, teardown: Callable[[], Any] | None = None):
        self.controllers, self.clock, self.tick_s = controllers, clock, tick_s
        self.setup, self.teardown = setup, teardown  # coroutine factories (start/stop the OCPP server)
        self.aio = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None
        self._lock: asyncio.Lock | None = None  # a poke and the periodic tick never interleave
        self.started = threading.Event()
        self.setup_error: BaseException | None = None

    def start(self) -> None:
        """Start the thread; raise when the setup (e.g. the OCPP server's port) fails, so the start fails."""
        self._thread = threading.Thread(target=self._main, name="executor-chargers", daemon=True)
        self._thread.start()
        if not self.started.wait(15.0):
            raise RuntimeError("EV chargers did not start within 15 s")
        if self.setup_error is not None:
            self._thread.join(5.0)
            self._thread = None
            raise RuntimeError(f"EV chargers could not start: {self.setup_error}") from self.setup_error

    def _main(self) -> None:
        asyncio.set_event_loop(self.aio)
        try:
            self.aio.run_until_complete(self._run())
        finally:
            self.aio.close()

    async def _run(self) -> None:
        self._stop = asyncio.Event()
        self._lock = asyncio.Lock()
        try:
            if self.setup is not None:
                await self.setup()
        except Exception as err:  # noqa: BLE001 - handed to the starting thread
            self.setup_error = err
            if self.teardown is not None:
                try:
                    await self.teardown()
                except Exception:  # noqa: BLE001 - the setup error is the one to report
                    log.exception("EV chargers: clean-up after a failed start failed")
            return
        finally:
            self.started.set()
        try:
            while not self._stop.is_set():
                await self._tick_all()
                wait_s = self.clock.wall_seconds(self.tick_s) if hasattr(self.clock, "wall_seconds") else self.tick_s
                try:
                    await asyncio.wait_for(self._stop.wait(), timeout=max(wait_s, 0.05))
                except TimeoutError:
                    pass
        finally:
            async with self._lock:
                for c in self.controllers:
                    await c.shutdown()
            if self.teardown is not None:
                await self.teardown()

    def poke(self) -> None:
        """Tick now (a new plan or command), from any thread."""
        if not self.aio.is_closed():
            self.aio.call_soon_threadsafe(lambda: asyncio.ensure_future(self._tick_all()))

    async def _tick_all(self) -> None:
        assert self._lock is not None
        async with self._lock:
            for c in self.controllers:
                try:
                    await c.tick()
                except Exception:  # noqa: BLE001 - the loop must survive anything a tick throws
                    log.exception("charger tick failed for EV %s", c.ev.name)

    def stop(self, timeout_s: float = 15.0) -> None:
        if self._thread is None:
            return
        if not self.aio.is_closed() and self._stop is not None:
            self.aio.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout_s)
        self._thread = None
