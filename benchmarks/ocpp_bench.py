"""Benchmark: the executor's OCPP 1.6J central system (``ocpp`` library over ``websockets``, 127.0.0.1).

    uv run python benchmarks/ocpp_bench.py [--calls 300] [--charge-points 50] [--seconds 20] [--json]

1. Command round trip: ``OcppCharger.apply`` (a SetChargingProfile with a 4-slot TxProfile, schema
   validation on both ends) to a simulated charge point until its answer; and a whole controller
   tick after a plan change (decide + SetChargingProfile + answer). Median and p95.
2. Many charge points: the central system in its own process (so its CPU and memory are its own),
   ``--charge-points`` simulated charge points (same library) in this process, each with basic
   auth. Phase "realistic": each sends MeterValues every 10 s and a Heartbeat every 60 s, as a
   wallbox configured by Darkstar does. Phase "flood": each sends MeterValues back to back; the
   rate is the machine's, shared with the clients. Reported: messages/s handled, the central
   system's CPU (% of one core, from /proc) and resident memory before and after the connections.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import platform
import statistics
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ocpp.v16 import call  # noqa: E402

from services.demo.chargepoint import SimCar, SimChargePoint  # noqa: E402
from services.executor.chargers.base import ChargeCommand  # noqa: E402
from services.executor.chargers.controller import ChargerController  # noqa: E402
from services.executor.chargers.ocpp import CentralSystem, OcppCharger  # noqa: E402
from shared.clock import ManualClock  # noqa: E402
from shared.config import ChargerConfig, EVConfig, OcppServerConfig  # noqa: E402
from shared.contracts import CostBreakdown, PlanMsg, PlanSlot, SolverStats  # noqa: E402

PASSWORD = "benchmark-only"


def charger(identity: str) -> ChargerConfig:
    return ChargerConfig(type="ocpp", identity=identity, password=PASSWORD)


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def round_trips(calls: int) -> dict[str, float]:
    ev = EVConfig(name="car", max_charge_kw=11.0, charger=charger("cp-0").model_dump())
    system = CentralSystem(OcppServerConfig(host="127.0.0.1", port=0), {"cp-0": ev.charger})
    await system.start()
    start = datetime(2026, 1, 12, 22, 0, tzinfo=timezone.utc)
    clock = ManualClock(start)
    cp = SimChargePoint("cp-0", f"ws://127.0.0.1:{system.port}/ocpp/cp-0", PASSWORD, car=SimCar(soc_frac=0.2),
                        clock=clock.now, meter_interval_s=1e9)
    await cp.connect()
    await cp.plug()
    backend = OcppCharger("car", ev.charger, system, clock=clock.now)
    until = start + timedelta(hours=1)
    schedule = tuple((start + timedelta(minutes=15 * i), 10.0) for i in range(1, 4))
    await backend.apply(ChargeCommand(16.0, 11.0, until=until, schedule=schedule))  # RemoteStart
    await asyncio.sleep(0.2)
    apply_s = []
    for i in range(calls):
        t0 = time.perf_counter()
        await backend.apply(ChargeCommand(6.0 + i % 10, 4.0, until=until, schedule=schedule))
        apply_s.append(time.perf_counter() - t0)
    plans = [PlanMsg(site_id="bench", created_at=start + timedelta(seconds=i), valid_until=until,
                     slots=[PlanSlot(start=start + timedelta(minutes=15 * k), mode="self_consumption", soc_kwh=1.0,
                                     ev_kw=4.2 + (i % 2) * 4.0) for k in range(4)],
                     cost=CostBreakdown(currency="EUR", import_cost=0, export_revenue=0, total_cost=0),
                     solver=SolverStats(status="optimal")) for i in range(calls)]
    current: list[Any] = [None]
    controller = ChargerController(ev, backend, clock=clock, plan=lambda: current[0])
    tick_s = []
    for plan in plans:
        current[0] = plan
        t0 = time.perf_counter()
        await controller.tick()
        tick_s.append(time.perf_counter() - t0)
    await cp.disconnect()
    await system.stop()
    return {"apply_median_ms": 1000 * statistics.median(apply_s), "apply_p95_ms": 1000 * pct(apply_s, 0.95),
            "tick_median_ms": 1000 * statistics.median(tick_s), "tick_p95_ms": 1000 * pct(tick_s, 0.95)}


def serve(n: int, port_q: Any, stop_ev: Any, count_q: Any) -> None:
    """The central system alone in this process."""

    async def run() -> None:
        chargers = {f"cp-{i}": charger(f"cp-{i}") for i in range(n)}
        system = CentralSystem(OcppServerConfig(host="127.0.0.1", port=0), chargers)
        await system.start()
        port_q.put(system.port)
        while not stop_ev.is_set():
            await asyncio.sleep(0.1)
            count_q.put(system.messages_in) if count_q.empty() else None
        await system.stop()

    asyncio.run(run())


def proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def many(n: int, seconds: float) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    port_q, count_q, stop_ev = ctx.Queue(), ctx.Queue(), ctx.Event()
    proc = ctx.Process(target=serve, args=(n, port_q, stop_ev, count_q), daemon=True)
    proc.start()
    port = port_q.get(timeout=60)
    await asyncio.sleep(0.5)
    rss_idle = proc_rss_mb(proc.pid)
    cps = [SimChargePoint(f"cp-{i}", f"ws://127.0.0.1:{port}/ocpp/cp-{i}", PASSWORD, car=SimCar(soc_frac=0.3),
                          meter_interval_s=1e9) for i in range(n)]
    t0 = time.perf_counter()
    await asyncio.gather(*(cp.connect() for cp in cps))
    connect_s = time.perf_counter() - t0
    await asyncio.gather(*(cp.plug() for cp in cps))
    await asyncio.sleep(1.0)
    rss_connected = proc_rss_mb(proc.pid)

    async def realistic(cp: SimChargePoint, until: float, offset: float) -> int:
        sent = 0
        await asyncio.sleep(offset)
        while time.perf_counter() < until:
            await cp.send_meter_values()
            sent += 1
            if sent % 6 == 0:
                await cp.call(call.Heartbeat())
                sent += 1
            await asyncio.sleep(10.0)
        return sent

    async def flood(cp: SimChargePoint, until: float) -> int:
        sent = 0
        while time.perf_counter() < until:
            await cp.send_meter_values()
            sent += 1
        return sent

    phases = {}
    for name in ("realistic", "flood"):
        cpu0, w0 = proc_cpu_s(proc.pid), time.perf_counter()
        until = w0 + seconds
        if name == "realistic":
            sent = await asyncio.gather(*(realistic(cp, until, 10.0 * i / n) for i, cp in enumerate(cps)))
        else:
            sent = await asyncio.gather(*(flood(cp, until) for cp in cps))
        wall = time.perf_counter() - w0
        cpu = proc_cpu_s(proc.pid) - cpu0
        phases[name] = {"messages": sum(sent), "messages_per_s": sum(sent) / wall,
                        "cs_cpu_pct_of_one_core": 100 * cpu / wall, "cs_rss_mb": proc_rss_mb(proc.pid)}
    for cp in cps:
        await cp.disconnect()
    stop_ev.set()
    proc.join(10)
    return {"charge_points": n, "connect_all_s": connect_s, "cs_rss_idle_mb": rss_idle,
            "cs_rss_connected_mb": rss_connected, **phases}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--charge-points", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rt = asyncio.run(round_trips(args.calls))
    fleet = asyncio.run(many(args.charge_points, args.seconds))
    result = {"round_trip": {k: round(v, 2) for k, v in rt.items()}, "fleet": fleet,
              "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
              "load_avg": os.getloadavg()[0]}
    if args.json:
        print(json.dumps(result, default=lambda v: round(v, 2)))
        return
    print(f"SetChargingProfile round trip: median {rt['apply_median_ms']:.1f} ms, p95 {rt['apply_p95_ms']:.1f} ms")
    print(f"controller tick after a plan change: median {rt['tick_median_ms']:.1f} ms, p95 {rt['tick_p95_ms']:.1f} ms")
    print(f"{fleet['charge_points']} charge points connected in {fleet['connect_all_s']:.2f} s; central system RSS "
          f"{fleet['cs_rss_idle_mb']:.0f} MB idle, {fleet['cs_rss_connected_mb']:.0f} MB connected")
    for name in ("realistic", "flood"):
        p = fleet[name]
        print(f"{name}: {p['messages_per_s']:.0f} messages/s, central system CPU {p['cs_cpu_pct_of_one_core']:.0f} % "
              f"of one core, RSS {p['cs_rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()
