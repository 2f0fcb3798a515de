"""The executor over real Modbus TCP against the inverter simulator (loopback, free ports).

The simulator replays the SE4 home's recorded load and PV; the clock is a manual simulated
clock, so a simulated day takes seconds and every assertion is about the product: the plan is
followed, safety rules hold, and nothing outside the device limits is ever written.
"""

from __future__ import annotations

import asyncio
import json
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import AsyncIterator

import pytest
from pymodbus.client import AsyncModbusTcpClient

from services.demo.simulator import InverterSimulator
from services.executor.control import ControlSettings
from services.executor.loop import ExecutorLoop
from services.executor.modbus.profile import load_profile
from services.executor.modbus.transport import ModbusInverter
from shared.battery import step as battery_step
from shared.clock import ManualClock
from shared.config import ModbusConfig, SiteConfig, load_site_config
from shared.contracts import CostBreakdown, PlanMsg, PlanSlot, SolverStats, encode
from shared.sitedata import SiteData, load_site_data

ROOT = Path(__file__).resolve().parents[1]
SITE_GUARDED = load_site_config(ROOT / "examples" / "se4-home.yaml")
# The loop's mechanics are tested with the plan's commands as written: the import guard (on by
# default with SE4's capacity tariff) would trim them to the recorded load; its own test is below.
SITE = SITE_GUARDED.model_copy(
    update={"executor": SITE_GUARDED.executor.model_copy(update={"import_guard": "off"})})
DATA = load_site_data(ROOT / "examples" / "data" / "se4_home_2025-07_2025-10.csv.gz")
START = datetime(2025, 7, 14, 0, 0, tzinfo=timezone.utc)  # a day without gaps in the recording
SLOT = timedelta(minutes=15)


class Rig:
    """Simulator + Modbus inverter + executor loop on one manual clock, with every callback recorded."""

    def __init__(self, sim: InverterSimulator, inverter: ModbusInverter, loop: ExecutorLoop, clock: ManualClock):
        self.sim, self.inverter, self.loop, self.clock = sim, inverter, loop, clock
        self.telemetry: list = []
        self.states: list = []
        self.observations: list = []
        self.rows: list[dict] = []
        loop.publish_telemetry = self.telemetry.append
        loop.publish_state = self.states.append
        loop.publish_observation = self.observations.append
        loop.log_execution = self.rows.append

    async def run(self, seconds: float, tick_s: float = 30.0) -> list:
        reports = []
        end = self.clock.now() + timedelta(seconds=seconds)
        while self.clock.now() < end:
            reports.append(await self.loop.tick())
            self.clock.advance(tick_s)
        return reports


@asynccontextmanager
async def rig(
    *, soc_frac: float = 0.5, site: SiteConfig = SITE, data: SiteData = DATA, shadow: bool = False,
    start: datetime = START,
) -> AsyncIterator[Rig]:
    clock = ManualClock(start)
    sim = InverterSimulator(site, data, clock=clock, port=0, soc_frac=soc_frac)
    await sim.start()
    inverter = ModbusInverter(
        load_profile("darkstar_sim"),
        ModbusConfig(port=sim.port, timeout_s=0.5, retries=1),
        battery=site.battery,
        max_export_kw=site.grid.max_export_kw,
        clock=clock.now,
        backoff_s=0.01,
    )
    settings = ControlSettings.for_device(site, inverter)
    if shadow:
        from dataclasses import replace

        settings = replace(settings, shadow=True)
    loop = ExecutorLoop(inverter, settings, site_id=site.site_id, clock=clock, tick_s=30.0)
    try:
        yield Rig(sim, inverter, loop, clock)
    finally:
        await inverter.close()
        await sim.stop()


def make_plan(slots: list[PlanSlot], valid_hours: float = 48.0, created: datetime = START) -> PlanMsg:
    return PlanMsg(
        site_id=SITE.site_id,
        created_at=created,
        valid_until=START + timedelta(hours=valid_hours),
        slots=slots,
        cost=CostBreakdown(currency="EUR", import_cost=0.0, export_revenue=0.0, total_cost=0.0),
        solver=SolverStats(status="optimal"),
    )


def scripted_plan(hours: int, soc_frac: float) -> tuple[PlanMsg, dict[datetime, float]]:
    """A plan cycling through grid charge, export discharge, hold and self-consumption, whose SoC
    trajectory is computed with the project's battery model on the recorded load and PV."""
    battery = SITE.battery
    assert battery is not None
    pattern = [("charge_grid_cheap", 6.0), ("discharge_export", 5.0), ("hold_for_later", 0.0), ("charge_pv_surplus", 0.0)]
    soc = soc_frac * battery.capacity_kwh
    slots, expected_battery_kwh = [], {}
    for i in range(hours * 4):
        start = START + i * SLOT
        code, power = pattern[(i // 8) % len(pattern)]
        load, pv = (float(x) for x in DATA.frame.loc[start, ["load_kw", "pv_kw"]])
        want = {"charge_grid_cheap": power, "discharge_export": -power, "hold_for_later": 0.0}.get(code, pv - load)
        b = battery_step(soc, want, 0.25, battery, battery.reserve_soc_kwh, battery.max_soc_kwh)
        grid = load - pv + b.battery_kw
        slots.append(PlanSlot(
            start=start, mode="charge" if b.charge_kw > 0 else ("discharge" if b.discharge_kw > 0 else "idle"),
            charge_kw=b.charge_kw, discharge_kw=b.discharge_kw, import_kw=max(grid, 0.0), export_kw=max(-grid, 0.0),
            soc_kwh=b.soc_end_kwh, load_kw=load, pv_kw=pv, reason_code=code,
        ))
        expected_battery_kwh[start] = b.battery_kw * 0.25
        soc = b.soc_end_kwh
    return make_plan(slots), expected_battery_kwh


def run(coro):  # no pytest-asyncio in the project: each test drives its own event loop
    return asyncio.run(asyncio.wait_for(coro, timeout=50))


def test_follows_a_plan_within_tolerance_for_a_simulated_day() -> None:
    async def body() -> None:
        plan, expected = scripted_plan(hours=24, soc_frac=0.5)
        async with rig(soc_frac=0.5) as r:
            r.loop.set_plan(plan)
            await r.run(24 * 3600, tick_s=30.0)
            r.sim.advance()  # physics up to the end of the day
            await r.loop.flush_observation()
            capacity = SITE.battery.capacity_kwh
            for slot in plan.slots:
                measured = r.sim.battery_kwh_by_slot[slot.start]
                # Within one tick of lag per slot: the device holds each setpoint for the whole slot.
                assert measured == pytest.approx(expected[slot.start], abs=0.05), slot.start
                soc_end = r.sim.soc_at_slot_end[slot.start + SLOT]
                assert abs(soc_end - slot.soc_kwh) <= 0.02 * capacity, slot.start
            # Observations integrate the readings: their energies match the device's own totals.
            obs_charge = sum(o.charge_kwh for o in r.observations)
            obs_import = sum(o.import_kwh for o in r.observations)
            assert obs_charge == pytest.approx(r.sim.totals.charge_kwh, rel=0.01)
            assert obs_import == pytest.approx(r.sim.totals.import_kwh, rel=0.01)
            assert len(r.observations) == 96 and all(o.coverage_frac == pytest.approx(1.0) for o in r.observations[:-1])
            # Flash wear: one write per setpoint change, not one per tick.
            assert r.loop.writes <= 20 and all(row["success"] for row in r.rows)
            assert not [w for w in r.sim.writes if not w.accepted]
            # What the shell publishes and stores is serialisable as is.
            json.dumps(r.rows[-1])
            assert encode(r.states[-1]) and encode(r.telemetry[-1]) and encode(r.observations[-1])

    run(body())


def test_stale_plan_gives_the_safe_mode_within_two_ticks() -> None:
    async def body() -> None:
        slots = [PlanSlot(start=START + i * SLOT, mode="discharge", discharge_kw=4.0, export_kw=3.0, soc_kwh=10.0,
                          reason_code="discharge_export") for i in range(16)]
        plan = make_plan(slots, valid_hours=1.0)  # valid for the first hour only
        async with rig(soc_frac=0.8) as r:
            r.loop.set_plan(plan)
            await r.run(3600, tick_s=30.0)
            assert r.sim.command.mode == 2  # discharging as planned
            reports = await r.run(60, tick_s=30.0)  # two ticks past valid_until
            assert r.sim.command.mode == 0, "safe self-consumption"
            assert reports[0].decision.source == "safety" and "plan_expired" in reports[0].decision.alarms
            assert "plan_expired" in r.states[-1].alarms and r.states[-1].mode == "self_consumption"

    run(body())


def test_killing_and_restarting_the_modbus_server_is_survived_with_no_wrong_write() -> None:
    async def body() -> None:
        slots = [PlanSlot(start=START + i * SLOT, mode="discharge", discharge_kw=4.0, export_kw=3.0, soc_kwh=10.0,
                          reason_code="discharge_export") for i in range(16)]
        async with rig(soc_frac=0.8) as r:
            r.loop.set_plan(make_plan(slots))
            await r.run(300)
            assert r.sim.command.mode == 2
            await r.sim.stop()
            r.sim.reset_commands()  # the inverter reboots: back to its default self-consumption
            writes_before = len(r.sim.writes)
            down = await r.run(120)
            assert all(rep.telemetry is None and rep.result is None for rep in down), "no write without a reading"
            assert "modbus_unreachable" in r.loop.alarms()
            assert r.states[-1].alarms and "modbus_error" in r.states[-1].alarms
            await r.sim.start()
            up = await r.run(30)
            assert up[0].telemetry is not None and up[0].result is not None and up[0].result.verified
            assert r.sim.command.mode == 2 and r.sim.command.power_w == 4000, "the plan's intent is restored"
            after = r.sim.writes[writes_before:]
            assert after and all(w.accepted for w in after)
            assert {(w.register, w.value) for w in after} <= {("power_setpoint", 4000.0), ("mode", 2.0),
                                                              ("soc_floor", 10.0), ("soc_ceiling", 100.0),
                                                              ("export_limit", 17250.0)}

    run(body())


def test_unknown_soc_never_leads_to_discharge() -> None:
    async def body() -> None:
        slots = [PlanSlot(start=START + i * SLOT, mode="discharge", discharge_kw=5.0, export_kw=4.0, soc_kwh=10.0,
                          reason_code="discharge_export") for i in range(8)]
        async with rig(soc_frac=0.9) as r:
            r.sim.faults.soc_unavailable = True
            r.loop.set_plan(make_plan(slots))
            await r.run(900)
            r.loop.command("force_export", ttl_s=900, power_kw=8.0)  # even a user asking for it
            await r.run(900)
            assert r.sim.totals.discharge_kwh == 0.0
            assert all(w.value != 2 for w in r.sim.writes if w.register == "mode")
            assert all(row["commanded"]["mode"] == "hold" for row in r.rows)
            assert "soc_unknown" in r.states[-1].alarms
            r.sim.faults.soc_unavailable = False  # SoC comes back: the plan (here the user's export) resumes
            await r.run(60)
            assert r.sim.command.mode == 2

    run(body())


def test_writes_stay_within_the_profile_limits_whatever_the_plan_says() -> None:
    async def body() -> None:
        slots = []
        for i in range(8):
            wild = [("charge_grid_cheap", 55.0, 0.0), ("discharge_export", 0.0, 1e6)][i % 2]
            slots.append(PlanSlot(start=START + i * SLOT, mode="x", charge_kw=wild[1], discharge_kw=wild[2],
                                  import_kw=wild[1], export_kw=wild[2], soc_kwh=10.0, reason_code=wild[0]))
        async with rig(soc_frac=0.5) as r:
            r.loop.set_plan(make_plan(slots))
            await r.run(2 * 3600)
            r.loop.command("force_charge", ttl_s=600, power_kw=99.0)
            await r.run(600)
            powers = [w.value for w in r.sim.writes if w.register == "power_setpoint"]
            assert powers and max(powers) <= 10000.0  # darkstar_sim / SE4 battery: 10 kW
            assert all(w.accepted for w in r.sim.writes)
            clamped = [row for row in r.rows if row["commanded"]["power_kw"] == 10.0]
            assert clamped, "the plan's 55 kW became the device's 10 kW"
        # The simulator is a strict device: an out-of-range write is refused, so the check above can fail.
        async with rig() as r:
            client = AsyncModbusTcpClient("127.0.0.1", port=r.sim.port)
            await client.connect()
            response = await client.write_register(1, 20000, device_id=1)
            client.close()
            assert response.isError() and not r.sim.writes[-1].accepted

    run(body())


def test_soc_at_the_reserve_stops_discharge() -> None:
    async def body() -> None:
        battery = SITE.battery
        slots = [PlanSlot(start=START + 72 * SLOT + i * SLOT, mode="discharge", discharge_kw=6.0, export_kw=5.0,
                          soc_kwh=1.0, reason_code="discharge_export") for i in range(8)]  # evening, no PV
        async with rig(soc_frac=battery.reserve_soc_frac + 0.02, start=START + 72 * SLOT) as r:
            r.loop.set_plan(make_plan(slots))
            await r.run(2 * 3600)
            assert min(r.sim.soc_at_slot_end.values()) >= battery.reserve_soc_kwh - 1e-6
            assert r.sim.command.mode == 0 and r.sim.command.soc_floor_pct == pytest.approx(10.0)
            assert any("reserve_no_discharge" in row["alarms"] for row in r.rows)

    run(body())


def test_pause_shadow_and_quick_action_ttl() -> None:
    async def body() -> None:
        slots = [PlanSlot(start=START + i * SLOT, mode="charge", charge_kw=4.0, import_kw=4.0, soc_kwh=20.0,
                          reason_code="charge_grid_cheap") for i in range(16)]
        async with rig() as r:
            r.loop.set_plan(make_plan(slots))
            r.loop.command("pause")
            await r.run(300)
            assert r.sim.writes == [] and r.states[-1].mode == "paused" and r.states[-1].override.kind == "pause"
            r.loop.command("resume")
            r.loop.command("stop", ttl_s=600)
            await r.run(300)
            assert r.sim.command.mode == 3 and r.rows[-1]["override"] == "stop"
            await r.run(600)  # the TTL ran out: back to the plan
            assert r.sim.command.mode == 1 and r.sim.command.power_w == 4000
            with pytest.raises(ValueError, match="unknown executor command"):
                r.loop.command("explode")
            # force charge to 52 % from 50 %: charges, then holds at the target until the TTL ends
            with pytest.raises(ValueError, match="target_soc_frac must be in"):
                r.loop.command("force_charge", ttl_s=3600, target_soc_frac=1.5)
            r.loop.command("force_charge", ttl_s=3600, target_soc_frac=0.52)
            await r.run(60)
            assert r.sim.command.mode == 1 and r.states[-1].override.target_soc_frac == 0.52
            await r.run(1800)
            assert r.sim.command.mode == 3, "held once the target SoC was reached"
            assert 0.52 <= r.sim.soc_kwh / SITE.battery.capacity_kwh < 0.56
            r.loop.command("cancel")
        async with rig(shadow=True) as r:
            r.loop.set_plan(make_plan(slots))
            await r.run(600)
            assert r.sim.writes == [], "shadow mode writes nothing"
            assert r.rows[0]["commanded"]["mode"] == "charge" and r.states[-1].shadow

    run(body())


def test_threaded_runner_follows_commands_on_an_accelerated_clock() -> None:
    """run() on its own thread and event loop, as the thread-based service runtime will drive it."""
    from services.executor.loop import ThreadedExecutor
    from shared.clock import SimClock

    async def body() -> None:
        clock = SimClock(START, accel=600.0)  # a 10 s tick every 1/60 s of wall time
        sim = InverterSimulator(SITE, DATA, clock=clock, port=0, soc_frac=0.5)
        await sim.start()
        inverter = ModbusInverter(load_profile("darkstar_sim"), ModbusConfig(port=sim.port, timeout_s=0.5),
                                  battery=SITE.battery, clock=clock.now)
        states: list = []
        loop = ExecutorLoop(inverter, ControlSettings.for_device(SITE, inverter), site_id=SITE.site_id, clock=clock,
                            tick_s=10.0, publish_state=states.append)
        runner = ThreadedExecutor(loop)
        runner.start()
        try:
            slots = [PlanSlot(start=START + i * SLOT, mode="charge", charge_kw=3.0, import_kw=3.0, soc_kwh=20.0,
                              reason_code="charge_grid_cheap") for i in range(40)]
            loop.set_plan(make_plan(slots))
            for _ in range(100):
                await asyncio.sleep(0.02)
                if sim.command.mode == 1:
                    break
            assert sim.command.mode == 1 and sim.command.power_w == 3000
            loop.command("force_export", ttl_s=3600, power_kw=2.0)
            for _ in range(100):
                await asyncio.sleep(0.02)
                if sim.command.mode == 2:
                    break
            assert sim.command.mode == 2 and sim.command.power_w == 2000
            assert states and states[-1].override is not None and states[-1].override.kind == "force_export"
        finally:
            await asyncio.get_running_loop().run_in_executor(None, runner.stop)
            await sim.stop()

    run(body())


def test_a_device_refusing_a_write_gets_the_safe_mode() -> None:
    async def body() -> None:
        slots = [PlanSlot(start=START + i * SLOT, mode="discharge", discharge_kw=4.0, export_kw=3.0, soc_kwh=10.0,
                          reason_code="discharge_export") for i in range(8)]
        async with rig(soc_frac=0.8) as r:
            r.sim.faults.refuse_modes = {2}  # e.g. forced discharge disabled in the installer menu
            r.loop.set_plan(make_plan(slots))
            reports = await r.run(90)
            assert not reports[0].result.ok and "refused" in (reports[0].error or "")
            assert r.rows[0]["success"] is False
            assert reports[1].result.ok and reports[1].result.applied.mode == "self_consumption"
            assert r.sim.command.mode == 0 and "safe_mode" in r.loop.alarms()
            assert r.sim.totals.discharge_kwh <= 4.0 * 90 / 3600 + 1e-9  # at most self-consumption's own draw
            r.sim.faults.refuse_modes = set()
            await r.run(400)  # after retry_refused_s the plan is tried again and accepted
            assert r.sim.command.mode == 2 and "safe_mode" not in r.loop.alarms()

    run(body())


def test_rtu_framing_over_tcp_and_a_missing_serial_port() -> None:
    from pymodbus import FramerType

    from services.executor.inverter import Intent, InverterError

    async def body() -> None:
        clock = ManualClock(START)
        sim = InverterSimulator(SITE, DATA, clock=clock, port=0, soc_frac=0.42, framer=FramerType.RTU)
        await sim.start()
        try:
            inverter = ModbusInverter(load_profile("darkstar_sim"),
                                      ModbusConfig(transport="rtu_over_tcp", port=sim.port, timeout_s=0.5),
                                      battery=SITE.battery, clock=clock.now)
            t = await inverter.read_telemetry()
            assert t.soc_frac == pytest.approx(0.42)
            assert (await inverter.apply(Intent("hold", soc_floor_frac=0.1, soc_ceiling_frac=1.0))).verified
            assert sim.command.mode == 3
            await inverter.close()
        finally:
            await sim.stop()
        serial = ModbusInverter(load_profile("darkstar_sim"),
                                ModbusConfig(transport="rtu", serial_port="/dev/ttyDOES_NOT_EXIST", retries=0),
                                battery=SITE.battery)
        with pytest.raises(InverterError, match="ttyDOES_NOT_EXIST"):
            await serial.read_telemetry()

    run(body())


def test_import_guard_runs_in_the_loop_on_live_telemetry() -> None:
    """SE4 (capacity tariff): a hold slot planned with no import discharges what the house draws
    above the margin."""
    async def body() -> None:
        slots = [PlanSlot(start=START + i * SLOT, mode="idle", import_kw=0.0, soc_kwh=17.1,
                          reason_code="hold_for_later") for i in range(8)]
        async with rig(site=SITE_GUARDED) as r:
            r.loop.set_plan(make_plan(slots))
            await r.run(600)
            guarded = [row for row in r.rows if "import guard" in row["reason"]]
            assert guarded and r.sim.command.mode == 2, "the battery discharges instead of holding"
            margin = SITE_GUARDED.executor.import_guard_margin_kw
            for row in r.rows[2:]:
                assert row["measured"]["grid_kw"] <= margin + 0.05
                assert row["commanded"]["power_kw"] <= SITE_GUARDED.battery.max_discharge_kw

    run(body())
