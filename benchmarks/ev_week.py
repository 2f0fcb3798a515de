"""Benchmark: the demo car over a simulated week, planned by Kepler and driven over real OCPP.

    uv run python benchmarks/ev_week.py [--start 2025-08-18T12:00+02:00] [--days 7] [--json] [--plot ev_week.png]

The demo's car (``services/demo/ev.py``: plugs in 18:00, leaves 07:00 wanting 80 %, uses 18 kWh a
day) on the simulated OCPP charge point, connected over a websocket on 127.0.0.1 to the executor's
central system; the executor's charger controller ticks every ``--step-s`` simulated seconds.
The planner (``solve_plan``) replans every ``--replan-minutes`` and when the car plugs in or out,
with the SE4 home's recorded load, PV and prices as a perfect forecast and the car's state as the
executor publishes it (``ev_plugged``, ``ev_target_kwh`` from the SoC). Reported: the SoC at each
departure against the 80 % target, the EV energy and its import cost, and the cost of charging at
full power from plug-in ("dumb" charging) for the same sessions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402

from services.demo.chargepoint import SimCar, SimChargePoint  # noqa: E402
from services.demo.ev import TARGET_SOC_FRAC, CarDay, demo_ev  # noqa: E402
from services.executor.chargers.controller import ChargerController  # noqa: E402
from services.executor.chargers.ocpp import CentralSystem, OcppCharger  # noqa: E402
from shared.clock import ManualClock  # noqa: E402
from shared.config import OcppServerConfig, load_site_config  # noqa: E402
from shared.optimize import solve_plan  # noqa: E402
from shared.optimize.inputs import inputs_from_recorded  # noqa: E402
from shared.optimize.messages import plan_message  # noqa: E402
from shared.sitedata import load_site_data  # noqa: E402

SITE_PATH = ROOT / "examples" / "se4-home.yaml"
DATA_PATH = ROOT / "examples" / "data" / "se4_home_2025-07_2025-10.csv.gz"
PASSWORD = "benchmark-only"


async def week(args: argparse.Namespace) -> dict[str, Any]:
    base = load_site_config(SITE_PATH, environ={})
    ev = demo_ev(PASSWORD)
    # The car is what is measured: no home battery, plans valid past the next replan.
    site = base.model_copy(update={"evs": [ev], "battery": None,
                                   "planner": base.planner.model_copy(update={"plan_validity_minutes": 90})})
    frame = load_site_data(DATA_PATH).frame
    start = pd.Timestamp(args.start).tz_convert("UTC").to_pydatetime()
    clock = ManualClock(start)
    system = CentralSystem(OcppServerConfig(host="127.0.0.1", port=0), {ev.charger.identity: ev.charger})
    await system.start()
    car = SimCar(battery_kwh=ev.battery_kwh, soc_frac=0.45, max_kw=ev.max_charge_kw, efficiency=ev.charge_efficiency)
    cp = SimChargePoint(ev.charger.identity, f"ws://127.0.0.1:{system.port}/ocpp/{ev.charger.identity}", PASSWORD,
                        car=car, clock=clock.now, meter_interval_s=1e9)
    await cp.connect()
    day = CarDay(car)
    plan: list[Any] = [None]
    context: dict[str, Any] = {}
    controller = ChargerController(
        ev, OcppCharger(ev.name, ev.charger, system, clock=clock.now), clock=clock, plan=lambda: plan[0],
        context=context.get, publish_context=context.__setitem__)
    rows: list[dict[str, Any]] = []
    solves: list[float] = []
    last_plan_at: datetime | None = None
    planned_context: tuple[Any, ...] = ()
    steps = int(args.days * 86400 / args.step_s)
    wall0 = time.perf_counter()
    for step in range(steps):
        now = clock.now()
        await day.follow(cp, now.astimezone(site.tz))
        await asyncio.sleep(0.002)
        ctx = (context.get("ev_plugged"),)  # the live planner also replans on each ev_target_kwh step (1 kWh)
        if last_plan_at is None or (now - last_plan_at).total_seconds() >= args.replan_minutes * 60 or ctx != planned_context:
            inputs = inputs_from_recorded(frame, site, now, 48, ev_plugged=context.get("ev_plugged"),
                                          ev_target_kwh=context.get("ev_target_kwh"))
            t0 = time.perf_counter()
            result = solve_plan(inputs, site)
            solves.append(time.perf_counter() - t0)
            plan[0] = plan_message(result, site, created_at=now, prices=inputs.prices)
            last_plan_at, planned_context = now, ctx
        decision = await controller.tick()
        await asyncio.sleep(0.002)
        rows.append({"ts": now, "soc": car.soc_frac, "power_kw": cp.power_kw, "plugged": cp.plugged,
                     "limit_kw": decision.command.limit_kw if decision.command else None, "source": decision.source})
        clock.advance(args.step_s)
        await cp.tick()
        if step and step % int(86400 / args.step_s) == 0:
            print(f"  day {step // int(86400 / args.step_s)}: {time.perf_counter() - wall0:.0f} s wall", file=sys.stderr)
    wall_s = time.perf_counter() - wall0
    await cp.disconnect()
    await system.stop()
    return {"rows": rows, "departures": day.departures, "solves": solves, "wall_s": wall_s, "site": site,
            "frame": frame, "messages": system.messages_in}


def prices_for(frame: pd.DataFrame, site: Any, index: pd.DatetimeIndex) -> pd.Series:
    from shared.tariff import price_curve_from_data

    window = frame.reindex(index.floor("15min").unique())
    curve = price_curve_from_data(window, site, allow_missing=True)
    return curve["import_price_per_kwh"]


def dumb_cost(sessions: list[tuple[pd.Timestamp, float]], prices: pd.Series, max_kw: float, eff: float,
              battery_kwh: float) -> float:
    """Charging at full power from plug-in until 80 %: the cost of the same energy with no plan."""
    total = 0.0
    for plug_ts, soc in sessions:
        need_kwh = max(0.0, TARGET_SOC_FRAC - soc) * battery_kwh / eff
        t = plug_ts.floor("15min")
        while need_kwh > 1e-9:
            kwh = min(need_kwh, max_kw * 0.25)
            total += kwh * float(prices.get(t, prices.iloc[-1]))
            need_kwh -= kwh
            t += pd.Timedelta(minutes=15)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--start", default="2025-08-18T12:00+02:00")
    parser.add_argument("--days", type=float, default=7.0)
    parser.add_argument("--step-s", type=float, default=120.0)
    parser.add_argument("--replan-minutes", type=float, default=60.0)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--plot", default=None)
    args = parser.parse_args()
    out = asyncio.run(week(args))
    site, frame = out["site"], out["frame"]
    df = pd.DataFrame(out["rows"]).set_index("ts")
    df.index = pd.DatetimeIndex(df.index)
    prices = prices_for(frame, site, df.index)
    df["price"] = prices.reindex(df.index.floor("15min")).to_numpy()
    hours = args.step_s / 3600.0
    ev_kwh = float((df["power_kw"] * hours).sum())
    cost = float((df["power_kw"] * hours * df["price"]).sum())
    # sessions: plug-in moments and the SoC the car came home with
    plugged = df["plugged"].astype(bool)
    starts = df.index[plugged & ~plugged.shift(1, fill_value=False)]
    sessions = [(pd.Timestamp(ts), float(df.loc[ts, "soc"])) for ts in starts]
    ev = site.evs[0]
    dumb = dumb_cost(sessions, prices, ev.max_charge_kw, ev.charge_efficiency, ev.battery_kwh)
    departures = [{"local": ts.strftime("%a %Y-%m-%d %H:%M"), "soc_frac": round(soc, 3),
                   "gap_pct": round(100 * (soc - TARGET_SOC_FRAC), 1)} for ts, soc in out["departures"]]
    result = {
        "start": args.start, "days": args.days, "step_s": args.step_s, "replan_minutes": args.replan_minutes,
        "target_soc_frac": TARGET_SOC_FRAC, "departures": departures,
        "departure_soc_min_frac": min((d["soc_frac"] for d in departures), default=None),
        "ev_kwh": round(ev_kwh, 2), "ev_import_cost": round(cost, 2), "dumb_charging_cost": round(dumb, 2),
        "currency": site.tariff.currency, "plans": len(out["solves"]),
        "solve_median_s": round(sorted(out["solves"])[len(out["solves"]) // 2], 3),
        "ocpp_messages_received": out["messages"], "wall_s": round(out["wall_s"], 1),
        "machine": f"{platform.machine()}, {platform.python_version()}",
    }
    if args.plot:
        plot(df, out["departures"], args.plot, site)
    if args.json:
        print(json.dumps(result))
        return
    for d in departures:
        print(f"departure {d['local']}: SoC {100 * d['soc_frac']:.1f} % (target 80 %, {d['gap_pct']:+.1f} pts)")
    print(f"EV {ev_kwh:.1f} kWh for {cost:.2f} {site.tariff.currency}; charging at full power on plug-in: "
          f"{dumb:.2f}; {len(out['solves'])} plans (median solve {result['solve_median_s']} s); "
          f"{out['messages']} OCPP messages; {out['wall_s']:.0f} s wall")


def plot(df: pd.DataFrame, departures: list[tuple[datetime, float]], path: str, site: Any) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    local = df.index.tz_convert(site.tz)
    fig, (ax_soc, ax_kw, ax_price) = plt.subplots(3, 1, figsize=(12, 7.5), sharex=True,
                                                  gridspec_kw={"height_ratios": [2, 1.4, 1]})
    ax_soc.plot(local, 100 * df["soc"], color="tab:green", label="car SoC")
    ax_soc.axhline(100 * TARGET_SOC_FRAC, color="tab:red", ls="--", lw=1, label="target at departure (80 %)")
    for ts, soc in departures:
        ax_soc.plot([pd.Timestamp(ts)], [100 * soc], "o", color="tab:red")
        ax_soc.annotate(f"{100 * soc:.0f} %", (pd.Timestamp(ts), 100 * soc), textcoords="offset points",
                        xytext=(4, 6), fontsize=8)
    ax_soc.set_ylabel("SoC %")
    ax_soc.set_ylim(0, 100)
    ax_soc.legend(loc="lower left", fontsize=8)
    ax_soc.set_title("Demo car over a week: Kepler plans, the executor drives the wallbox over OCPP 1.6J")
    home = df["plugged"].astype(bool)
    ax_kw.fill_between(local, 0, 11.5, where=home.to_numpy(), color="0.92", step="post", label="plugged in")
    ax_kw.step(local, df["power_kw"], where="post", color="tab:blue", label="measured EV kW")
    ax_kw.set_ylabel("kW")
    ax_kw.legend(loc="upper left", fontsize=8)
    ax_price.step(local, df["price"], where="post", color="tab:orange")
    ax_price.set_ylabel(f"import {site.tariff.currency}/kWh")
    ax_price.set_xlabel(f"local time ({site.location.timezone})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
