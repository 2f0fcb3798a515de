"""``darkstar env-episode``: run one day of the Antares Gym environment following the planner.

    darkstar env-episode --site SITE.yaml --data FILE.csv --day DATE [--forecast naive|perfect] [--json]

Prints one ``local-time reward`` line per slot and the episode total (rewards are minus the
slot's import cost - export revenue + wear, in the site currency). Logic: :mod:`shared.environment`.
"""

from __future__ import annotations

import argparse
import json
import sys

from services.batch_cli import (
    add_output_arguments,
    add_site_data_arguments,
    batch_errors,
    parse_date,
    report_error,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_site_data_arguments(parser)
    parser.add_argument("--day", required=True, help="local day, YYYY-MM-DD")
    parser.add_argument("--forecast", choices=("naive", "perfect"), default="naive", help="the planner's forecast")
    parser.add_argument("--soc-kwh", type=float, default=None, help="battery energy at the start (default: reserve)")
    add_output_arguments(parser, quiet=False)


def run(args: argparse.Namespace) -> int:
    from shared.config import load_site_config
    from shared.sitedata import load_site_data

    try:
        from shared.environment import AntaresMPCEnv
    except ModuleNotFoundError as err:
        print(f"darkstar env-episode: missing dependency {err.name!r}; install the trainer extra", file=sys.stderr)
        return 2
    try:
        site = load_site_config(args.site)
        data = load_site_data(args.data)
        day = parse_date(args.day, "--day")
        env = AntaresMPCEnv(site, data.frame, day=day, forecast=args.forecast, soc_kwh=args.soc_kwh)
        env.reset(options={"day": day})
    except batch_errors() as err:
        return report_error("env-episode", err)
    rows = []
    total = 0.0
    done = False
    while not done:
        _, reward, done, _, info = env.step(None)
        total += reward
        local = env.index[len(rows)].tz_convert(env.site.tz)
        rows.append({"time": local.isoformat(), "reward": round(reward, 6), "soc_kwh": round(info["soc_kwh"], 4)})
    cur = env.site.tariff.currency
    if args.json:
        print(json.dumps({"site_id": env.site.site_id, "day": day.isoformat(), "currency": cur, "slots": len(rows),
                          "total_reward": round(total, 6), "replans": env.replans, "steps": rows}))
        return 0
    for r in rows:
        print(f"{r['time']}  {r['reward']:+.4f}")
    print(f"total {total:+.4f} {cur} over {len(rows)} slots ({env.replans} plans)")
    return 0
