"""``darkstar plan --benchmark --negative``: 192-slot plans on days with negative import prices.

The prices are real SE3/SE4 day-ahead prices of 2023-2024 (the 20 July-October dates with at
least 3 negative hours and the lowest minimum; ``examples/data/entsoe_negative_days_SE3_SE4_2023_2024.csv``,
cut by ``benchmarks/negative_price_days.py``), each date and the next day. Load and PV are the
SE4 home's on the same calendar days of 2025 (the first week after with complete data). The
site is the SE4 home with its battery and PV (wear 0.01 EUR/kWh), no heater, no capacity tariff,
under a spot pass-through tariff: import = spot x (1 + VAT), no grid fee and no energy tax (with
the Swedish fee and tax the import price never goes below 0: the lowest spot of those years is
-60 EUR/MWh), export = spot + bonus - fee. So import prices go negative with the spot, and in
those hours the import price is below the export price (VAT), where import and export in one
slot would pay and need a direction binary.
"""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

PROJECT_DIR = Path(__file__).resolve().parents[2]
PRICES = PROJECT_DIR / "examples" / "data" / "entsoe_negative_days_SE3_SE4_2023_2024.csv"


def negative_price_site(site: Any) -> Any:
    """``site`` (the SE4 home, battery + PV) under the spot pass-through tariff of the module doc."""
    tariff = site.tariff.model_copy(update={"grid_fee_per_kwh": 0.0, "energy_tax_per_kwh": 0.0,
                                            "grid_fee_schedule": []})
    return site.model_copy(update={"tariff": tariff})


def negative_price_instances(site: Any, home_data: Path) -> list[tuple[str, pd.Timestamp, pd.DataFrame]]:
    """(source date, local start, 192-slot frame with load_kw, pv_kw, spot_price) per price date;
    load and PV from ``home_data`` (the SE4 home's recorded file)."""
    from shared.sitedata import load_site_data

    home = load_site_data(home_data).frame
    prices = pd.read_csv(PRICES)
    prices["hour_utc"] = pd.to_datetime(prices["hour_utc"], utc=True)
    out = []
    for day, group in prices.groupby("source_day"):
        d = pd.Timestamp(day)
        first = pd.Timestamp(year=2025, month=d.month, day=d.day, tz=site.tz)
        for week in range(6):
            start = first + pd.Timedelta(days=7 * week)
            index = pd.date_range(start.tz_convert("UTC"), periods=192, freq="15min", name="slot_start")
            window = home.reindex(index)[["load_kw", "pv_kw"]]
            if not window.isna().any().any():
                break
        else:
            continue
        hourly = group.set_index("hour_utc")["spot_price"]
        hourly.index = hourly.index + (index[0] - hourly.index[0])  # the price day onto the load day
        frame = window.copy()
        frame["spot_price"] = hourly.reindex(index, method="ffill").to_numpy()
        out.append((str(day), start, frame))
    return out


def _switches_in_negative_hours(plan: pd.DataFrame, import_price: np.ndarray) -> int:
    """Charge <-> discharge changes between consecutive slots inside negative-price stretches."""
    net = np.sign(np.round((plan["charge_kw"] - plan["discharge_kw"]).to_numpy(), 3))
    both_negative = (import_price[1:] < 0) & (import_price[:-1] < 0)
    flips = (net[1:] * net[:-1]) < 0
    return int((flips & both_negative).sum())


def run_negative_benchmark(home_site: Any, home_data: Path, progress: bool = True,
                           time_limit_s: float | None = None) -> dict[str, Any]:
    """The benchmark on ``home_site`` (battery + PV) with ``home_data``'s load/PV (see module doc)."""
    from shared.optimize import solve_plan
    from shared.optimize.inputs import inputs_from_recorded

    site = negative_price_site(home_site)
    soc0 = 0.3 * site.battery.capacity_kwh
    rows: list[dict[str, Any]] = []
    for k, (day, start, frame) in enumerate(negative_price_instances(site, home_data), start=1):
        inputs = inputs_from_recorded(frame, site, start, 48, soc_kwh=soc0)
        t0, c0 = time.perf_counter(), time.process_time()
        result = solve_plan(inputs, site, time_limit_s=time_limit_s)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        p = inputs.prices["import_price_per_kwh"].to_numpy()
        f = result.slots
        throughput_kwh = float((f["charge_kw"] + f["discharge_kw"]).sum() * inputs.slot_hours)
        rows.append({
            "price_day": day, "load_day": f"{start:%Y-%m-%d}", "s": round(result.stats.build_s + result.stats.solve_s, 4),
            "wall_s": round(wall, 4), "cpu_s": round(cpu, 4), "status": result.status,
            "solver_status": result.stats.status, "mip_gap": round(result.stats.mip_gap, 6),
            "binaries": result.stats.binaries, "negative_slots": int((p < 0).sum()),
            "min_import_price": round(float(p.min()), 4), "objective": round(result.stats.objective, 4),
            "cycles_per_day": round(throughput_kwh / 2 / site.battery.capacity_kwh / 2, 3),
            "switches_in_negative_hours": _switches_in_negative_hours(f, p),
        })
        if progress:
            r = rows[-1]
            print(f"[{k}] prices {day} on load {r['load_day']}: {r['s'] * 1000:.0f} ms (cpu {r['cpu_s'] * 1000:.0f} ms), "
                  f"{r['binaries']} binaries, {r['negative_slots']} negative slots (min {r['min_import_price']}), "
                  f"{r['status']}, gap {r['mip_gap'] * 100:.3f} %", file=sys.stderr, flush=True)
    s = [r["s"] for r in rows]
    return {
        "problem": "SE4 home battery + PV, 192 x 15-min slots, spot pass-through tariff (import = spot x 1.25), "
                   "real SE3/SE4 2023-2024 negative-price days",
        "data": str(PRICES.relative_to(PROJECT_DIR)),
        "instances": len(rows),
        "median_s": float(np.median(s)) if s else float("nan"),
        "p95_s": float(np.percentile(s, 95)) if s else float("nan"),
        "max_s": max(s) if s else float("nan"),
        "cpu_median_s": float(np.median([r["cpu_s"] for r in rows])) if rows else float("nan"),
        "wall_median_s": float(np.median([r["wall_s"] for r in rows])) if rows else float("nan"),
        "statuses": {st: sum(1 for r in rows if r["status"] == st) for st in {r["status"] for r in rows}},
        "mip_gap_max": max(r["mip_gap"] for r in rows) if rows else float("nan"),
        "switches_in_negative_hours_total": sum(r["switches_in_negative_hours"] for r in rows),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "per_day": rows,
    }
