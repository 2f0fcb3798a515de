"""``darkstar whatif export``: what would forcing more export in the dearest slots cost?

    darkstar whatif export --site SITE.yaml --data FILE.csv --day DATE [--relaxed] [--steps 8] [--json]
    darkstar whatif export --site SITE.yaml --live --day DATE [--json]

``--live`` reads the running stack's database (``site.database``): the stored prices and the
latest load/PV forecast for that day, instead of recorded data. Logic: :mod:`shared.whatif`.
"""

from __future__ import annotations

import argparse
import json

from services.batch_cli import (
    add_output_arguments,
    add_site_data_arguments,
    batch_errors,
    parse_date,
    report_error,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("analysis", choices=("export",), help="which what-if (export)")
    add_site_data_arguments(parser, data_required=False)
    parser.add_argument("--day", required=True, help="local day, YYYY-MM-DD")
    parser.add_argument("--relaxed", action="store_true", help="lower cycle cost and margins")
    parser.add_argument("--steps", type=int, default=8, help="how many progressively larger export targets")
    parser.add_argument("--slots-per-step", type=int, default=1, help="forced slots added per step")
    parser.add_argument("--soc-kwh", type=float, default=None, help="battery energy at the start (default: reserve)")
    parser.add_argument("--live", action="store_true", help="use the running stack's prices and forecast (database)")
    add_output_arguments(parser, quiet=False)


def run(args: argparse.Namespace) -> int:
    from shared.config import load_site_config
    from shared.sitedata import load_site_data
    from shared.whatif import live_actuals, whatif_export, whatif_export_on

    try:
        site = load_site_config(args.site)
        day = parse_date(args.day, "--day")
        if args.steps < 1 or args.slots_per_step < 1:
            raise ValueError("--steps and --slots-per-step must be at least 1")
        if args.live:
            from shared.storage import Store

            store = Store.open(site.database.url.get_secret_value(), migrate=False)
            try:
                act = live_actuals(store, site, day)
            finally:
                store.close()
            result = whatif_export_on(day, act, site, args.soc_kwh, args.relaxed, args.steps, args.slots_per_step)
            result.source = "live"
        else:
            if args.data is None:
                raise ValueError("give --data FILE.csv (recorded data) or --live (the running stack's database)")
            data = load_site_data(args.data)
            result = whatif_export(data.frame, site, day, args.soc_kwh, args.relaxed, args.steps, args.slots_per_step)
    except batch_errors() as err:
        return report_error("whatif", err)
    doc = result.to_dict(site.site_id)
    if args.json:
        print(json.dumps(doc))
        return 0
    cur = doc["currency"]
    print(f"{doc['site_id']} {doc['day']} ({doc['source']}{', relaxed' if doc['relaxed'] else ''}): baseline plan "
          f"{doc['baseline_cost']:.3f} {cur}, export {doc['baseline_export_kwh']:.2f} kWh")
    for s in doc["steps"]:
        print(f"  {s['forced_slots']:3d} slots  target {s['target_export_kwh']:6.2f} kWh  realized "
              f"{s['realized_export_forced_kwh']:6.2f} kWh  cost {s['cost']:8.3f} ({s['cost_change']:+.3f}) {cur}"
              f"  {s['status']}")
    return 0
