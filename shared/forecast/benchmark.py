"""Timing benchmark for Aurora (not a test): training on one year of 15-min data and a 48 h forecast.

    uv run python -m shared.forecast.benchmark [--data FILE.csv] [--site SITE.yaml] [--repeat 20]

Defaults: CityLearn home 1 (one year, hourly data on the 15-min grid = 35,040 slots, with its
24 h-ahead weather forecasts). Prints one JSON document; run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

from shared.config import load_site_config
from shared.forecast.evaluate import weather_from_forecast_columns
from shared.forecast.models import ForecastModels
from shared.sitedata import load_site_data

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA = ROOT / "examples" / "data" / "citylearn_building_1.csv.gz"
DEFAULT_SITE = ROOT / "examples" / "citylearn-home.yaml"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--site", default=str(DEFAULT_SITE))
    ap.add_argument("--repeat", type=int, default=20, help="forecasts to time")
    ap.add_argument("--no-weather", action="store_true")
    args = ap.parse_args(argv)
    site = load_site_config(args.site)
    frame = load_site_data(args.data).frame
    weather = None if args.no_weather else weather_from_forecast_columns(frame)
    print(f"training on {len(frame)} slots ({frame.index[0]} .. {frame.index[-1]})", file=sys.stderr)
    t0, c0 = time.perf_counter(), time.process_time()
    models = ForecastModels.train(frame, weather, site)
    train_s, train_cpu_s = time.perf_counter() - t0, time.process_time() - c0
    issue = frame.index[-1] - timedelta(days=2)
    issue = issue.floor("D") + timedelta(hours=20)
    w_fc = None if weather is None else weather.loc[weather.index >= issue]
    recent = frame.loc[frame.index < issue]
    times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        models.forecast(issue, timedelta(hours=48), w_fc, recent)
        times.append(time.perf_counter() - t0)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    print(json.dumps({
        "data": args.data, "slots": len(frame), "model_id": models.model_id,
        "train_s": round(train_s, 2), "train_cpu_s": round(train_cpu_s, 2), "stage_s": models.card["stage_s"],
        "forecast_48h_s_median": round(statistics.median(times), 4),
        "forecast_48h_s_max": round(max(times), 4), "rows": models.card["rows"],
        "uses_weather": models.card["uses_weather"], "cpus": os.cpu_count(), "load_avg_1min": load,
    }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
