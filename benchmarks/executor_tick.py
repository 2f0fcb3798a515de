"""Benchmark: executor tick latency over loopback Modbus TCP, and a simulated day at full speed.

    uv run python benchmarks/executor_tick.py [--ticks 500] [--tick-s 10] [--json]

1. Tick latency: the inverter simulator (darkstar_sim profile, SE4 home's recorded data) on
   127.0.0.1; each measured tick reads telemetry (2 block reads), decides, writes the changed
   registers and reads them back. A quick action alternating 3/6 kW forces a write every tick.
   Reported: median and p95 of the whole tick, and of ticks without a write. Target: <= 100 ms.
2. A simulated 24-hour day at full acceleration: manual simulated clock, one tick every
   ``--tick-s`` simulated seconds (10 s = 8640 ticks), a plan cycling through grid charge,
   export, hold and self-consumption. Target: <= 60 s wall.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from services.demo.simulator import InverterSimulator  # noqa: E402
from services.executor.control import ControlSettings  # noqa: E402
from services.executor.loop import ExecutorLoop  # noqa: E402
from services.executor.modbus.profile import load_profile  # noqa: E402
from services.executor.modbus.transport import ModbusInverter  # noqa: E402
from shared.clock import ManualClock  # noqa: E402
from shared.config import ModbusConfig, load_site_config  # noqa: E402
from shared.contracts import CostBreakdown, PlanMsg, PlanSlot, SolverStats  # noqa: E402
from shared.sitedata import load_site_data  # noqa: E402

SITE_PATH = ROOT / "examples" / "se4-home.yaml"
DATA_PATH = ROOT / "examples" / "data" / "se4_home_2025-07_2025-10.csv.gz"
START = datetime(2025, 7, 14, 0, 0, tzinfo=timezone.utc)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def day_plan(site_id: str) -> PlanMsg:
    pattern = [("charge_grid_cheap", 6.0, 0.0), ("discharge_export", 0.0, 5.0), ("hold_for_later", 0.0, 0.0),
               ("charge_pv_surplus", 0.0, 0.0)]
    slots = []
    for i in range(96):
        code, charge, discharge = pattern[(i // 8) % len(pattern)]
        slots.append(PlanSlot(start=START + timedelta(minutes=15 * i), mode="x", charge_kw=charge, discharge_kw=discharge,
                              import_kw=charge, export_kw=discharge, soc_kwh=17.0, reason_code=code))
    return PlanMsg(site_id=site_id, created_at=START, valid_until=START + timedelta(hours=25), slots=slots,
                   cost=CostBreakdown(currency="EUR", import_cost=0, export_revenue=0, total_cost=0),
                   solver=SolverStats(status="optimal"))


async def build(site, data):  # type: ignore[no-untyped-def]
    clock = ManualClock(START)
    sim = InverterSimulator(site, data, clock=clock, port=0, soc_frac=0.5)
    await sim.start()
    inverter = ModbusInverter(load_profile("darkstar_sim"), ModbusConfig(port=sim.port, timeout_s=1.0),
                              battery=site.battery, max_export_kw=site.grid.max_export_kw, clock=clock.now)
    loop = ExecutorLoop(inverter, ControlSettings.for_device(site, inverter), site_id=site.site_id, clock=clock)
    return clock, sim, inverter, loop


async def tick_latency(site, data, ticks: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    clock, sim, inverter, loop = await build(site, data)
    loop.set_plan(day_plan(site.site_id))
    with_write, without_write = [], []
    try:
        for i in range(ticks):
            loop.command("force_charge", ttl_s=600, power_kw=3.0 if i % 2 else 6.0)
            t0 = time.perf_counter()
            report = await loop.tick()
            with_write.append(time.perf_counter() - t0)
            assert report.result is not None and report.result.verified
            clock.advance(10)
        loop.command("resume")
        await loop.tick()
        for _ in range(ticks):
            clock.advance(10)
            t0 = time.perf_counter()
            report = await loop.tick()
            without_write.append(time.perf_counter() - t0)
    finally:
        await inverter.close()
        await sim.stop()
    return {
        "tick_with_write_median_ms": statistics.median(with_write) * 1000,
        "tick_with_write_p95_ms": percentile(with_write, 0.95) * 1000,
        "tick_read_only_median_ms": statistics.median(without_write) * 1000,
        "tick_read_only_p95_ms": percentile(without_write, 0.95) * 1000,
        "modbus_requests": inverter.requests,
    }


async def simulated_day(site, data, tick_s: float) -> dict[str, float]:  # type: ignore[no-untyped-def]
    clock, sim, inverter, loop = await build(site, data)
    loop.set_plan(day_plan(site.site_id))
    observations: list = []
    loop.publish_observation = observations.append
    n = int(24 * 3600 / tick_s)
    t0 = time.perf_counter()
    try:
        for _ in range(n):
            await loop.tick()
            clock.advance(tick_s)
        sim.advance()
        await loop.flush_observation()
    finally:
        await inverter.close()
        await sim.stop()
    wall = time.perf_counter() - t0
    t = sim.totals
    return {
        "day_wall_s": wall,
        "day_ticks": n,
        "day_writes": loop.writes,
        "day_observations": len(observations),
        "day_import_kwh": t.import_kwh,
        "day_export_kwh": t.export_kwh,
        "day_charge_kwh": t.charge_kwh,
        "day_discharge_kwh": t.discharge_kwh,
        "day_energy_balance_error_kwh": abs(
            (t.pv_kwh + t.import_kwh + t.discharge_kwh) - (t.load_kwh + t.export_kwh + t.charge_kwh + t.water_kwh)
        ),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ticks", type=int, default=500)
    parser.add_argument("--tick-s", type=float, default=10.0, help="simulated seconds per tick for the day run")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    site = load_site_config(SITE_PATH)
    data = load_site_data(DATA_PATH)
    figures: dict[str, float | str] = {
        "machine": f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}, loopback TCP",
    }
    figures.update(asyncio.run(tick_latency(site, data, args.ticks)))
    figures.update(asyncio.run(simulated_day(site, data, args.tick_s)))
    if args.json:
        print(json.dumps(figures))
        return 0
    print(f"machine: {figures['machine']}")
    print(f"tick (read, decide, write, read back): median {figures['tick_with_write_median_ms']:.1f} ms, "
          f"p95 {figures['tick_with_write_p95_ms']:.1f} ms  (target <= 100 ms)")
    print(f"tick without a write (read, decide):   median {figures['tick_read_only_median_ms']:.1f} ms, "
          f"p95 {figures['tick_read_only_p95_ms']:.1f} ms")
    print(f"simulated 24 h day, {figures['day_ticks']} ticks of {args.tick_s:g} s: {figures['day_wall_s']:.1f} s wall "
          f"(target <= 60 s), {figures['day_writes']} writes, {figures['day_observations']} observations")
    print(f"  energy: import {figures['day_import_kwh']:.2f} kWh, export {figures['day_export_kwh']:.2f} kWh, "
          f"charge {figures['day_charge_kwh']:.2f} kWh, discharge {figures['day_discharge_kwh']:.2f} kWh, "
          f"balance error {figures['day_energy_balance_error_kwh']:.2e} kWh")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
