"""Cut the negative-price days of ``darkstar plan --benchmark --negative`` out of the ENTSO-E exports.

    uv run python benchmarks/negative_price_days.py [--source examples/data/prices-entsoe]

Reads the SE3/SE4 2023 and 2024 day-ahead exports shipped in ``examples/data/prices-entsoe/``
(provenance: ``examples/data/PROVENANCE.md``), picks the 20 dates of July-October (the months the SE4 home's load/PV
covers) with at least 3 negative hours and the lowest minimum price (SE4's prices, SE3's where
SE4 has none), and writes each date plus the next day (48 h: the planner's horizon) to
``examples/data/entsoe_negative_days_SE3_SE4_2023_2024.csv`` (UTC hour, zone, source date,
EUR/kWh). The CSV is committed; running this again rewrites it identically.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "examples" / "data" / "prices-entsoe"
OUT = ROOT / "examples" / "data" / "entsoe_negative_days_SE3_SE4_2023_2024.csv"


def read_export(path: Path) -> pd.Series:
    """EUR/kWh per UTC hour from an ENTSO-E export (MTU in CET/CEST, EUR/MWh)."""
    raw = pd.read_csv(path)
    start = pd.to_datetime(raw.iloc[:, 0].str[:16], format="%d.%m.%Y %H:%M")
    price = pd.to_numeric(raw.iloc[:, 1], errors="coerce") / 1000.0
    local = start.dt.tz_localize("Europe/Stockholm", ambiguous="infer", nonexistent="shift_forward")
    return pd.Series(price.to_numpy(), index=pd.DatetimeIndex(local).tz_convert("UTC")).dropna()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--source", type=Path, default=SOURCE, help="folder of the ENTSO-E exports")
    parser.add_argument("--days", type=int, default=20)
    args = parser.parse_args()
    zones = {z: pd.concat([read_export(args.source / f"{z}_{y}.csv.gz") for y in (2023, 2024)]) for z in ("SE4", "SE3")}
    candidates: dict[pd.Timestamp, tuple[float, str]] = {}
    for zone, s in zones.items():
        s = s[~s.index.duplicated()]
        local_day = s.index.tz_convert("Europe/Stockholm").normalize()
        stats = s.groupby(local_day).agg(["min", lambda v: int((v < 0).sum())])
        stats.columns = ["min", "negative_hours"]
        for day, row in stats.iterrows():
            if day.month in (7, 8, 9, 10) and row["negative_hours"] >= 3 and day not in candidates:
                candidates[day] = (float(row["min"]), zone)
    picked = sorted(candidates.items(), key=lambda kv: kv[1][0])[: args.days]
    rows = []
    for day, (_, zone) in sorted(picked):
        s = zones[zone]
        window = s[(s.index >= day.tz_convert("UTC")) & (s.index < (day + pd.Timedelta(days=2)).tz_convert("UTC"))]
        window = window[~window.index.duplicated()]
        for ts, price in window.items():
            rows.append({"hour_utc": ts.isoformat(), "zone": zone, "source_day": day.date().isoformat(),
                         "spot_price": round(float(price), 5)})
    pd.DataFrame(rows).to_csv(OUT, index=False)
    print(f"{len(picked)} days, {len(rows)} hours -> {OUT}")


if __name__ == "__main__":
    main()
