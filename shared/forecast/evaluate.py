"""Walk-forward evaluation of Aurora against naive baselines (no future data ever reaches a model).

For each issue time (daily at a local hour), models are (re)trained only on observations before
it, fed only weather FORECASTS for the horizon, and scored on the following ``horizon`` hours.
Baselines: same slot yesterday; mean of the same slot over the last 7 days; for PV also clear sky
scaled by the measured/clear-sky ratio of the 24 h before the issue time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd

from shared.config import SiteConfig
from shared.forecast.features import HISTORY_DAYS_NEEDED, build_rows, prepare_grid
from shared.forecast.metrics import coverage, mae, pinball_loss, rmse
from shared.forecast.models import ForecastModels
from shared.slots import SLOT, UTC

TARGETS = ("load", "pv")
BASELINES = {
    "load": ("yesterday", "mean7"),
    "pv": ("yesterday", "mean7", "clearsky_ratio"),
}


def weather_from_forecast_columns(frame: pd.DataFrame) -> pd.DataFrame | None:
    """Weather forecast frame (temp_c, ghi/dni/dhi_wm2, cloud_cover_pct) from ``*_fc24h`` columns, or None."""
    cols = {c: c.removesuffix("_fc24h") for c in frame.columns if c.endswith("_fc24h")}
    if not cols:
        return None
    return frame[list(cols)].rename(columns=cols)


@dataclass
class WalkForwardResult:
    records: pd.DataFrame  # one row per (issue, slot) with actuals, forecasts and baselines
    train_s: list[float] = field(default_factory=list)
    forecast_s: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    model_ids: list[str] = field(default_factory=list)

    def metrics(self) -> dict:
        """Scores per target: model and each baseline; PV scored over daylight slots only."""
        r = self.records
        out: dict = {"issues": int(r["issue"].nunique()) if len(r) else 0}
        for t in TARGETS:
            sel = r[np.isfinite(r[f"{t}_actual_kw"])]
            if t == "pv":
                sel = sel[sel["daylight"] > 0]
            y = sel[f"{t}_actual_kw"].to_numpy()
            out[f"{t}_slots"] = int(len(y))
            if not len(y):
                continue
            q = sel[[f"{t}_p10_kw", f"{t}_p50_kw", f"{t}_p90_kw"]].to_numpy()
            out[f"{t}_mae_kw"] = mae(y, q[:, 1])
            out[f"{t}_rmse_kw"] = rmse(y, q[:, 1])
            out[f"{t}_pinball_kw"] = pinball_loss(y, q)
            out[f"{t}_coverage_p10_p90"] = coverage(y, q[:, 0], q[:, 2])
            best_name, best_mae = None, np.inf
            for b in BASELINES[t]:
                col = f"{t}_{b}_kw"
                ok = np.isfinite(sel[col].to_numpy())
                yb, pb = y[ok], sel[col].to_numpy()[ok]
                if not ok.any():
                    continue
                b_mae = mae(yb, pb)
                out[f"{t}_baseline_{b}_mae_kw"] = b_mae
                out[f"{t}_baseline_{b}_rmse_kw"] = rmse(yb, pb)
                out[f"{t}_baseline_{b}_pinball_kw"] = pinball_loss(yb, np.column_stack([pb, pb, pb]))
                out[f"{t}_baseline_{b}_coverage_frac"] = float(ok.mean())
                if b == "mean7":
                    lo, hi = sel[f"{t}_mean7_p10_kw"].to_numpy()[ok], sel[f"{t}_mean7_p90_kw"].to_numpy()[ok]
                    out[f"{t}_baseline_mean7_coverage_p10_p90"] = coverage(yb, lo, hi)
                if b_mae < best_mae:
                    best_name, best_mae = b, b_mae
            out[f"{t}_baseline_mae_kw"] = float(best_mae)
            out[f"{t}_baseline_best"] = best_name
            out[f"{t}_mae_vs_baseline_pct"] = float(100.0 * (out[f"{t}_mae_kw"] / best_mae - 1.0))
            if t == "pv":
                out["pv_fallback_frac"] = float(sel["pv_fallback"].mean())
            else:
                out["load_fallback_frac"] = float(sel["load_fallback"].mean())
        out["train_s"] = float(np.mean(self.train_s)) if self.train_s else 0.0
        out["train_s_max"] = float(np.max(self.train_s)) if self.train_s else 0.0
        out["trainings"] = len(self.train_s)
        out["forecast_s"] = float(np.mean(self.forecast_s)) if self.forecast_s else 0.0
        out["forecast_s_max"] = float(np.max(self.forecast_s)) if self.forecast_s else 0.0
        return out


def local_issue_time(day: date, hour: int, tz) -> pd.Timestamp:
    return pd.Timestamp(datetime(day.year, day.month, day.day, hour), tz=tz).tz_convert(UTC)


def baseline_rows(frame: pd.DataFrame, site: SiteConfig, issue: pd.Timestamp, n_steps: int) -> pd.DataFrame:
    """Baseline forecasts for one issue time, from observations strictly before it."""
    start = issue - timedelta(days=HISTORY_DAYS_NEEDED)
    hist = frame.loc[(frame.index >= start) & (frame.index < issue), ["load_kw", "pv_kw"]]
    grid = prepare_grid(hist, None, site.location, site.pv, start, issue + SLOT * n_steps)
    rows = build_rows(grid, np.array([grid.position(issue)]), n_steps)
    ratio = rows["pv_ratio_1d"]
    return pd.DataFrame(
        {
            "load_yesterday_kw": rows["load_lag_day"],
            "load_mean7_kw": rows["load_mean7"],
            "load_mean7_p10_kw": rows["load_p10_7"],
            "load_mean7_p90_kw": rows["load_p90_7"],
            "pv_yesterday_kw": rows["pv_lag_day"],
            "pv_mean7_kw": rows["pv_mean7"],
            "pv_mean7_p10_kw": rows["pv_p10_7"],
            "pv_mean7_p90_kw": rows["pv_p90_7"],
            "pv_clearsky_ratio_kw": rows["cs_kw"] * ratio,
            "daylight": rows["daylight"],
        },
        index=rows.index,
    )


def walk_forward(
    frame: pd.DataFrame,
    weather: pd.DataFrame | None,
    site: SiteConfig,
    date_from: date,
    date_to: date,
    *,
    issue_hour_local: int = 12,
    horizon_hours: int = 48,
    retrain_days: int = 7,
    max_train_days: int = 365,
    progress: Callable[[str], None] | None = None,
    train_kwargs: dict | None = None,
) -> WalkForwardResult:
    """Issue a forecast every day in [date_from, date_to) and score it; retrain every ``retrain_days``.

    Models see only ``frame`` rows before each issue time and are trained for the issue hour being
    evaluated (simulated issue times at that local hour) unless ``train_kwargs`` says otherwise. ``weather`` should hold FORECASTS
    (e.g. CityLearn ``*_fc24h``); ``None`` runs the no-weather fallback and the result says so.
    """
    tz = site.location.tz
    n_steps = horizon_hours * 4
    result = WalkForwardResult(records=pd.DataFrame())
    if weather is None:
        result.notes.append("no weather forecast in the data: load uses calendar-and-lags, PV clear sky x recent ratio")
    models: ForecastModels | None = None
    trained_at: pd.Timestamp | None = None
    parts = []
    days = pd.date_range(date_from, date_to, freq="D", inclusive="left")
    for n, d in enumerate(days):
        issue = local_issue_time(d.date(), issue_hour_local, tz)
        if issue + timedelta(hours=horizon_hours) > frame.index[-1] + SLOT:
            result.notes.append(f"stopped before {d.date()}: the data ends within the horizon")
            break
        if models is None or trained_at is None or issue - trained_at >= timedelta(days=retrain_days):
            lo = issue - timedelta(days=max_train_days)
            hist = frame.loc[(frame.index >= lo) & (frame.index < issue)]
            w_hist = None if weather is None else weather.loc[(weather.index >= lo) & (weather.index < issue)]
            t0 = time.perf_counter()
            kwargs = {"issue_hours_local": (issue_hour_local,), **(train_kwargs or {})}
            models = ForecastModels.train(hist, w_hist, site, **kwargs)
            result.train_s.append(time.perf_counter() - t0)
            result.model_ids.append(models.model_id)
            trained_at = issue
            if progress:
                progress(f"[{n + 1}/{len(days)}] {d.date()}: trained {models.model_id} on {len(hist)} slots"
                         f" in {result.train_s[-1]:.1f} s")
        recent = frame.loc[(frame.index >= issue - timedelta(days=HISTORY_DAYS_NEEDED)) & (frame.index < issue)]
        w_fc = None
        if weather is not None:
            w_fc = weather.loc[(weather.index >= issue) & (weather.index < issue + timedelta(hours=horizon_hours + 3))]
        t0 = time.perf_counter()
        fc = models.forecast(issue, timedelta(hours=horizon_hours), w_fc, recent)
        result.forecast_s.append(time.perf_counter() - t0)
        base = baseline_rows(frame, site, issue, n_steps)
        actual = frame.reindex(fc.index)
        rec = pd.concat([fc, base], axis=1)
        rec["load_actual_kw"] = actual["load_kw"].to_numpy()
        rec["pv_actual_kw"] = actual["pv_kw"].to_numpy()
        rec["issue"] = issue
        rec["horizon_h"] = np.arange(n_steps) / 4.0
        rec["load_fallback"] = bool(fc.attrs.get("fallback_load"))
        rec["pv_fallback"] = bool(fc.attrs.get("fallback_pv"))
        for note in fc.attrs.get("notes", []):
            if note not in result.notes and "slots from" not in note:
                result.notes.append(note)
        parts.append(rec)
    if parts:
        result.records = pd.concat(parts)
    return result
