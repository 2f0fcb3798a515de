"""What the data allows: MAE of baselines, simple robust forecasts and ORACLES that know part of the future.

Same protocol as ``darkstar forecast eval``: an issue time every day at ``--issue-hour`` local,
horizon ``--horizon-hours``, scored on every (issue, 15-min slot) with an observation, PV on
daylight slots only; the lags come from ``shared.forecast.features.build_rows`` (the code that
makes the eval's baselines), so the baseline figures match the eval's.

Methods (``oracle_*`` use future data and are NOT forecasts; they bound what a given piece of
information is worth):
- ``yesterday``, ``mean7``, ``clearsky_ratio``: the eval's baselines; ``best_baseline`` is the lowest.
- ``median7``, ``median14``: median of the same slot over the last 7 / 14 days (known at issue time).
- ``pv_index_median14``: clear-sky PV x median over 14 days of that slot's clear-sky index.
- ``oracle_day_energy_<shape>``: a recent shape (mean7, median7; for PV also clear sky) scaled so
  that every local day's part of the horizon has its TRUE energy: the value of knowing the daily level.
- ``oracle_true_shape_recent_level``: the TRUE intraday shape of each day scaled to the energy of the
  same slots over the last 7 days: the value of knowing only the shape.
- ``oracle_3h_mean`` (load): the true mean of the surrounding 3 h: what is left is within-3-h spikes.
- ``level_regression_in_sample``: the mean7 shape scaled per day by a level predicted from inputs
  known at issue time (recent level ratios, horizon day, weekday for load), fitted by least squares
  on the evaluated days themselves: optimistic, what a daily-level model on these inputs could give.
Also the correlation of each day's clear-sky index (PV energy / clear-sky energy) with the previous
day's and with the weather forecast's, i.e. how predictable the daily PV level is at issue time.

    uv run python benchmarks/forecast_bounds.py [--homes 1,2,3,4,5,se4] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shared.config import load_site_config
from shared.forecast.evaluate import local_issue_time, weather_from_forecast_columns
from shared.forecast.features import (
    SLOTS_PER_DAY,
    SUN_SHIFT_MAX,
    _nan_quantile_axis0,
    _take,
    build_rows,
    prepare_grid,
)
from shared.forecast.solar import pv_physical_kw, solar_geometry
from shared.sitedata import load_site_data
from shared.slots import SLOT

DATA = ROOT / "examples" / "data"
HOMES = {
    **{str(i): (f"citylearn_building_{i}.csv.gz",
                "citylearn-home4.yaml" if i == 4 else "citylearn-home.yaml",
                date(2017, 2, 1), date(2017, 7, 30)) for i in range(1, 6)},
    "se4": ("se4_home_2025-07_2025-10.csv.gz", "se4-home.yaml", date(2025, 8, 1), date(2025, 10, 30)),
}


def _mae(y: np.ndarray, f: np.ndarray) -> float:
    ok = np.isfinite(y) & np.isfinite(f)
    return float(np.mean(np.abs(y[ok] - f[ok]))) if ok.any() else float("nan")


def _scale_per_day(shape: np.ndarray, truth: np.ndarray, day_key: np.ndarray) -> np.ndarray:
    """``shape`` scaled so that its sum over each group of ``day_key`` equals that of ``truth``."""
    out = np.full(len(shape), np.nan)
    ok = np.isfinite(shape) & np.isfinite(truth)
    keys = pd.Series(day_key[ok])
    s_shape = pd.Series(shape[ok]).groupby(keys.to_numpy()).transform("sum").to_numpy()
    s_true = pd.Series(truth[ok]).groupby(keys.to_numpy()).transform("sum").to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        factor = np.where(s_shape > 1e-9, s_true / s_shape, np.nan)
    out[ok] = shape[ok] * factor
    # a day whose shape has no energy but the truth has some: the shape cannot be scaled
    return out


def _level_regression(
    r: pd.DataFrame, shape: np.ndarray, y: np.ndarray, day_key: np.ndarray, target: str
) -> np.ndarray:
    """``shape`` scaled per (issue, local day) by a daily level predicted from what is known at the
    issue time (recent level ratios, which day of the horizon), least squares fitted IN SAMPLE on the
    evaluated days themselves: optimistic, an upper bound for a level model on these inputs."""
    ok = np.isfinite(shape) & np.isfinite(y)
    g = pd.DataFrame({"key": day_key[ok], "shape": shape[ok], "y": y[ok]})
    if target == "pv":
        feats = ["pv_ratio_1d", "pv_ratio_3d", "pv_ratio_7d", "pv_ratio_3h"]
    else:
        feats = ["load_level_3h", "load_level_24h", "load_level_7d"]
    for f in feats:
        g[f] = r[f].to_numpy()[ok] if f in r else np.nan
    g["horizon_day"] = r["horizon_h"].to_numpy()[ok] // 24
    if target == "load":
        g["dow"] = r["dow"].to_numpy()[ok]
    agg = g.groupby("key").agg({"shape": "sum", "y": "sum", **{f: "first" for f in feats},
                                "horizon_day": "first", **({"dow": "first"} if target == "load" else {})})
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(agg["shape"] > 1e-9, agg["y"] / agg["shape"], np.nan)
        x = [np.ones(len(agg))]
        for f in feats:
            v = agg[f].to_numpy(dtype=float)
            if target == "load":  # recent level relative to the shape's own level
                v = v / (agg["shape"].to_numpy() / np.maximum(1, g.groupby("key").size().to_numpy()))
            x.append(np.nan_to_num(v, nan=np.nanmedian(v) if np.isfinite(v).any() else 0.0))
        for d in (1, 2):
            x.append((agg["horizon_day"].to_numpy() == d).astype(float))
        if target == "load":
            for d in range(6):
                x.append((agg["dow"].to_numpy() == d).astype(float))
    x = np.column_stack(x)
    fit_ok = np.isfinite(ratio)
    coef, *_ = np.linalg.lstsq(x[fit_ok], ratio[fit_ok], rcond=None)
    pred = pd.Series(np.clip(x @ coef, 0.0, None), index=agg.index)
    out = np.full(len(shape), np.nan)
    out[ok] = shape[ok] * pred.reindex(day_key[ok]).to_numpy()
    return out


def _lag_stack(values: np.ndarray, pp: np.ndarray, days_back: np.ndarray, n_days: int) -> np.ndarray:
    return np.stack([_take(values, pp - SLOTS_PER_DAY * (days_back + j)) for j in range(n_days)])


def bounds_for_home(home: str, issue_hour: int = 12, horizon_hours: int = 48) -> dict:
    data_file, site_file, d0, d1 = HOMES[home]
    site = load_site_config(ROOT / "examples" / site_file)
    frame = load_site_data(DATA / data_file).frame
    tz = site.location.tz
    n_steps = horizon_hours * 4
    grid = prepare_grid(frame, None, site.location, site.pv, frame.index[0], frame.index[-1] + SLOT)
    issues = [local_issue_time(d.date(), issue_hour, tz) for d in pd.date_range(d0, d1, freq="D", inclusive="left")]
    issues = [t for t in issues if t + pd.Timedelta(hours=horizon_hours) <= frame.index[-1] + SLOT]
    pos = np.array([grid.position(t) for t in issues])
    r = build_rows(grid, pos, n_steps)
    pp = r["pos"].to_numpy()
    hh = np.tile(np.arange(n_steps), len(pos))
    days_back = hh // SLOTS_PER_DAY + 1
    ii = r["issue_pos"].to_numpy()
    local_day = grid.index[np.clip(pp, 0, len(grid.index) - 1)].tz_convert(tz).normalize()
    # a (issue, local day) key: the scaling oracles scale each day's part of each horizon
    day_key = ii.astype(np.int64) * 100000 + ((local_day - local_day.min()).days.to_numpy())
    out: dict = {"home": home, "issues": len(pos), "from": d0.isoformat(), "to": d1.isoformat()}

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for target in ("load", "pv"):
            values = grid.load_kw if target == "load" else grid.pv_kw
            y = r[f"{target}_kw"].to_numpy()
            lags7 = _lag_stack(values, pp, days_back, 7)
            lags14 = _lag_stack(values, pp, days_back, 14)
            m: dict[str, np.ndarray] = {
                "yesterday": r[f"{target}_lag_day"].to_numpy(),
                "mean7": r[f"{target}_mean7"].to_numpy(),
                "median7": _nan_quantile_axis0(lags7, 0.5),
                "median14": _nan_quantile_axis0(lags14, 0.5),
            }
            baselines = ["yesterday", "mean7"]
            sel = np.isfinite(y)
            if target == "pv":
                cs = r["cs_kw"].to_numpy()
                m["clearsky_ratio"] = cs * r["pv_ratio_1d"].to_numpy()
                baselines.append("clearsky_ratio")
                # clear-sky index of the same slot on the last 14 days, at each day's own sun
                kk = r["sun_shift_slots"].to_numpy().astype(np.int64) + SUN_SHIFT_MAX
                cs_lags = np.stack([_take(grid.sun["cs_kw"], pp - SLOTS_PER_DAY * (days_back + j) + kk)
                                    for j in range(14)])
                idx14 = np.where(cs_lags > 0.01, lags14 / cs_lags, np.nan)
                m["pv_index_median14"] = cs * _nan_quantile_axis0(np.clip(idx14, 0, 3), 0.5)
                m["oracle_day_energy_clearsky"] = _scale_per_day(cs, y, day_key)
                sel &= r["daylight"].to_numpy() > 0
            m["oracle_day_energy_mean7"] = _scale_per_day(m["mean7"], y, day_key)
            m["level_regression_in_sample"] = _level_regression(r, m["mean7"], y, day_key, target)
            m["oracle_day_energy_median7"] = _scale_per_day(m["median7"], y, day_key)
            # true shape, level from the same slots over the last 7 days
            m["oracle_true_shape_recent_level"] = _scale_per_day(y, m["mean7"], day_key)
            if target == "load":
                s = pd.Series(values).rolling(12, center=True, min_periods=6).mean().to_numpy()
                m["oracle_3h_mean"] = _take(s, pp)
            # score everything on the slots where the eval scores (observation present, daylight for PV)
            scores = {k: _mae(y[sel], v[sel]) for k, v in m.items()}
            best = min(baselines, key=lambda b: scores[b])
            res = {"best_baseline": best, "best_baseline_mae_kw": round(scores[best], 4)}
            for k, v in scores.items():
                res[k] = {"mae_kw": round(v, 4), "vs_best_baseline_pct": round(100 * (v / scores[best] - 1), 1)}
            out[target] = res
        out["pv"]["daily_index"] = _daily_index_correlations(frame, site)
    return out


def _daily_index_correlations(frame: pd.DataFrame, site) -> dict:
    """How predictable is the daily PV level: daily clear-sky index vs the previous day's and the weather's."""
    tz = site.location.tz
    geo = solar_geometry(frame.index, site.location)
    cs = pv_physical_kw(site.pv, geo, None)
    day = frame.index.tz_convert(tz).normalize()
    pv_day = frame["pv_kw"].groupby(day).sum(min_count=40)
    cs_day = cs.groupby(day).sum()
    k = (pv_day / cs_day).where(cs_day > 0)
    res = {"lag1_corr": round(float(k.corr(k.shift(1))), 3), "days": int(k.notna().sum()),
           "cv": round(float(k.std() / k.mean()), 3)}
    w = weather_from_forecast_columns(frame)
    if w is not None and {"dni_wm2", "dhi_wm2"} <= set(w.columns):
        phys = pv_physical_kw(site.pv, geo, w)
        kw = phys.groupby(day).sum() / cs_day
        res["forecast_weather_corr"] = round(float(k.corr(kw)), 3)
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--homes", default="1,2,3,4,5,se4")
    ap.add_argument("--issue-hour", type=int, default=12)
    ap.add_argument("--horizon-hours", type=int, default=48)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    results = [bounds_for_home(h.strip(), args.issue_hour, args.horizon_hours) for h in args.homes.split(",")]
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    for target in ("load", "pv"):
        first = results[0][target]
        names = [k for k in first if isinstance(first[k], dict) and "mae_kw" in first[k]]
        print(f"\n{target}: MAE change vs the best baseline (%), best baseline MAE kW")
        print(f"{'method':34}" + "".join(f"{r['home']:>9}" for r in results))
        print(f"{'best baseline':34}" + "".join(f"{r[target]['best_baseline']:>9}" for r in results))
        print(f"{'best baseline MAE kW':34}" + "".join(f"{r[target]['best_baseline_mae_kw']:9.3f}" for r in results))
        for n in names:
            print(f"{n:34}" + "".join(f"{r[target][n]['vs_best_baseline_pct']:+9.1f}" for r in results))
    print("\ndaily PV clear-sky index: lag-1 correlation / correlation with the forecast weather's / CV")
    for r in results:
        d = r["pv"]["daily_index"]
        wc = d.get("forecast_weather_corr", float("nan"))
        print(f"  {r['home']:>4}: {d['lag1_corr']:+.3f} / {wc:+.3f} / {d['cv']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
