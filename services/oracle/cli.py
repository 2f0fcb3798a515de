"""``darkstar oracle``: the perfect-hindsight optimum per local day over a range.

    darkstar oracle --site SITE.yaml --data FILE.csv --from DATE --to DATE [--soc-kwh X] [--json]

Logic: :mod:`shared.oracle` (SoC carried from day to day). Progress on stderr.
"""

from __future__ import annotations

import argparse
import json

from services.batch_cli import (
    add_output_arguments,
    add_range_arguments,
    add_site_data_arguments,
    batch_errors,
    date_range,
    progress_bar,
    report_error,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_site_data_arguments(parser)
    add_range_arguments(parser)
    parser.add_argument("--soc-kwh", type=float, default=None, help="battery energy at the start (default: reserve)")
    add_output_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from shared.config import load_site_config
    from shared.oracle import actuals, baseline_cost, oracle_range
    from shared.simulator import money
    from shared.sitedata import load_site_data

    try:
        site = load_site_config(args.site)
        data = load_site_data(args.data)
        date_from, date_to = date_range(args)
        result = oracle_range(data.frame, site, date_from, date_to, soc_kwh=args.soc_kwh,
                              progress=progress_bar("oracle", args.quiet))
        base = baseline_cost(actuals(data.frame, site, result.flows.index), site)
    except batch_errors() as err:
        return report_error("oracle", err)
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
