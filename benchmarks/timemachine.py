"""Time Machine benchmarks (not tests): oracle speed, backtest speed, MPC-vs-oracle savings.

    uv run python benchmarks/timemachine.py oracle-year            # CityLearn home 1, one year of daily problems
    uv run python benchmarks/timemachine.py backtest --home 1 --from 2016-08-01 --to 2017-07-30 --forecast perfect
    uv run python benchmarks/timemachine.py homes --from 2016-10-01 --to 2016-10-28 --forecast aurora
    uv run python benchmarks/timemachine.py se4 --forecast aurora

Data: ``examples/data`` (CityLearn 2022 homes 1-5 with examples/citylearn-home.yaml, home 4 with
5 kWp; the SE4 home with examples/se4-home.yaml). One JSON document per run on stdout;
progress on stderr. Run with ``nice``, one at a time: the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATA = ROOT / "examples" / "data"
CL_SITE = ROOT / "examples" / "citylearn-home.yaml"
SE4_SITE = ROOT / "examples" / "se4-home.yaml"
SE4_DATA = DATA / "se4_home_2025-07_2025-10.csv.gz"


def citylearn_home(home: int):
    from shared.config import load_site_config
    from shared.sitedata import load_site_data

    site = load_site_config(CL_SITE)
    kwp = 5.0 if home == 4 else 4.0
    arrays = [a.model_copy(update={"kwp": kwp}) for a in site.pv.arrays]
    site = site.model_copy(update={"site_id": f"citylearn-home-{home}", "name": f"CityLearn 2022 home {home}",
                                   "pv": site.pv.model_copy(update={"arrays": arrays})})
    return site, load_site_data(DATA / f"citylearn_building_{home}.csv.gz").frame


def machine() -> dict:
    import os

    return {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()}


def cmd_oracle_year(args) -> dict:
    from services.batch_cli import progress_bar
    from shared.oracle import oracle_range

    site, frame = citylearn_home(args.home)
    t0 = time.perf_counter()
    r = oracle_range(frame, site, date.fromisoformat(args.date_from), date.fromisoformat(args.date_to),
                     progress=progress_bar("oracle"))
    doc = r.to_dict(site)
    doc.pop("per_day")
    doc["wall_s"] = round(time.perf_counter() - t0, 2)
    return doc


def _backtest(site, frame, args, date_from: str, date_to: str) -> dict:
    from services.batch_cli import progress_bar
    from shared.backtest import run_backtest

    if args.no_stability:  # sensitivity: the planner without its anti-flip-flop costs
        site = site.model_copy(update={"planner": site.planner.model_copy(
            update={"setpoint_change_cost_per_kw": 0.0, "mode_switch_cost": 0.0})})
    kwargs = {"retrain_days": args.retrain_days} if args.forecast == "aurora" else {}
    r = run_backtest(frame, site, date.fromisoformat(date_from), date.fromisoformat(date_to), forecast=args.forecast,
                     replan_minutes=args.replan_minutes, progress=progress_bar(site.site_id), forecast_kwargs=kwargs)
    doc = r.to_dict()
    per_day = doc.pop("per_day")
    doc["per_month"] = per_month(per_day)
    return doc


def per_month(per_day: list[dict]) -> dict[str, dict]:
    """Costs and captured savings per calendar month of the window (from the backtest's per-day costs)."""
    months: dict[str, dict] = {}
    for d in per_day:
        m = months.setdefault(d["date"][:7], {"days": 0, "baseline_cost": 0.0, "self_consumption_cost": 0.0,
                                              "realized_cost": 0.0, "oracle_cost": 0.0})
        m["days"] += 1
        for key in ("baseline_cost", "self_consumption_cost", "realized_cost", "oracle_cost"):
            m[key] += d[key]
    for m in months.values():
        gap = m["baseline_cost"] - m["oracle_cost"]
        m["captured_frac"] = round((m["baseline_cost"] - m["realized_cost"]) / gap, 4) if abs(gap) > 1e-9 else None
        m["self_consumption_captured_frac"] = (round((m["baseline_cost"] - m["self_consumption_cost"]) / gap, 4)
                                               if abs(gap) > 1e-9 else None)
        for key in ("baseline_cost", "self_consumption_cost", "realized_cost", "oracle_cost"):
            m[key] = round(m[key], 4)
    return months


def cmd_backtest(args) -> dict:
    site, frame = citylearn_home(args.home)
    return _backtest(site, frame, args, args.date_from, args.date_to)


def cmd_homes(args) -> dict:
    out = {}
    for home in args.homes:
        site, frame = citylearn_home(home)
        out[f"home_{home}"] = _backtest(site, frame, args, args.date_from, args.date_to)
        print(json.dumps({f"home_{home}": out[f"home_{home}"]}), file=sys.stderr)
    fracs = [d["savings_captured_frac"] for d in out.values() if d["savings_captured_frac"] is not None]
    base = sum(d["baseline_cost"] for d in out.values())
    real = sum(d["realized_cost"] for d in out.values())
    orc = sum(d["oracle_cost"] for d in out.values())
    out["pooled_savings_captured_frac"] = round((base - real) / (base - orc), 4) if base != orc else None
    out["min_savings_captured_frac"] = round(min(fracs), 4) if fracs else None
    return out


def cmd_se4(args) -> dict:
    from shared.config import load_site_config
    from shared.sitedata import load_site_data

    site = load_site_config(SE4_SITE)
    frame = load_site_data(SE4_DATA).frame
    return _backtest(site, frame, args, args.date_from or "2025-07-20", args.date_to or "2025-10-30")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    o = sub.add_parser("oracle-year")
    o.add_argument("--home", type=int, default=1)
    o.add_argument("--from", dest="date_from", default="2016-08-01")
    o.add_argument("--to", dest="date_to", default="2017-07-30")
    for name in ("backtest", "homes", "se4"):
        b = sub.add_parser(name)
        b.add_argument("--forecast", choices=("perfect", "naive", "aurora"), default="aurora")
        b.add_argument("--replan-minutes", type=int, default=60)
        b.add_argument("--retrain-days", type=int, default=7)
        b.add_argument("--no-stability", action="store_true", help="planner without setpoint-change/mode-switch costs")
        b.add_argument("--from", dest="date_from", default=None if name == "se4" else "2016-10-01")
        b.add_argument("--to", dest="date_to", default=None if name == "se4" else "2016-10-28")
        if name == "backtest":
            b.add_argument("--home", type=int, default=1)
        if name == "homes":
            b.add_argument("--homes", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    args = p.parse_args()
    t0 = time.perf_counter()
    doc = {"oracle-year": cmd_oracle_year, "backtest": cmd_backtest, "homes": cmd_homes, "se4": cmd_se4}[args.cmd](args)
    doc = {"benchmark": args.cmd, "args": {k: v for k, v in vars(args).items() if k != "cmd"}, "machine": machine(),
           "total_wall_s": round(time.perf_counter() - t0, 1), "result": doc}
    print(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
