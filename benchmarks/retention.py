"""Storage benchmark (not a test): database size after a simulated year, with and without retention.

    nice uv run python benchmarks/retention.py --days 365                 # retention on (defaults)
    nice uv run python benchmarks/retention.py --days 30 --no-retention   # growth without it

Writes what a live site writes (rates from the defaults: executor tick 10 s, a 48-h plan every
15 min, a 48-h forecast every hour, one observation, price and weather row per slot, 20 error
events a day) into a fresh SQLite file through SQLAlchemy, runs the nightly retention at 03:30
of every simulated day, and prints one JSON document: file size per 30 days, rows per table and
wall time. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shared.storage import Store
from shared.storage import models as m
from shared.storage.retention import RetentionWindows, apply_retention

SITE = "bench-home"
START = datetime(2025, 1, 1, tzinfo=UTC)
SLOT = timedelta(minutes=15)


def _plan_rows(created: datetime, k: int) -> tuple[dict, list[dict]]:
    plan_id = f"plan-{created:%Y%m%d%H%M}"
    header = {"site_id": SITE, "system_id": "live", "plan_id": plan_id, "created_at": created,
              "valid_until": created + timedelta(hours=1), "first_slot_start": created,
              "last_slot_start": created + 191 * SLOT, "n_slots": 192, "fallback": False,
              "reason": "scheduled replan", "mode_changes_per_day": 4.0, "currency": "SEK", "import_cost": 12.3,
              "export_revenue": 1.2, "wear_cost": 0.3, "capacity_cost": 0.0, "penalty_cost": 0.0,
              "total_cost": 11.4, "solver": "highs", "solver_status": "Optimal", "objective": 11.4,
              "build_s": 0.05, "solve_s": 0.2, "mip_gap": 0.001,
              "inputs": {"prices": f"p{k}", "forecast": f"f{k}"},
              "explanation": {"summary": "charge at night, discharge at the evening peak"}, "stored_at": created}
    slots = [{"site_id": SITE, "system_id": "live", "plan_id": plan_id, "slot_start": created + i * SLOT,
              "mode": "charge" if i % 7 == 0 else "self_use", "charge_kw": 2.5 * (i % 7 == 0), "discharge_kw": 0.4,
              "import_kw": 1.1 + i / 1000, "export_kw": 0.0, "soc_kwh": 10 + (i % 20) / 2, "soc_target_frac": 0.5,
              "pv_curtail_kw": 0.0, "water_kw": 0.0, "ev_kw": 0.0, "load_kw": 0.8, "pv_kw": 1.2,
              "import_price_per_kwh": 1.23, "export_price_per_kwh": 0.5, "reason_code": "cheap",
              "battery_value_per_kwh": 0.9} for i in range(192)]
    return header, slots


def _sqlite_value(value: Any) -> Any:
    """What SQLAlchemy would bind on SQLite (naive UTC text timestamps, JSON text), without its
    per-value overhead: the benchmark measures storage size, and a year of rows must fit in minutes."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(value, dict):
        return json.dumps(value)
    return value


def _insert(conn: Any, table: Any, rows: list[dict]) -> None:
    cols = list(rows[0])
    sql = f'INSERT INTO {table.name} ({", ".join(cols)}) VALUES ({", ".join("?" * len(cols))})'
    conn.exec_driver_sql(sql, [tuple(_sqlite_value(r[c]) for c in cols) for r in rows])


def simulate_day(store: Store, day: datetime, k0: int) -> int:
    """Insert one day of a live site's writes; returns rows written."""
    t = {name: m.Base.metadata.tables[name] for name in
         ("execution_log", "plans", "plan_slots", "forecasts", "slot_observations", "prices", "weather", "events")}
    rows = 0
    with store.engine.begin() as conn:
        ticks = [{"site_id": SITE, "system_id": "live", "ts": day + timedelta(seconds=10 * i),
                  "slot_start": day + SLOT * (i // 90), "plan_id": "p", "mode": "self_use", "planned_mode": "self_use",
                  "planned_battery_kw": 1.0, "commanded_battery_kw": 1.0, "measured_battery_kw": 0.9 + (i % 7) / 10,
                  "measured_grid_kw": 0.3, "measured_soc_frac": 0.5, "success": True, "error": None, "detail": None}
                 for i in range(8640)]
        _insert(conn, t["execution_log"], ticks)
        rows += len(ticks)
        for q in range(96):
            header, slots = _plan_rows(day + q * SLOT, k0 + q)
            _insert(conn, t["plans"], [header])
            _insert(conn, t["plan_slots"], slots)
            rows += 1 + len(slots)
        for h in range(24):
            issued = day + timedelta(hours=h)
            fc = [{"site_id": SITE, "forecast_id": f"f-{issued:%Y%m%d%H}", "slot_start": issued + i * SLOT,
                   "issued_at": issued, "model_id": "aurora_v1", "fallback": False, "load_p10_kw": 0.5,
                   "load_p50_kw": 0.8, "load_p90_kw": 1.4, "pv_p10_kw": 0.0, "pv_p50_kw": 1.0, "pv_p90_kw": 2.0}
                  for i in range(192)]
            _insert(conn, t["forecasts"], fc)
            rows += len(fc)
        slots = [day + i * SLOT for i in range(96)]
        _insert(conn, t["slot_observations"], [
            {"site_id": SITE, "system_id": "live", "slot_start": s, "duration_minutes": 15, "load_kwh": 0.2,
             "pv_kwh": 0.3, "import_kwh": 0.1, "export_kwh": 0.0, "charge_kwh": 0.1, "discharge_kwh": 0.0,
             "water_kwh": 0.0, "ev_kwh": 0.0, "soc_end_frac": 0.5, "coverage_frac": 1.0, "updated_at": s}
            for s in slots])
        _insert(conn, t["prices"], [
            {"site_id": SITE, "slot_start": s, "prices_id": f"p-{day:%Y%m%d}", "issued_at": day, "area": "SE4",
             "currency": "SEK", "resolution_minutes": 15, "source": "nordpool", "spot_per_kwh": 0.8,
             "import_price_per_kwh": 1.3, "export_price_per_kwh": 0.7, "updated_at": day} for s in slots])
        _insert(conn, t["events"], [
            {"site_id": SITE, "ts": day + timedelta(minutes=71 * i), "event_id": uuid.uuid4().hex, "kind": "error",
             "who": "executor", "what": "modbus read failed", "why": "timeout after 2 s", "payload_excerpt": None,
             "data": None} for i in range(20)])
        rows += 96 + 96 + 20
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--no-retention", action="store_true")
    ap.add_argument("--keep", type=Path, default=None, help="write the database here instead of a temp dir")
    args = ap.parse_args(argv)
    tmp = tempfile.TemporaryDirectory(prefix="darkstar-retention-")
    path = args.keep or Path(tmp.name) / "year.db"
    store = Store.open(f"sqlite:///{path}")
    windows = RetentionWindows()
    t0 = time.perf_counter()
    sizes, written = {}, 0
    for d in range(args.days):
        day = START + timedelta(days=d)
        written += simulate_day(store, day, d * 96)
        if not args.no_retention:
            apply_retention(store.engine, SITE, day + timedelta(days=1, hours=3, minutes=30), windows)
        if (d + 1) % 30 == 0 or d + 1 == args.days:
            size_mb = (path.stat().st_size + sum(p.stat().st_size for p in path.parent.glob(path.name + "-wal"))) / 1e6
            sizes[d + 1] = round(size_mb, 1)
            print(f"day {d + 1}: {size_mb:.1f} MB, {written} rows written, {time.perf_counter() - t0:.0f} s",
                  file=sys.stderr)
    counts = store.counts()
    store.close()
    doc = {"days": args.days, "retention": not args.no_retention, "windows": windows.__dict__,
           "rows_written": written, "rows_kept": counts, "size_mb_by_day": sizes, "final_size_mb": sizes[args.days],
           "wall_s": round(time.perf_counter() - t0, 1),
           "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()}}
    print(json.dumps(doc, indent=1))
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
