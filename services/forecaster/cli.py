"""``darkstar forecast eval``: walk-forward test of the Aurora forecasts against naive baselines.

    darkstar forecast eval --site SITE.yaml --data FILE.csv --from DATE --to DATE [--json] [--plot out.png]

``--from`` / ``--to`` are the first and last issue day, both inclusive (as in every batch
command, :mod:`services.batch_cli`). Issue times daily at 12:00 local (``--issue-hour``), horizon 48 h, models retrained every
``--retrain-days`` on data strictly before the issue time. Weather inputs are the ``*_fc24h``
forecast columns of the data when present; without them the calendar-and-lags / clear-sky
fallback runs and the output says so. Progress goes to stderr; ``--json`` prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import timedelta

import numpy as np

from services.batch_cli import (
    add_output_arguments,
    add_range_arguments,
    add_site_data_arguments,
    batch_errors,
    date_range,
    report_error,
)
from shared.config import load_site_config
from shared.sitedata import load_site_data


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="forecast_command", metavar="ACTION")
    ev = sub.add_parser("eval", help="walk-forward evaluation of load and PV forecasts against baselines")
    add_site_data_arguments(ev)
    add_range_arguments(ev)
    add_output_arguments(ev, quiet=False)
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
        date_from, date_to = date_range(args)
    except batch_errors() as err:
        return report_error("forecast eval", err)
    frame = data.frame
    weather = None if args.no_weather else weather_from_forecast_columns(frame)
    _progress(data.report.summary())
    _progress(
        "weather: " + ("forecast columns " + ", ".join(weather.columns) if weather is not None
                       else "none (calendar-and-lags load, clear-sky PV fallback)")
    )
    try:
        result = walk_forward(
            frame, weather, site, date_from, date_to + timedelta(days=1), issue_hour_local=args.issue_hour,
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
        "from": date_from.isoformat(),
        "to": date_to.isoformat(),
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

        plot_walk_forward(result, metrics, args.plot, title=f"{site.site_id}: {date_from}..{date_to}")
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
