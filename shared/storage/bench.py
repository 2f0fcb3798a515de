"""Storage benchmark (a command, not a test): time to store one observation and one 48-h plan.

    uv run python -m shared.storage.bench --url sqlite:///var/bench.db
    uv run python -m shared.storage.bench --url mysql+pymysql://root@127.0.0.1:3306/test --json

A server URL only says where: the benchmark runs in a scratch database (MariaDB) or schema
(PostgreSQL) of its own, created and dropped around the run, so it leaves nothing behind. Other benchmarks (publish -> validate ->
store) call :func:`shared.storage.repository.bench_store_observation` directly.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import uuid
from datetime import timedelta

import pandas as pd

from shared.contracts import CostBreakdown, PlanMsg, PlanSlot, SolverStats
from shared.storage.db import safe_url, scratch_database
from shared.storage.repository import Store, bench_store_observation


def bench_store_plan(store: Store, site_id: str, n_plans: int = 20, n_slots: int = 192) -> dict[str, float]:
    """Median / p95 ms to store a plan of ``n_slots`` slots (header + batch of slots)."""
    start = pd.Timestamp("2030-01-01", tz="UTC").to_pydatetime()
    times_ms = []
    for k in range(n_plans):
        created = start + timedelta(minutes=15 * k)
        plan = PlanMsg(
            site_id=site_id, created_at=created, valid_until=created + timedelta(minutes=30),
            slots=[PlanSlot(start=created + timedelta(minutes=15 * i), mode="self_use", charge_kw=1.0,
                            soc_kwh=5.0, import_price_per_kwh=1.0) for i in range(n_slots)],
            cost=CostBreakdown(currency="SEK", import_cost=1.0, export_revenue=0.0, total_cost=1.0),
            solver=SolverStats(status="Optimal"),
        )
        t0 = time.perf_counter()
        store.store_plan(plan, system_id="bench")
        times_ms.append((time.perf_counter() - t0) * 1000)
    times_ms.sort()
    return {"n": float(n_plans), "slots": float(n_slots), "median_ms": statistics.median(times_ms),
            "p95_ms": times_ms[min(n_plans - 1, round(0.95 * (n_plans - 1)))]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.storage.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=None, help="where to benchmark (default: a temporary SQLite file); a scratch database is used there")
    parser.add_argument("-n", type=int, default=500, help="observations to store (default 500)")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--async-commit", action="store_true", help="PostgreSQL: commit without waiting for the WAL flush")
    args = parser.parse_args(argv)
    url = args.url or "sqlite://"
    with scratch_database(url, prefix="darkstar_bench") as scratch:
        store = Store.open(scratch, async_commit=args.async_commit)
        site_id = f"bench-{uuid.uuid4().hex[:8]}"
        try:
            obs = bench_store_observation(store, n=args.n, site_id=site_id, system_id="bench")
            plan = bench_store_plan(store, site_id)
        finally:
            store.close()
    result = {
        "database": safe_url(url) if args.url else "sqlite (temporary file)", "dialect": store.dialect,
        "async_commit": store.async_commit, "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "store_observation_median_ms": round(obs["median_ms"], 3), "store_observation_p95_ms": round(obs["p95_ms"], 3),
        "observations": int(obs["n"]),
        "store_plan_192_slots_median_ms": round(plan["median_ms"], 3),
        "store_plan_192_slots_p95_ms": round(plan["p95_ms"], 3), "plans": int(plan["n"]),
    }
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:34s} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
