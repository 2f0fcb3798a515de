"""``darkstar forecast eval``: walk-forward test of the Aurora forecasts against naive baselines.

    darkstar forecast eval --site SITE.yaml --data FILE.csv --from DATE --to DATE [--json] [--plot out.png]

Issue times daily at 12:00 local (``--issue-hour``), horizon 48 h, models retrained every
``--retrain-days`` on data strictly before the issue time. Weather inputs are the ``*_fc24h``
forecast columns of the data when present; without them the calendar-and-lags / clear-sky
fallback runs and the output says so. Progress goes to stderr; ``--json`` prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date

import numpy as np

from shared.config import ConfigError, load_site_config
from shared.sitedata import SiteDataError, load_site_data


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="forecast_command", metavar="ACTION")
    ev = sub.add_parser("eval", help="walk-forward evaluation of load and PV forecasts against baselines")
    ev.add_argument("--site", required=True, help="site YAML file")
    ev.add_argument("--data", required=True, help="recorded site data CSV (optionally .gz)")
    ev.add_argument("--from", dest="date_from", required=True, type=date.fromisoformat, help="first issue date (local)")
    ev.add_argument("--to", dest="date_to", required=True, type=date.fromisoformat, help="end date (exclusive)")
    ev.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    ev.add_argument("--plot", help="write a PNG: forecast vs actual with the p10-p90 band, and error summary")
    ev.add_argument("--issue-hour", type=int, default=12, help="local hour of the daily issue time (default 12)")
    ev.add_argument("--horizon-hours", type=int, default=48)
    ev.add_argument("--retrain-days", type=int, default=7, help="retrain every N days (default 7)")
    ev.add_argument("--no-weather", action="store_true", help="ignore weather forecast columns (fallback models)")


def _progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    if getattr(args, "forecast_command", None) != "eval":
        print("usage: darkstar forecast eval --site SITE.yaml --data FILE.csv --from DATE --to DATE", file=sys.stderr)
        return 2
    from shared.forecast.evaluate import walk_forward, weather_from_forecast_columns

    try:
        site = load_site_config(args.site)
        data = load_site_data(args.data)
    except (ConfigError, SiteDataError) as err:
        print(f"darkstar forecast eval: {err}", file=sys.stderr)
        return 2
    if args.date_to <= args.date_from:
        print("darkstar forecast eval: --to must be after --from", file=sys.stderr)
        return 2
    frame = data.frame
    weather = None if args.no_weather else weather_from_forecast_columns(frame)
    _progress(data.report.summary())
    _progress(
        "weather: " + ("forecast columns " + ", ".join(weather.columns) if weather is not None
                       else "none (calendar-and-lags load, clear-sky PV fallback)")
    )
    try:
        result = walk_forward(
            frame, weather, site, args.date_from, args.date_to, issue_hour_local=args.issue_hour,
            horizon_hours=args.horizon_hours, retrain_days=args.retrain_days, progress=_progress,
        )
    except ValueError as err:
        print(f"darkstar forecast eval: {err}", file=sys.stderr)
        return 1
    if result.records.empty:
        print("darkstar forecast eval: no issue time in the range has data for its whole horizon", file=sys.stderr)
        return 1
    metrics = result.metrics()
    doc = {
        "site_id": site.site_id,
        "data": str(args.data),
        "from": args.date_from.isoformat(),
        "to": args.date_to.isoformat(),
        "issue_hour_local": args.issue_hour,
        "horizon_hours": args.horizon_hours,
        "retrain_days": args.retrain_days,
        "weather": "forecast" if weather is not None else "none",
        "pv_scored_on": "daylight slots",
        **metrics,
        "model_ids": result.model_ids,
        "notes": result.notes,
    }
    if args.plot:
        from shared.forecast.plot import plot_walk_forward

        plot_walk_forward(result, metrics, args.plot, title=f"{site.site_id}: {args.date_from}..{args.date_to}")
        _progress(f"plot written to {args.plot}")
    if args.json:
        print(json.dumps(doc, indent=2, default=_json_default))
    else:
        _print_table(doc)
    return 0


def _json_default(obj):
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    return str(obj)


def _print_table(doc: dict) -> None:
    print(f"{doc['site_id']}  {doc['from']}..{doc['to']}  issues={doc['issues']}  weather={doc['weather']}")
    print(f"{'target':6} {'MAE kW':>8} {'RMSE kW':>8} {'pinball':>8} {'cov10-90':>9} {'best base':>10} {'base MAE':>9} {'vs base':>8}")
    for t in ("load", "pv"):
        if f"{t}_mae_kw" not in doc:
            continue
        print(
            f"{t:6} {doc[f'{t}_mae_kw']:8.3f} {doc[f'{t}_rmse_kw']:8.3f} {doc[f'{t}_pinball_kw']:8.3f}"
            f" {doc[f'{t}_coverage_p10_p90']:9.1%} {doc[f'{t}_baseline_best']:>10} {doc[f'{t}_baseline_mae_kw']:9.3f}"
            f" {doc[f'{t}_mae_vs_baseline_pct']:+7.1f}%"
        )
    print(f"train_s mean {doc['train_s']:.1f} (max {doc['train_s_max']:.1f}, {doc['trainings']} trainings),"
          f" forecast_s mean {doc['forecast_s']:.3f} (max {doc['forecast_s_max']:.3f})")
    for note in doc["notes"]:
        print(f"note: {note}")
