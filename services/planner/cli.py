"""``darkstar plan``: plan from recorded data, or run the reference benchmark.

    darkstar plan --site SITE.yaml --data FILE.csv --start ISO --hours 48 [--soc-kwh X] [--json] [--plot out.png]
    darkstar plan --benchmark [--json] [--days N] [--no-ev | --negative]

Exit code: 0 a plan proven within ``planner.mip_gap`` (status ``optimal``) or ``relaxed``;
1 a fallback plan; 2 bad input; 3 a ``feasible`` plan the time limit stopped before it was
proven (its proven gap is ``mip_gap``).
The recorded load and PV serve as the forecast. With ``--json`` one JSON document goes to
stdout and nothing else; progress and warnings go to stderr.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

PROJECT_DIR = Path(__file__).resolve().parents[2]
SLOT_KEYS = ("charge_kw", "discharge_kw", "import_kw", "export_kw", "soc_kwh", "water_kw", "ev_kw")
EXTRA_SLOT_KEYS = ("load_kw", "pv_kw", "pv_curtail_kw", "mode", "reason_code", "soc_value_per_kwh", "bus_value_per_kwh")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--site", type=Path, help="site YAML file")
    parser.add_argument("--data", type=Path, help="recorded site data CSV (.gz)")
    parser.add_argument("--start", help="first slot, ISO 8601 with UTC offset (e.g. 2025-08-05T00:00+02:00)")
    parser.add_argument("--hours", type=float, default=48.0, help="horizon (ends earlier at the last published price)")
    parser.add_argument("--soc-kwh", type=float, default=None, help="battery energy at the start (default: reserve)")
    parser.add_argument("--risk", choices=("cautious", "balanced", "bold"), default=None)
    parser.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    parser.add_argument("--plot", type=Path, default=None, help="write a PNG of the plan")
    parser.add_argument("--time-limit", type=float, default=None, help="solver time limit in seconds")
    parser.add_argument("--benchmark", action="store_true", help="run the reference benchmark problem")
    parser.add_argument("--days", type=int, default=20, help="benchmark: number of start days (>= 20 for the report)")
    parser.add_argument("--no-ev", action="store_true",
                        help="benchmark: the example site as it is (heater + capacity tariff, no EV)")
    parser.add_argument("--negative", action="store_true",
                        help="benchmark: days with negative import prices (real SE3/SE4 2023-2024 prices)")


def _num(value: float) -> float | None:
    return None if value is None or (isinstance(value, float) and not math.isfinite(value)) else round(float(value), 6)


def plan_document(result: Any, site: Any) -> dict[str, Any]:
    """The JSON document of a plan (keys with units; money in the site currency)."""
    cost = result.cost
    slots = []
    frame = result.slots
    for ts, row in frame.iterrows():
        item: dict[str, Any] = {"start": ts.isoformat()}
        for key in SLOT_KEYS + EXTRA_SLOT_KEYS:
            if key in frame.columns:
                v = row[key]
                item[key] = v if isinstance(v, str) else _num(v)
        slots.append(item)
    return {
        "status": result.status,
        "fallback": result.fallback,
        "currency": site.tariff.currency,
        "objective": _num(result.stats.objective),
        "total_cost": _num(cost.total),
        "energy_cost": _num(cost.energy_cost),
        "import_cost": _num(cost.import_cost),
        "export_revenue": _num(cost.export_revenue),
        "wear_cost": _num(cost.wear_cost),
        "capacity_cost": _num(cost.capacity_cost),
        "water_start_cost": _num(cost.water_start_cost),
        "penalties": _num(cost.penalties),
        "import_kwh": _num(cost.import_kwh),
        "export_kwh": _num(cost.export_kwh),
        "objective_terms": {k: _num(v) for k, v in result.objective_terms.items()},
        "terminal_value_per_kwh": _num(result.terminal_value_per_kwh),
        "build_s": _num(result.stats.build_s),
        "solve_s": _num(result.stats.solve_s),
        "dual_s": _num(result.stats.dual_s),
        "mip_gap": _num(result.stats.mip_gap),
        "solver_status": result.stats.status,
        "variables": result.stats.variables,
        "constraints": result.stats.constraints,
        "binaries": result.stats.binaries,
        "risk": result.strategy.risk,
        "reserve_kwh": _num(result.strategy.reserve_kwh),
        "reason": result.reason,
        "mode_changes_per_day": result.mode_changes_per_day,
        "binding_limits": [{k: (_num(v) if isinstance(v, float) else v) for k, v in b.items()} for b in result.binding],
        "messages": result.messages,
        "slots": slots,
    }


def _summary(result: Any, site: Any, inputs: Any) -> str:
    cur = site.tariff.currency
    c = result.cost
    f = result.slots
    local = f.index.tz_convert(site.tz)
    lines = [
        f"plan {local[0]:%Y-%m-%d %H:%M} .. {(local[-1] + pd.Timedelta(minutes=15)):%Y-%m-%d %H:%M} {site.tz.key}"
        f" ({len(f)} slots), status {result.status}{' (FALLBACK)' if result.fallback else ''}"
        + (f" (not proven optimal: {result.stats.status}, proven gap {result.stats.mip_gap * 100:.3f} %)"
           if result.status == "feasible" else ""),
        f"reason: {result.reason}",
        f"cost: total {c.total:.3f} {cur} = import {c.import_cost:.3f} - export {c.export_revenue:.3f}"
        f" + wear {c.wear_cost:.3f} + capacity {c.capacity_cost:.3f} + water starts {c.water_start_cost:.3f}"
        f" + penalties {c.penalties:.3f}",
        f"energy: import {c.import_kwh:.1f} kWh, export {c.export_kwh:.1f} kWh, "
        f"charge {f['charge_kw'].sum() * inputs.slot_hours:.1f} kWh, discharge {f['discharge_kw'].sum() * inputs.slot_hours:.1f} kWh, "
        f"water {f['water_kw'].sum() * inputs.slot_hours:.1f} kWh, EV {f['ev_kw'].sum() * inputs.slot_hours:.1f} kWh",
        f"soc: {f['soc_kwh'].iloc[0]:.1f} kWh after the first slot, {f['soc_kwh'].iloc[-1]:.1f} kWh at the end "
        f"(valued at {result.terminal_value_per_kwh:.3f} {cur}/kWh)",
        f"solver: build {result.stats.build_s * 1000:.0f} ms, solve {result.stats.solve_s * 1000:.0f} ms, "
        f"gap {result.stats.mip_gap * 100:.3f} %, {result.stats.binaries} binaries, {result.stats.variables} variables",
        "mode changes per day: " + ", ".join(f"{d} {n}" for d, n in result.mode_changes_per_day.items()),
    ]
    if result.binding:
        lines.append("binding limits: " + "; ".join(
            f"{b['limit']} ({b['binding_count']} slots, {b['value']:+.3f} {cur} per unit)" for b in result.binding[:5]))
    lines.append("next hours:")
    for t in range(min(16, len(f))):
        r = f.iloc[t]
        lines.append(
            f"  {local[t]:%H:%M} {r['mode']:<9} charge {r['charge_kw']:5.2f} discharge {r['discharge_kw']:5.2f} "
            f"import {r['import_kw']:5.2f} export {r['export_kw']:5.2f} soc {r['soc_kwh']:5.1f} "
            f"water {r['water_kw']:3.1f} ev {r['ev_kw']:5.2f}  {r['reason_code']}"
        )
    lines += [f"note: {m}" for m in result.messages]
    return "\n".join(lines)


def _run_plan(args: argparse.Namespace) -> int:
    from shared.config import ConfigError, load_site_config
    from shared.optimize import solve_plan
    from shared.optimize.inputs import PlanInputError, inputs_from_recorded
    from shared.sitedata import SiteDataError, load_site_data
    from shared.tariff import PriceError

    missing = [name for name in ("site", "data", "start") if getattr(args, name) is None]
    if missing:
        print("darkstar plan: missing " + ", ".join(f"--{m}" for m in missing) + " (or use --benchmark)", file=sys.stderr)
        return 2
    try:
        site = load_site_config(args.site)
        data = load_site_data(args.data)
        if site.battery is None and args.soc_kwh is not None:
            print("darkstar plan: --soc-kwh given but the site has no battery", file=sys.stderr)
            return 2
        inputs = inputs_from_recorded(data.frame, site, args.start, args.hours, soc_kwh=args.soc_kwh, risk=args.risk)
    except (ConfigError, SiteDataError, PlanInputError, PriceError, ValueError) as err:
        print(f"darkstar plan: {err}", file=sys.stderr)
        return 2
    if len(inputs.index) < args.hours * 4:
        print(f"darkstar plan: horizon ends at the last published price: {len(inputs.index) / 4:g} h", file=sys.stderr)
    try:
        result = solve_plan(inputs, site, time_limit_s=args.time_limit)
    except PlanInputError as err:
        print(f"darkstar plan: {err}", file=sys.stderr)
        return 2
    if args.plot is not None:
        from services.planner.plot import plot_plan

        plot_plan(result, inputs, site, args.plot)
        print(f"plot written to {args.plot}", file=sys.stderr)
    if args.json:
        json.dump(plan_document(result, site), sys.stdout)
        sys.stdout.write("\n")
    else:
        print(_summary(result, site, inputs))
    return EXIT_FALLBACK if result.fallback else EXIT_FEASIBLE if result.status == "feasible" else 0


EXIT_FALLBACK = 1
EXIT_FEASIBLE = 3  # a usable plan, but the time limit stopped the solver before it was proven


# --------------------------------------------------------------------------- benchmark


def reference_site(ev: bool = True) -> Any:
    """The issue's reference problem: SE4 home, 34.2 kWh / 10 kW battery, 10 kWp PV, one 3 kW water
    heater (6 kWh/day, <= 8 h gap, start cost), one 11 kW EV plugged 17:00-07:00 needing 20 kWh,
    capacity tariff on (mean of the 3 highest daily peaks). ``ev=False``: the example site as it is
    (what ``darkstar up --demo`` plans), no EV."""
    from datetime import time as dtime

    from shared.config import EVConfig, load_site_config

    site = load_site_config(PROJECT_DIR / "examples" / "se4-home.yaml", environ={})
    if not ev:
        return site
    car = EVConfig(name="car", max_charge_kw=11.0, plugged_from=dtime(17, 0), departure=dtime(7, 0), target_kwh=20.0)
    return site.model_copy(update={"evs": [car]})


def battery_pv_only(site: Any) -> Any:
    tariff = site.tariff.model_copy(update={"capacity": site.tariff.capacity.model_copy(update={"enabled": False})})
    return site.model_copy(update={"evs": [], "water_heaters": [], "tariff": tariff})


def reference_data_path() -> Path:
    return PROJECT_DIR / "examples" / "data" / "se4_home_2025-07_2025-10.csv.gz"


def benchmark_starts(frame: pd.DataFrame, site: Any, days: int, hours: float = 48.0) -> list[pd.Timestamp]:
    """Local midnights whose whole horizon has load, PV and prices, spread evenly over the data."""
    tz = site.tz
    first = frame.index[0].tz_convert(tz).normalize() + pd.Timedelta(days=1)
    last = frame.index[-1].tz_convert(tz).normalize() - pd.Timedelta(hours=hours)
    candidates = []
    day = first
    while day <= last:
        window = frame.loc[(frame.index >= day) & (frame.index < day + pd.Timedelta(hours=hours))]
        if len(window) == int(hours * 4) and not window[["load_kw", "pv_kw", "spot_price"]].isna().any().any():
            candidates.append(day)
        day = (day + pd.Timedelta(hours=26)).normalize()  # next local midnight, DST-safe
    if len(candidates) <= days:
        return candidates
    pick = np.linspace(0, len(candidates) - 1, days).round().astype(int)
    return [candidates[i] for i in pick]


def _time_lp_relaxation(inputs: Any, site: Any) -> float:
    from shared.optimize import apply_strategy, build_model, run_highs

    adjusted, strategy = apply_strategy(inputs, site)
    t0 = time.perf_counter()
    m, _ = build_model(adjusted, site, strategy)
    t_model = time.perf_counter() - t0
    _, t_build, t_solve = run_highs(m, site, mip=False)
    return t_model + t_build + t_solve


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def run_benchmark(days: int = 20, progress: bool = True, time_limit_s: float | None = None,
                  ev: bool = True) -> dict[str, Any]:
    from shared.optimize import solve_plan
    from shared.optimize.inputs import inputs_from_recorded
    from shared.sitedata import load_site_data

    site = reference_site(ev=ev)
    small = battery_pv_only(site)
    data_path = reference_data_path()
    frame = load_site_data(data_path).frame
    starts = benchmark_starts(frame, site, days)
    soc0 = 0.3 * site.battery.capacity_kwh
    full_s, wall_s, lp_s, gaps, small_s, small_gaps, objectives = [], [], [], [], [], [], []
    statuses: dict[str, int] = {}
    per_day: list[dict[str, Any]] = []
    for k, start in enumerate(starts, start=1):
        inputs = inputs_from_recorded(frame, site, start, 48, soc_kwh=soc0)
        t0 = time.perf_counter()
        result = solve_plan(inputs, site, time_limit_s=time_limit_s)
        wall_s.append(time.perf_counter() - t0)
        full_s.append(result.stats.build_s + result.stats.solve_s)
        gaps.append(result.stats.mip_gap)
        objectives.append(result.stats.objective)
        statuses[result.stats.status] = statuses.get(result.stats.status, 0) + 1
        lp_s.append(_time_lp_relaxation(inputs, site))
        per_day.append({"start": f"{start:%Y-%m-%d}", "s": round(full_s[-1], 3), "mip_gap": round(gaps[-1], 6),
                        "status": result.stats.status, "objective": round(result.stats.objective, 4)})
        small_inputs = inputs_from_recorded(frame, small, start, 48, soc_kwh=soc0)
        small_result = solve_plan(small_inputs, small, time_limit_s=time_limit_s)
        small_s.append(small_result.stats.build_s + small_result.stats.solve_s)
        small_gaps.append(small_result.stats.mip_gap)
        if progress:
            print(
                f"[{k}/{len(starts)}] {start:%Y-%m-%d}: full {full_s[-1] * 1000:.0f} ms (gap {gaps[-1] * 100:.3f} %,"
                f" {result.stats.binaries} binaries), LP {lp_s[-1] * 1000:.0f} ms, battery+PV {small_s[-1] * 1000:.0f} ms",
                file=sys.stderr, flush=True,
            )
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB
    return {
        "problem": "SE4 home, 192 x 15-min slots, 34.2 kWh/10 kW battery, 10 kWp PV, 3 kW water heater "
                   "(6 kWh/day, max gap 8 h, start cost), "
                   + ("EV 11 kW 17:00-07:00 20 kWh, " if ev else "no EV (examples/se4-home.yaml as it is), ")
                   + "capacity tariff",
        "data": str(data_path),
        "instances": len(starts),
        "start_days": [s.strftime("%Y-%m-%d") for s in starts],
        "median_s": _pct(full_s, 50),
        "p95_s": _pct(full_s, 95),
        "max_s": max(full_s) if full_s else float("nan"),
        "wall_median_s": _pct(wall_s, 50),
        "lp_relaxation_median_s": _pct(lp_s, 50),
        "mip_gap_max": max(gaps) if gaps else float("nan"),
        "mip_gap_target": site.planner.mip_gap,
        "solver_status": statuses,
        "time_limit_hits": sum(1 for d in per_day if d["status"] != "Optimal"),
        "per_day": per_day,
        "battery_pv_only_median_s": _pct(small_s, 50),
        "battery_pv_only_p95_s": _pct(small_s, 95),
        "battery_pv_only_mip_gap_max": max(small_gaps) if small_gaps else float("nan"),
        "peak_rss_mb": peak_rss_mb,
        "objective_median": _pct(objectives, 50),
        "cpu_count": __import__("os").cpu_count(),
    }


def run(args: argparse.Namespace) -> int:
    if args.benchmark:
        if args.negative:
            from services.planner.negative_benchmark import run_negative_benchmark

            report = run_negative_benchmark(battery_pv_only(reference_site(ev=False)), reference_data_path(),
                                            progress=True, time_limit_s=args.time_limit)
        else:
            report = run_benchmark(days=args.days, progress=True, time_limit_s=args.time_limit, ev=not args.no_ev)
        if args.json:
            json.dump({k: (_num(v) if isinstance(v, float) else v) for k, v in report.items()}, sys.stdout)
            sys.stdout.write("\n")
        else:
            for key, value in report.items():
                if key in ("start_days", "per_day"):
                    continue
                print(f"{key}: {round(value, 4) if isinstance(value, float) else value}")
        return 0
    return _run_plan(args)


def main(argv: list[str] | None = None) -> int:  # pragma: no cover - convenience
    parser = argparse.ArgumentParser(prog="darkstar plan")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
