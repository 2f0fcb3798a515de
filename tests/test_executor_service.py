"""The executor service over real brokers (embedded amqtt and Mosquitto) and real Modbus TCP.

The inverter simulator replays the SE4 home's recorded load and PV on a simulated clock
shared with the service (x600: a 60 s tick every 0.1 s of wall time, a 15-minute slot every
1.5 s). Everything the service does is observed from outside: on the bus (what Home Assistant
and the other services see), in the simulator's registers (what the inverter was told) and in
the database (execution_log).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from services.demo.simulator import InverterSimulator
from services.executor.modbus.profile import load_profile
from services.executor.modbus.transport import ModbusInverter
from services.executor.service import ExecutorService
from shared.clock import SimClock
from shared.config import ModbusConfig, SiteConfig
from shared.contracts import (
    CommandMsg,
    CostBreakdown,
    ExecutorStateMsg,
    ObservationMsg,
    PlanMsg,
    PlanSlot,
    SolverStats,
    TelemetryMsg,
    decode,
    encode,
)
from shared.cost import battery_saving
from shared.sitedata import load_site_data
from shared.storage.repository import Store
from tests.conftest import EXAMPLE_DATA, free_port, make_site, wait_for
from tests.test_service_runtime import Watcher

DATA = load_site_data(EXAMPLE_DATA / "se4_home_2025-07_2025-10.csv.gz")
START = datetime(2025, 7, 14, 0, 0, tzinfo=timezone.utc)  # a day without gaps in the recording
SLOT = timedelta(minutes=15)
ACCEL = 600.0
TOKEN = {"Authorization": "Bearer test-admin-token"}


class SimThread:
    """The Modbus simulator on its own event loop and thread, as a separate device would be."""

    def __init__(self, site: SiteConfig, clock: SimClock, port: int, soc_frac: float) -> None:
        self.aio = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.aio.run_forever, name="inverter-sim", daemon=True)
        self.thread.start()
        self.sim = InverterSimulator(site, DATA, clock=clock, port=port, soc_frac=soc_frac, background_s=0.2)
        self.call(self.sim.start())

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.aio).result(10)

    def snapshot(self) -> dict[str, Any]:
        async def snap() -> dict[str, Any]:  # physics advance on the simulator's own thread
            return self.sim.snapshot()

        return self.call(snap())

    def stop(self) -> None:
        self.call(self.sim.stop())
        self.aio.call_soon_threadsafe(self.aio.stop)
        self.thread.join(5)
        self.aio.close()


@dataclass
class Rig:
    site: SiteConfig
    service: ExecutorService
    sim: InverterSimulator
    simt: SimThread
    watcher: Watcher
    store: Store
    base: str
    broker: dict[str, Any]

    def messages(self, suffix: str) -> list[Any]:
        return [decode(p) for p in self.watcher.on(f"{self.base}/{suffix}")]

    def publish(self, suffix: str, payload: bytes | str) -> None:
        data = payload.encode() if isinstance(payload, str) else payload
        self.watcher.publish(f"{self.base}/{suffix}", data)

    def command(self, action: str, **args: Any) -> Any:
        cmd = CommandMsg(site_id=self.site.site_id, args=args)
        self.publish(f"cmd/executor/{action}", encode(cmd))
        replies = lambda: [m for m in self.messages(f"cmd/executor/{action}/result")  # noqa: E731
                           if m.correlation_id == cmd.correlation_id]
        return wait_for(replies)[0]

    def log_rows(self) -> list[dict[str, Any]]:
        with self.store.engine.connect() as conn:
            rows = conn.execute(text("SELECT * FROM execution_log WHERE site_id = :s ORDER BY ts"),
                                {"s": self.site.site_id}).mappings().all()
        return [dict(r) for r in rows]


@pytest.fixture
def make_rig(tmp_path: Path, broker_mqtt: dict[str, Any]) -> Iterator[Any]:
    made: list[Rig] = []

    def make(soc_frac: float = 0.3, prebuilt_inverter: bool = False, **executor: Any) -> Rig:
        port = free_port()
        settings = {"tick_s": 60.0, "telemetry_stale_s": 300.0,
                    "modbus": {"port": port, "timeout_s": 0.5, "retries": 1}, **executor}
        site = make_site(tmp_path, broker_mqtt, executor=settings)
        clock = SimClock(START, accel=ACCEL)
        simt = SimThread(site, clock, port, soc_frac)
        store = Store.open(site.database.url.get_secret_value())
        watcher = Watcher(broker_mqtt["host"], broker_mqtt["port"], f"darkstar/{site.site_id}/#")
        inverter = None
        if prebuilt_inverter:  # as the demo may pass one: same device, built outside the service
            inverter = ModbusInverter(load_profile("darkstar_sim"), ModbusConfig(port=port, timeout_s=0.5),
                                      battery=site.battery, clock=clock.now)
        service = ExecutorService(site, store=store, clock=clock, inverter=inverter)
        service.start()
        assert service.mqtt.wait_connected(10)
        rig = Rig(site, service, simt.sim, simt, watcher, store, f"darkstar/{site.site_id}", broker_mqtt)
        made.append(rig)
        return rig

    yield make
    for rig in made:
        thread = rig.service.runner._thread if rig.service.runner else None
        rig.service.stop()
        assert thread is None or not thread.is_alive(), "the control loop stops with the service"
        rig.watcher.close()
        rig.simt.stop()
        rig.store.close()
        if not broker_mqtt["embedded"]:
            clear_retained(broker_mqtt, rig.site.site_id)


def clear_retained(broker: dict[str, Any], site_id: str) -> None:
    """Leave the machine's Mosquitto as found: drop this test site's retained state and discovery."""
    node = f"darkstar_{site_id.replace('-', '_')}"
    watcher = Watcher(broker["host"], broker["port"], f"darkstar/{site_id}/#", f"homeassistant/+/{node}/+/config")
    try:
        wait_for(lambda: watcher.messages, timeout_s=5)  # discovery is always there, retained
    finally:
        watcher.close()  # publishes an empty retained message on every retained topic it saw


def plan_msg(site_id: str, slots: list[PlanSlot], created: datetime = START,
             valid_hours: float = 12.0) -> PlanMsg:
    return PlanMsg(
        site_id=site_id, created_at=created, valid_until=START + timedelta(hours=valid_hours), slots=slots,
        cost=CostBreakdown(currency="EUR", import_cost=0.0, export_revenue=0.0, total_cost=0.0),
        solver=SolverStats(status="optimal"),
    )


def charge_plan(site_id: str, charge_kw: float = 3.0, hours: int = 12) -> PlanMsg:
    slots = [PlanSlot(start=START + i * SLOT, mode="charge", charge_kw=charge_kw, import_kw=charge_kw + 1.0,
                      soc_kwh=9.0, reason_code="charge_grid_cheap", import_price_per_kwh=0.12,
                      export_price_per_kwh=0.04) for i in range(hours * 4)]
    return plan_msg(site_id, slots)


def test_a_plan_on_the_bus_is_followed_reported_and_logged(make_rig) -> None:
    r = make_rig(soc_frac=0.3)
    client = TestClient(r.service.build_app())
    wait_for(lambda: r.messages("telemetry"))
    not_ready = client.get("/readyz")
    assert not_ready.status_code == 503 and not_ready.json()["executor"]["plan"] == "none received"

    plan = charge_plan(r.site.site_id, charge_kw=3.0)
    r.publish("plan", encode(plan))
    # the inverter is told what the plan says, and the battery does it
    wait_for(lambda: r.sim.command.mode == 1 and r.sim.command.power_w == 3000)
    snap = wait_for(lambda: (s := r.simt.snapshot()) and abs(s["battery_kw"] - 3.0) < 0.01 and s)
    assert snap["mode"] == "charge"

    # telemetry (QoS 0) reports the measured charge; the state names the plan and its mode
    telemetry = wait_for(lambda: [m for m in r.messages("telemetry") if m.battery_kw and m.battery_kw > 2.9])
    assert isinstance(telemetry[-1], TelemetryMsg)
    assert telemetry[-1].battery_kw == pytest.approx(3.0, abs=0.05)
    # charging raises the SoC (from wherever self-consumption left it before the plan arrived)
    first_soc = telemetry[0].soc_frac
    assert first_soc is not None
    wait_for(lambda: [m for m in r.messages("telemetry")
                      if m.battery_kw and m.battery_kw > 2.9 and m.soc_frac and m.soc_frac > first_soc + 0.001])
    states = wait_for(lambda: [m for m in r.messages("executor/state")
                               if m.plan_id == plan.plan_id and m.mode == "charge"])
    assert isinstance(states[-1], ExecutorStateMsg) and not states[-1].shadow

    # observations at each slot end: 3 kW for the covered share of 15 minutes, energy balanced
    # (a slot that began after charging had started: at 600x a loaded machine's second is 10 minutes)
    charging_since = telemetry[0].ts
    observations = wait_for(lambda: [m for m in r.messages("observations") if m.coverage_frac > 0.9
                                     and m.charge_kwh and m.slot_start >= charging_since], timeout_s=15)
    obs = observations[0]
    assert isinstance(obs, ObservationMsg)
    assert obs.charge_kwh == pytest.approx(3.0 * 0.25 * obs.coverage_frac, abs=0.05)
    assert obs.discharge_kwh == pytest.approx(0.0, abs=1e-6)
    balance = obs.import_kwh - obs.export_kwh + obs.pv_kwh - obs.load_kwh - obs.charge_kwh + obs.discharge_kwh
    assert balance == pytest.approx(0.0, abs=0.02)

    # energy/totals: one update per observation; the battery's saving by the one cost model at the
    # plan's prices (slots measured before the plan arrived are counted as unpriced, not guessed)
    def totals_caught_up() -> tuple[list[Any], Any] | None:
        obs_now, totals = r.messages("observations"), r.messages("energy/totals")
        return (obs_now, totals[-1]) if totals and len(totals) == len(obs_now) else None

    obs_all, totals = wait_for(totals_caught_up)
    assert totals.currency == r.site.tariff.currency and totals.saving is not None
    priced = obs_all[totals.saving_unpriced_slots:]
    idx = pd.DatetimeIndex([o.slot_start for o in priced])
    prices = pd.DataFrame({"import_price_per_kwh": 0.12, "export_price_per_kwh": 0.04}, index=idx)
    expected = battery_saving(idx, *([getattr(o, k) or 0.0 for o in priced]
                                     for k in ("import_kwh", "export_kwh", "charge_kwh", "discharge_kwh")),
                              prices, r.site)
    assert priced and totals.saving == pytest.approx(expected, abs=1e-5)
    assert totals.saving < 0  # charging from the grid at a flat price only costs wear and nothing yet

    # a new subscriber gets the retained state at once
    late = Watcher(r.broker["host"], r.broker["port"], f"{r.base}/executor/state")
    try:
        retained = wait_for(lambda: late.on(f"{r.base}/executor/state"))
        assert decode(retained[-1]).plan_id == plan.plan_id
    finally:
        late.close(clear_retained=False)

    # execution_log: one row per decision with planned, commanded, measured
    rows = wait_for(lambda: [row for row in r.log_rows() if row["plan_id"] == plan.plan_id
                             and row["measured_battery_kw"] and row["measured_battery_kw"] > 2.9])
    row = rows[-1]
    assert row["mode"] == "charge" and row["planned_mode"] == "charge" and row["success"]
    assert row["planned_battery_kw"] == pytest.approx(3.0)
    assert row["commanded_battery_kw"] == pytest.approx(3.0)
    assert row["system_id"] == "live" and row["override_kind"] is None
    detail = row["detail"] if isinstance(row["detail"], dict) else json.loads(row["detail"])
    assert detail["source"] == "plan"
    assert len(r.log_rows()) >= 5

    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.json()
    assert ready.json()["executor"]["inverter"] == "ok"
    assert ready.json()["executor"]["plan"].startswith(f"ok: {plan.plan_id}")


def test_force_charge_over_mqtt_with_ttl_then_admin_and_home_assistant(make_rig) -> None:
    r = make_rig(soc_frac=0.5)
    wait_for(lambda: r.messages("telemetry"))
    assert r.sim.command.mode == 0  # no plan: safe self-consumption

    reply = r.command("force_charge", ttl_s=1800, power_kw=2.0)
    assert reply.status == "ok", reply.error
    assert reply.data["override"]["kind"] == "force_charge" and reply.data["override"]["power_kw"] == 2.0
    wait_for(lambda: r.sim.command.mode == 1 and r.sim.command.power_w == 2000)
    wait_for(lambda: [m for m in r.messages("executor/state")
                      if m.override and m.override.kind == "force_charge"])
    rows = wait_for(lambda: [row for row in r.log_rows() if row["override_kind"] == "force_charge"])
    assert rows[-1]["commanded_battery_kw"] == pytest.approx(2.0)
    assert rows[-1]["override_expires_at"] is not None
    # the TTL (30 simulated minutes = 3 s here) runs out: back to safe self-consumption
    wait_for(lambda: r.sim.command.mode == 0, timeout_s=15)

    bad = r.command("force_charge", ttl_s=600, power_kw="lots")
    assert bad.status == "error" and "power_kw" in bad.error
    typo = r.command("force_export", ttl=600)
    assert typo.status == "error" and "ttl" in typo.error
    assert r.sim.command.mode == 0  # rejected commands change nothing

    # the same over /admin
    client = TestClient(r.service.build_app())
    body = {"ttl_s": 1800, "power_kw": 1.5}
    assert client.post("/admin/command/force_export", json=body).status_code == 401
    ok = client.post("/admin/command/force_export", json=body, headers=TOKEN)
    assert ok.status_code == 200 and ok.json()["data"]["override"]["kind"] == "force_export"
    wait_for(lambda: r.sim.command.mode == 2 and r.sim.command.power_w == 1500)
    assert client.get("/state").json()["override"]["kind"] == "force_export"

    # Home Assistant: discovery of sensors, buttons and the pause switch (retained); pressing works
    node = f"darkstar_{r.site.site_id.replace('-', '_')}"
    ha = Watcher(r.broker["host"], r.broker["port"], f"homeassistant/+/{node}/+/config")
    try:
        cancel_topic = f"homeassistant/button/{node}/executor_cancel/config"
        cancel_cfg = json.loads(wait_for(lambda: ha.on(cancel_topic))[-1])
        assert cancel_cfg["command_topic"] == f"{r.base}/cmd/executor/cancel"
        r.watcher.publish(cancel_cfg["command_topic"], cancel_cfg["payload_press"].encode())
        wait_for(lambda: r.sim.command.mode == 0)
        for sensor in ("battery_soc", "battery_power", "executor_mode", "executor_override"):
            assert ha.on(f"homeassistant/sensor/{node}/{sensor}/config")
        switch_topic = f"homeassistant/switch/{node}/executor_paused/config"
        switch = json.loads(wait_for(lambda: ha.on(switch_topic))[-1])
    finally:
        ha.close(clear_retained=False)  # the service's discovery stays until the test ends
    r.watcher.publish(switch["command_topic"], switch["payload_on"].encode())
    wait_for(lambda: [m for m in r.messages("executor/state") if m.mode == "paused"])
    r.watcher.publish(switch["command_topic"], switch["payload_off"].encode())
    wait_for(lambda: r.messages("executor/state")[-1].override is None)


def test_an_invalid_plan_is_reported_and_the_service_keeps_running(make_rig) -> None:
    r = make_rig()
    wait_for(lambda: r.messages("telemetry"))
    good = charge_plan(r.site.site_id, charge_kw=2.5)
    bad = json.loads(encode(good))
    bad["slots"][3]["charge_kw"] = "lots"
    r.publish("plan", b"{not json")
    r.publish("plan", json.dumps(bad))
    r.publish("plan", encode(charge_plan("another-site")))
    errors = wait_for(lambda: len(r.messages("events/error")) >= 3 and r.messages("events/error"))
    assert all(e.who == "executor" for e in errors)
    why = " | ".join(e.why for e in errors)
    assert "JSON" in why and "slots.3.charge_kw" in why and "another-site" in why
    assert r.service.loop.plan is None and r.sim.command.mode == 0  # nothing of it reached the inverter

    seen = len(r.messages("telemetry"))
    wait_for(lambda: len(r.messages("telemetry")) > seen + 3)  # still ticking
    r.publish("plan", encode(good))
    wait_for(lambda: r.sim.command.mode == 1 and r.sim.command.power_w == 2500)


def test_shadow_mode_decides_and_logs_but_never_writes(make_rig, broker_mqtt) -> None:
    if not broker_mqtt["embedded"]:
        pytest.skip("broker-independent: run once")
    r = make_rig(shadow_mode=True, prebuilt_inverter=True)
    assert r.service.loop.inverter is r.service.inverter and r.service.loop.settings.shadow
    plan = charge_plan(r.site.site_id, charge_kw=3.0)
    r.publish("plan", encode(plan))
    rows = wait_for(lambda: [row for row in r.log_rows() if row["plan_id"] == plan.plan_id])
    assert rows[-1]["commanded_battery_kw"] == pytest.approx(3.0) and rows[-1]["mode"] == "charge"
    states = wait_for(lambda: [m for m in r.messages("executor/state") if m.plan_id == plan.plan_id])
    assert states[-1].shadow
    wait_for(lambda: len(r.log_rows()) > len(rows) + 3)
    assert r.sim.writes == [] and r.sim.command.mode == 0


def test_readyz_is_honest_about_the_inverter_and_recovers(make_rig, broker_mqtt) -> None:
    if not broker_mqtt["embedded"]:
        pytest.skip("broker-independent: run once")
    r = make_rig()
    client = TestClient(r.service.build_app())
    plan = charge_plan(r.site.site_id, charge_kw=2.0)
    r.publish("plan", encode(plan))
    wait_for(lambda: client.get("/readyz").status_code == 200)

    r.simt.call(r.sim.stop())  # the inverter drops off the network
    # not ready, and for the right reason (telemetry may go stale a moment earlier)
    body = wait_for(lambda: (resp := client.get("/readyz")).status_code == 503
                    and resp.json()["executor"]["inverter"].startswith("unreachable") and resp.json())
    assert body["ready"] is False
    errors = wait_for(lambda: [e for e in r.messages("events/error")
                               if e.what == "executor/modbus_unreachable"])
    assert errors[0].who == "executor"

    r.simt.call(r.sim.start())  # back on the same address: commands written again, ready again
    wait_for(lambda: client.get("/readyz").status_code == 200)
    wait_for(lambda: r.sim.command.mode == 1 and r.sim.command.power_w == 2000)


def test_a_site_without_battery_runs_without_a_control_loop(tmp_path: Path, broker_mqtt) -> None:
    if not broker_mqtt["embedded"]:
        pytest.skip("broker-independent: run once")
    site = make_site(tmp_path, broker_mqtt, battery=None)
    service = ExecutorService(site)
    service.start()
    try:
        assert service.mqtt.wait_connected(10)
        client = TestClient(service.build_app())
        ready = client.get("/readyz")
        assert ready.status_code == 503 and "no battery" in ready.json()["executor"]["control_loop"]
        refused = client.post("/admin/command/force_charge", json={"ttl_s": 60}, headers=TOKEN)
        assert refused.status_code == 400 and "no battery" in refused.json()["detail"]
    finally:
        service.stop()


def test_a_clock_that_does_not_run_by_itself_is_refused(tmp_path: Path) -> None:
    from shared.clock import ManualClock

    site = make_site(tmp_path, {"host": "127.0.0.1", "port": free_port()})
    with pytest.raises(ValueError, match="ManualClock"):
        ExecutorService(site, clock=ManualClock(START))


def test_the_cars_plug_and_soc_read_from_ha_become_planner_context_on_change(make_rig) -> None:
    r = make_rig()
    wait_for(lambda: r.messages("telemetry"))
    reading = dict(site_id=r.site.site_id, ts=START, ev_plugged=True, ev_soc_frac=0.434, water_temp_c=61.5)
    r.service._car_context(TelemetryMsg(**reading))
    r.service._car_context(TelemetryMsg(**reading))  # unchanged: nothing new on the bus
    plugged = wait_for(lambda: r.messages("context/ev_plugged"))
    soc = wait_for(lambda: r.messages("context/ev_soc_frac"))
    assert [m.value for m in plugged] == [True] and [m.value for m in soc] == [pytest.approx(0.43)]
    assert plugged[0].source == "homeassistant"
    r.service._car_context(TelemetryMsg(**{**reading, "ev_plugged": False}))
    both = wait_for(lambda: (ms := r.messages("context/ev_plugged")) and len(ms) == 2 and ms)
    assert [m.value for m in both] == [True, False]
