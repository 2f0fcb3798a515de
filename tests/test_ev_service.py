"""The executor service drives an OCPP wallbox end to end: bus in, websocket out, bus back.

The Modbus inverter simulator and a simulated OCPP charge point (same ``ocpp`` library, real
websocket with basic auth) run beside the service on the embedded broker and a shared simulated
clock; everything is observed from outside: on the bus and at the charge point.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from services.demo.chargepoint import SimCar, SimChargePoint
from services.executor.service import ExecutorService
from shared.asyncthread import LoopThread
from shared.clock import SimClock
from shared.contracts import CommandMsg, PlanSlot, decode, encode
from tests.conftest import free_port, make_site, wait_for
from tests.ev_helpers import PASSWORD
from tests.test_executor_service import ACCEL, SLOT, START, SimThread, plan_msg
from tests.test_service_runtime import Watcher


@pytest.fixture
def broker(mosquitto: dict[str, Any]) -> dict[str, Any]:
    return mosquitto  # the machine's real broker; the test's own site_id keeps it apart


def test_plan_to_wallbox_telemetry_context_charge_now_and_fallback_at_shutdown(tmp_path: Path, broker) -> None:
    modbus_port, ocpp_port = free_port(), free_port()
    ev = {"name": "car", "battery_kwh": 60, "max_charge_kw": 11.0, "target_soc_frac": 0.8,
          "charger": {"type": "ocpp", "identity": "garage", "password": PASSWORD, "max_current_a": 16,
                      "fallback": {"mode": "current", "current_a": 6}}}
    site = make_site(tmp_path, broker, evs=[ev], executor={
        "tick_s": 60.0, "telemetry_stale_s": 300.0, "modbus": {"port": modbus_port, "timeout_s": 0.5, "retries": 1},
        "ocpp": {"host": "127.0.0.1", "port": ocpp_port}})
    clock = SimClock(START, accel=ACCEL)
    simt = SimThread(site, clock, modbus_port, 0.5)
    base = f"darkstar/{site.site_id}"
    watcher = Watcher(broker["host"], broker["port"], f"{base}/#", "homeassistant/#")
    service = ExecutorService(site, clock=clock)
    cp = SimChargePoint("garage", f"ws://127.0.0.1:{ocpp_port}/ocpp/garage", PASSWORD, car=SimCar(soc_frac=0.4),
                        clock=clock.now, meter_interval_s=0.1)
    cp_thread = LoopThread("test-chargepoint")
    try:
        service.start()
        assert service.mqtt.wait_connected(10)

        async def plug() -> None:
            await cp.connect()
            await cp.plug()

        cp_thread.start(plug)
        wait_for(lambda: service.ev.state()[0]["plugged"])

        def last(kind: str) -> Any:
            found = watcher.on(f"{base}/{kind}")
            return decode(found[-1]) if found else None

        context = wait_for(lambda: last("context/ev_plugged"))
        assert context.value is True and context.source == "executor"
        need = wait_for(lambda: last("context/ev_target_kwh"))
        assert need.value == pytest.approx((0.8 - 0.4) * 60, abs=1.0)  # from the car's SoC, not a guess

        now = clock.now()
        first = now.replace(minute=now.minute - now.minute % 15, second=0, microsecond=0)
        slots = [PlanSlot(start=first + i * SLOT, mode="self_consumption", soc_kwh=5.0, ev_kw=6.9, import_kw=7.5)
                 for i in range(8)]
        plan = plan_msg(site.site_id, slots, created=now, valid_hours=12.0)
        plan = plan.model_copy(update={"valid_until": first + timedelta(hours=2)})
        watcher.publish(f"{base}/plan", encode(plan))
        wait_for(lambda: cp.transaction_id is not None and cp.limit_a() == pytest.approx(10.0))
        # before the plan came the car charged at the fallback (6 A x 3 x 230 V), now at the plan's power
        wait_for(lambda: [m for m in map(decode, watcher.on(f"{base}/telemetry"))
                          if m.ev_kw is not None and abs(m.ev_kw - 6.9) <= 0.01])

        cmd = CommandMsg(site_id=site.site_id, args={"target_soc_frac": 0.9, "ttl_s": 3600})
        watcher.publish(f"{base}/cmd/executor/ev_charge", encode(cmd))
        reply = wait_for(lambda: [m for m in map(decode, watcher.on(f"{base}/cmd/executor/ev_charge/result"))
                                  if m.correlation_id == cmd.correlation_id])[0]
        assert reply.status == "ok" and reply.data["quick"]["target_soc_frac"] == 0.9
        wait_for(lambda: cp.limit_a() == pytest.approx(16.0))

        configs = {t: json.loads(p) for t, p, _ in watcher.messages if t.startswith("homeassistant/") and p}
        number = next(c for t, c in configs.items() if t.endswith("/ev_target_soc/config"))
        assert number["command_topic"] == f"{base}/context/ev_target_soc_frac"
        assert '"name":"ev_target_soc_frac"' in number["command_template"]
    finally:
        service.stop()
        # the executor left the charger on its fallback, not on the 16 A it was driving
        assert "TxProfile" not in cp.profiles and cp.limit_a() == 6.0
        cp_thread.stop(cp.disconnect)
        watcher.close()
        simt.stop()
