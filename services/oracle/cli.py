"""``darkstar oracle``: the perfect-hindsight optimum per local day over a range.

    darkstar oracle --site SITE.yaml --data FILE.csv --from DATE --to DATE [--soc-kwh X] [--json]

Logic: :mod:`shared.oracle` (SoC carried from day to day). Progress on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--site", type=Path, required=True, help="site YAML file")
    parser.add_argument("--data", type=Path, required=True, help="recorded site data CSV (.gz)")
    parser.add_argument("--from", dest="date_from", required=True, help="first local day, YYYY-MM-DD")
    parser.add_argument("--to", dest="date_to", required=True, help="last local day (inclusive), YYYY-MM-DD")
    parser.add_argument("--soc-kwh", type=float, default=None, help="battery energy at the start (default: reserve)")
    parser.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from shared.backtest import parse_date, stderr_progress
    from shared.config import ConfigError, load_site_config
    from shared.optimize.inputs import PlanInputError
    from shared.oracle import actuals, baseline_cost, oracle_range
    from shared.simulator import money
    from shared.sitedata import SiteDataError, load_site_data
    from shared.tariff import PriceError

    try:
        site = load_site_config(args.site)
        data = load_site_data(args.data)
        date_from, date_to = parse_date(args.date_from), parse_date(args.date_to)
        result = oracle_range(data.frame, site, date_from, date_to, soc_kwh=args.soc_kwh,
                              progress=None if args.quiet else stderr_progress("oracle"))
        base = baseline_cost(actuals(data.frame, site, result.flows.index), site)
    except (ConfigError, SiteDataError, PlanInputError, PriceError, ValueError) as err:
        print(f"darkstar oracle: {err}", file=sys.stderr)
        return 2
    doc = result.to_dict(site)
    doc["baseline_cost"] = round(money(base), 6)
    if args.json:
        print(json.dumps(doc))
        return 0
    cur = site.tariff.currency
    print(f"{site.site_id} {doc['from']}..{doc['to']} ({doc['days']} days): oracle {doc['oracle_cost']:.2f} {cur} "
          f"(adjusted for the stored energy {doc['oracle_adjusted_cost']:.2f} {cur}: SoC {doc['soc_start_kwh']:.2f} -> "
          f"{doc['soc_end_kwh']:.2f} kWh at {doc['end_soc_value_per_kwh']:.4f} {cur}/kWh), "
          f"no battery {doc['baseline_cost']:.2f} {cur}, runtime {doc['runtime_s']:.1f} s")
    for d in doc["per_day"]:
        print(f"  {d['date']}  {d['oracle_cost']:8.3f} {cur}  import {d['import_kwh']:6.2f} kWh  "
              f"export {d['export_kwh']:6.2f} kWh  soc {d['soc_start_kwh']:5.2f} -> {d['soc_end_kwh']:5.2f} kWh")
    for n in doc["notes"]:
        print(f"note: {n}")
    return 0
