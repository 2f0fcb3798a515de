"""Aurora forecast models: load and PV, p10/p50/p90 for the next 48 h in 15-min slots.

- PV = pvlib physical estimate per array from the weather forecast, plus a LightGBM model of the
  residual (shading, soiling, clipping, forecast bias). Zero while the sun is down.
- Load = LightGBM on calendar + public holidays + lags relative to the issue time + temperature
  + context (away / vacation) when the history carries those columns.
- Without weather: "fallback" models (calendar and lags for load; clear sky times the recent
  clear-sky ratio plus a learned residual for PV), and the forecast says so in ``attrs``.

A model set is versioned by ``model_id`` = name + training range + content hash and saved as a
pickle with a JSON card beside it.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shared.config import LocationConfig, PVConfig, SiteConfig
from shared.forecast.features import (
    CONTEXT_COLUMNS,
    HISTORY_DAYS_NEEDED,
    IRRADIANCE_COLUMNS,
    SLOTS_PER_DAY,
    WEATHER_COLUMNS,
    build_rows,
    has_irradiance,
    prepare_grid,
    training_issue_positions,
)
from shared.forecast.quantile import QuantileModel
from shared.forecast.solar import pv_physical_kw, solar_geometry
from shared.slots import SLOT, UTC, floor_slot

MODEL_NAME = "aurora"
FORECAST_COLUMNS = ["load_p10_kw", "load_p50_kw", "load_p90_kw", "pv_p10_kw", "pv_p50_kw", "pv_p90_kw"]
LOAD_BASE_FEATURES = [
    "slot_of_day", "dow", "daytype", "holiday", "horizon_h",
    "load_lag_day", "load_lag_week", "load_mean7", "load_std7", "load_p10_7", "load_p90_7", "load_med7", "load_lag_2week", "load_mean7_wide", "load_med7_wide",
    "load_level_3h", "load_level_24h", "load_level_7d", "load_med14", "load_p25_14", "load_p75_14", "issue_slot",
]
PV_BASE_FEATURES = [
    "slot_of_day", "horizon_h", "zenith_deg", "azimuth_deg", "cs_kw", "base_kw",
    "pv_ratio_1d", "pv_ratio_3d", "pv_ratio_7d", "pv_lag_day", "pv_mean7", "pv_p10_7", "pv_p90_7", "pv_med7", "pv_lag_index", "pv_med7_index", "pv_p90_7_index",
    "pv_ratio_3h", "pv_ratio_6h", "pv_index_med14", "pv_index_p75_14", "issue_slot",
]
REFIT_MIN_DAYS = 180
WEATHER_MARGIN_FRAC = 0.03  # a weather model must beat the fallback by 3 % on held-back data
SHIFT_CANDIDATES = tuple(range(-8, 9, 2))  # weather label conventions up to +-2 h


class ForecastError(ValueError):
    """Training or forecasting cannot proceed; the message says what is missing."""


@dataclass
class ForecastModels:
    location: LocationConfig
    pv: PVConfig
    load_weather: QuantileModel | None
    load_fallback: QuantileModel
    pv_weather: QuantileModel | None
    pv_fallback: QuantileModel | None
    weather_shift_slots: int = 0
    weather_columns: list[str] = field(default_factory=list)
    default_pv_ratio: float = 0.7
    use_load_weather: bool = True  # False: the weather model did not beat the fallback on held-back data
    use_pv_weather: bool = True
    card: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ identity

    @property
    def model_id(self) -> str:
        return str(self.card.get("model_id", "untrained"))

    def _content_hash(self) -> str:
        h = hashlib.sha256()
        for qm in (self.load_weather, self.load_fallback, self.pv_weather, self.pv_fallback):
            if qm is None:
                h.update(b"-")
                continue
            for b in qm.boosters:
                h.update(b.model_to_string().encode())
            h.update(f"{qm.scale_lo:.6f}/{qm.scale_hi:.6f}".encode())
        h.update(json.dumps([self.weather_shift_slots, self.default_pv_ratio, self.pv.model_dump(mode="json"),
                             self.location.model_dump(mode="json")], sort_keys=True).encode())
        return h.hexdigest()[:10]

    # ------------------------------------------------------------------ training

    @classmethod
    def train(
        cls,
        history: pd.DataFrame,
        weather: pd.DataFrame | None,
        site: SiteConfig,
        *,
        issue_hours_local: tuple[int, ...] = (0, 12),
        horizon_hours: int = 48,
        calibration_days: int = 14,
        num_rounds: int = 400,
        refit: bool | None = None,
        row_stride: int = 3,
    ) -> ForecastModels:
        """Train on ``history`` (15-min UTC grid: load_kw, pv_kw, optional away/vacation) and the
        weather for the same slots (forecasts preferably; ``None`` -> fallback models only).

        Rows whose target is missing are dropped; nothing is interpolated. ``row_stride`` keeps
        every n-th horizon step per simulated issue time (neighbouring slots are nearly duplicates).
        ``refit``: after early stopping and band calibration on the held-back days, train again on
        all rows with the rounds found, so the models see the latest days too. ``None``: only with
        at least ``REFIT_MIN_DAYS`` of history (with less, the refit bands came out too narrow:
        SE4, 1-4 months, PV p10-p90 coverage 70 %).

        Named steps (pvlib ModelChain style): :meth:`_training_grid` (features on the slot grid),
        :meth:`_training_rows` (simulated issue times, calibration split), :meth:`_fit_load`,
        :meth:`_fit_pv`, then the model card.
        """
        t0 = time.perf_counter()
        grid, weather, shift, days, refit = cls._training_grid(history, weather, site, refit)
        rows, cal_days = cls._training_rows(grid, site, issue_hours_local, horizon_hours, row_stride,
                                            calibration_days, days)
        ratios = rows.loc[rows["daylight"] > 0, "pv_ratio_3d"].dropna()
        default_ratio = float(ratios.median()) if len(ratios) else 0.7
        w_cols = [c for c in WEATHER_COLUMNS if c in rows.columns]

        def fit(features: list[str], frame: pd.DataFrame, target: np.ndarray, rounds: int,
                scale: np.ndarray | None = None) -> QuantileModel:
            ok = np.isfinite(target)
            cal = frame["_cal"].to_numpy()
            x, y = frame.loc[ok & ~cal], target[ok & ~cal]
            xc, yc = frame.loc[ok & cal], target[ok & cal]
            cal_scale = None if scale is None else scale[ok & cal]
            return QuantileModel(features=features, num_rounds=rounds).fit(x, y, xc, yc, refit=refit,
                                                                           cal_scale=cal_scale)

        t_features = time.perf_counter() - t0
        load_fb, load_w = cls._fit_load(rows, weather, fit, num_rounds)
        t_load = time.perf_counter() - t0 - t_features
        pv_fb, pv_w = cls._fit_pv(rows, site, w_cols, default_ratio, fit, num_rounds)
        models = cls(
            location=site.location, pv=site.pv, load_weather=load_w, load_fallback=load_fb, pv_weather=pv_w,
            pv_fallback=pv_fb, weather_shift_slots=shift, weather_columns=w_cols, default_pv_ratio=default_ratio,
            use_load_weather=_beats(load_w, load_fb), use_pv_weather=_beats(pv_w, pv_fb),
        )
        train_s = time.perf_counter() - t0
        index = pd.DatetimeIndex(history.index)
        first, last = index.min(), index.max() + SLOT
        fitted = (("load_weather", load_w), ("load_fallback", load_fb), ("pv_weather", pv_w), ("pv_fallback", pv_fb))
        models.card = {
            "name": MODEL_NAME,
            "train_from": first.isoformat(),
            "train_to": last.isoformat(),
            "rows": int(len(rows)),
            "rows_with_load": int(np.isfinite(rows["load_kw"]).sum()),
            "issue_hours_local": list(issue_hours_local),
            "row_stride": row_stride,
            "refit": bool(refit),
            "calibration_days": cal_days,
            "weather_columns": w_cols,
            "weather_shift_slots": shift,
            "uses_weather": {"load": load_w is not None and models.use_load_weather,
                             "pv": pv_w is not None and models.use_pv_weather},
            "held_back_pinball_kw": {
                name: (None if m is None or m.cal_pinball is None else round(m.cal_pinball, 4)) for name, m in fitted
            },
            "band_scales": {name: [round(m.scale_lo, 3), round(m.scale_hi, 3)] for name, m in fitted if m is not None},
            "train_s": round(train_s, 3),
            "stage_s": {"features": round(t_features, 2), "load": round(t_load, 2),
                        "pv": round(train_s - t_features - t_load, 2)},
        }
        models.card["model_id"] = f"{MODEL_NAME}-{first:%Y%m%d}-{last:%Y%m%d}-{models._content_hash()}"
        return models

    @classmethod
    def _training_grid(cls, history: pd.DataFrame, weather: pd.DataFrame | None, site: SiteConfig,
                       refit: bool | None) -> tuple[pd.DataFrame, pd.DataFrame | None, int, float, bool]:
        """Step 1: check the history, keep usable weather, detect its time shift, build the feature grid.
        Returns (grid, weather or None, shift in slots, days of history, refit)."""
        if history.empty or "load_kw" not in history or "pv_kw" not in history:
            raise ForecastError("training history needs columns load_kw and pv_kw with data")
        index = pd.DatetimeIndex(history.index)
        if index.tz is None:
            raise ForecastError("training history index must be tz-aware (UTC slot starts)")
        start, end = index.min().tz_convert(UTC), index.max().tz_convert(UTC) + SLOT
        days = (end - start) / timedelta(days=1)
        if days < 9:
            raise ForecastError(f"training needs at least 9 days of history, got {days:.1f}")
        if refit is None:
            refit = days >= REFIT_MIN_DAYS
        if weather is not None:
            weather = weather.loc[(weather.index >= start) & (weather.index < end)]
        use_weather = has_irradiance(weather) or (weather is not None and "temp_c" in weather.columns)
        if not use_weather:
            weather = None
        shift = cls._detect_weather_shift(history, weather, site) if has_irradiance(weather) else 0
        grid = prepare_grid(history, weather, site.location, site.pv, start, end, weather_shift_slots=shift)
        return grid, weather, shift, days, refit

    @staticmethod
    def _training_rows(grid: pd.DataFrame, site: SiteConfig, issue_hours_local: tuple[int, ...], horizon_hours: int,
                       row_stride: int, calibration_days: int, days: float) -> tuple[pd.DataFrame, int]:
        """Step 2: one row per (simulated issue time, horizon step), the last days marked ``_cal``
        (early stopping and band calibration). Returns (rows, calibration days)."""
        n_steps = horizon_hours * 4
        issue_pos = training_issue_positions(grid, site.location.tz, issue_hours_local, first_valid=7 * SLOTS_PER_DAY)
        if len(issue_pos) == 0:
            raise ForecastError("no training issue times fit in the history")
        rows = build_rows(grid, issue_pos, n_steps)
        rows = rows[(rows["pos"] < len(grid.index)) & (rows["horizon_h"] * 4 % max(row_stride, 1) == 0)]
        cal_days = min(calibration_days, int(days * 0.25))
        cal_start = len(grid.index) - cal_days * SLOTS_PER_DAY
        is_cal = rows["issue_pos"].to_numpy() >= cal_start
        # rows issued before the held-back window whose targets fall inside it belong to neither set
        rows = rows[is_cal | (rows["pos"].to_numpy() < cal_start)]
        is_cal = rows["issue_pos"].to_numpy() >= cal_start
        return rows.assign(_cal=is_cal).reset_index(drop=True), int(cal_days)

    @staticmethod
    def _fit_load(rows: pd.DataFrame, weather: pd.DataFrame | None, fit: Callable[..., QuantileModel],
                  num_rounds: int) -> tuple[QuantileModel, QuantileModel | None]:
        """Step 3: the load models, calendar-and-lags (fallback) and with temperature when there is one."""
        context = [c for c in CONTEXT_COLUMNS if c in rows.columns]
        load_target = rows["load_kw"].to_numpy()
        load_fb = fit(LOAD_BASE_FEATURES + context, rows, load_target, num_rounds)
        load_w = None
        if weather is not None and "temp_c" in rows.columns:
            has_t = rows["temp_c"].notna().to_numpy()
            sub = rows.loc[has_t]
            load_w = fit(LOAD_BASE_FEATURES + context + ["temp_c", "temp_mean_24h"], sub, load_target[has_t], num_rounds)
        return load_fb, load_w

    @staticmethod
    def _fit_pv(rows: pd.DataFrame, site: SiteConfig, w_cols: list[str], default_ratio: float,
                fit: Callable[..., QuantileModel], num_rounds: int) -> tuple[QuantileModel | None, QuantileModel | None]:
        """Step 4: the PV models on daylight rows (at night the forecast is zero by physics)."""
        if not site.pv.arrays:
            return None, None
        day = rows.loc[rows["daylight"] > 0]
        # Fallback: model the clear-sky index pv / clear-sky pv (stationary over seasons and hours);
        # the first and last minutes of daylight (tiny clear-sky power) carry no usable ratio.
        min_cs = 0.02 * site.pv.kwp_total
        fb = day.loc[day["cs_kw"] >= min_cs]
        fb_rows = fb.assign(base_kw=_fallback_base(fb, default_ratio))
        ratio_target = np.clip(fb["pv_kw"] / fb["cs_kw"], 0.0, 2.5).to_numpy()
        pv_fb = fit(PV_BASE_FEATURES, fb_rows, ratio_target, num_rounds, scale=fb["cs_kw"].to_numpy())
        pv_w = None
        if "phys_kw" in fb.columns:
            # Weather model: same target, plus the physical estimate from the weather forecast
            # (as a clear-sky index too), so it can only add what the weather really tells.
            has_w = fb["phys_kw"].notna().to_numpy()
            wd = fb_rows.loc[has_w]
            w_rows = wd.assign(phys_index=wd["phys_kw"] / wd["cs_kw"])
            feats = PV_BASE_FEATURES + ["phys_kw", "phys_index"] + [c for c in w_cols]
            pv_w = fit(feats, w_rows, ratio_target[has_w], num_rounds, scale=wd["cs_kw"].to_numpy())
        return pv_fb, pv_w

    @staticmethod
    def _detect_weather_shift(history: pd.DataFrame, weather: pd.DataFrame, site: SiteConfig) -> int:
        """The weather time shift (slots) under which the physical PV estimate best matches measured PV.

        Sources label hourly irradiance by the hour's start, middle or end; a wrong guess costs a
        lot around sunrise and sunset, so the convention is read from the data.
        """
        if not site.pv.arrays:
            return 0
        idx = pd.DatetimeIndex(history.index)
        geometry = solar_geometry(idx, site.location)
        day = geometry["zenith_deg"].to_numpy() < 90
        pv = history["pv_kw"].to_numpy(dtype=float)
        best, best_corr = 0, -np.inf
        w_full = weather.reindex(pd.date_range(idx[0] - SLOT * 8, idx[-1] + SLOT * 9, freq=SLOT, tz=UTC))
        cols = [c for c in weather.columns if c in IRRADIANCE_COLUMNS or c == "temp_c"]
        for k in SHIFT_CANDIDATES:
            w = w_full[cols].shift(-k).reindex(idx)
            phys = pv_physical_kw(site.pv, geometry, w).to_numpy()
            ok = day & np.isfinite(phys) & np.isfinite(pv)
            if ok.sum() < 100:
                continue
            corr = float(np.corrcoef(phys[ok], pv[ok])[0, 1])
            if corr > best_corr + 1e-4:
                best, best_corr = k, corr
        return best

    # ------------------------------------------------------------------ forecasting

    def forecast(
        self,
        issue_time: pd.Timestamp | str,
        horizon: timedelta | float = timedelta(hours=48),
        weather_forecast: pd.DataFrame | None = None,
        recent_history: pd.DataFrame | None = None,
    ) -> pd.DataFrame:
        """p10/p50/p90 of load and PV (kW) per 15-min slot from ``issue_time`` over ``horizon``.

        ``recent_history`` must cover the ~10 days before the issue time (load_kw, pv_kw); rows at
        or after the issue time are ignored (no peeking). ``attrs``: model_id, issued_at, fallback
        (bool: some slots were forecast without weather) and notes (what and why).
        """
        hours = horizon.total_seconds() / 3600 if isinstance(horizon, timedelta) else float(horizon)
        n_steps = int(round(hours * 4))
        if n_steps <= 0:
            raise ForecastError(f"horizon must be positive, got {hours} h")
        issue = floor_slot(issue_time)
        start = issue - timedelta(days=HISTORY_DAYS_NEEDED)
        end = issue + SLOT * n_steps
        notes: list[str] = []
        if recent_history is None or recent_history.empty:
            recent_history = pd.DataFrame(columns=["load_kw", "pv_kw"], index=pd.DatetimeIndex([], tz=UTC))
            notes.append("no recent history: lag features missing, forecast is calendar/weather only")
        hist = recent_history.loc[(recent_history.index >= start) & (recent_history.index < issue)]
        if weather_forecast is not None and not self.weather_columns:
            weather_forecast = None
        if weather_forecast is not None:
            weather_forecast = weather_forecast.loc[
                (weather_forecast.index >= issue) & (weather_forecast.index < end + SLOT * 9)
            ]
        grid = prepare_grid(hist, weather_forecast, self.location, self.pv, start, end, self.weather_shift_slots)
        rows = build_rows(grid, np.array([grid.position(issue)]), n_steps)
        out = pd.DataFrame(index=pd.DatetimeIndex(rows.index, name="slot_start"), columns=FORECAST_COLUMNS, dtype=float)

        # load
        load_q = self.load_fallback.predict(rows)
        load_fb = np.ones(len(rows), dtype=bool)
        if self.load_weather is not None and self.use_load_weather and "temp_c" in rows.columns:
            has_t = rows["temp_c"].notna().to_numpy()
            if has_t.any():
                load_q[has_t] = self.load_weather.predict(rows.loc[has_t])
                load_fb = ~has_t
        load_q = np.clip(load_q, 0.0, None)
        out[["load_p10_kw", "load_p50_kw", "load_p90_kw"]] = load_q

        # PV
        pv_q = np.zeros((len(rows), 3))
        day = rows["daylight"].to_numpy() > 0
        pv_fb = np.zeros(len(rows), dtype=bool)
        if self.pv_fallback is not None and day.any():
            d = rows.loc[day]
            base = _fallback_base(d, self.default_pv_ratio)
            q = self.pv_fallback.predict(d.assign(base_kw=base)) * d["cs_kw"].to_numpy()[:, None]
            pv_fb[day] = True
            if self.pv_weather is not None and "phys_kw" in d.columns and not self.use_pv_weather:
                has_w = d["phys_kw"].notna().to_numpy()
                pv_fb[np.flatnonzero(day)[has_w]] = False
                notes.append("pv: weather-driven model not used: it did not beat the clear-sky model on held-back data")
            elif self.pv_weather is not None and "phys_kw" in d.columns:
                has_w = d["phys_kw"].notna().to_numpy()
                if has_w.any():
                    dw = d.loc[has_w]
                    dw = dw.assign(base_kw=base[has_w], phys_index=dw["phys_kw"] / dw["cs_kw"].clip(lower=1e-6))
                    q[has_w] = self.pv_weather.predict(dw) * dw["cs_kw"].to_numpy()[:, None]
                    pv_fb[np.flatnonzero(day)[has_w]] = False
            pv_q[day] = q
        elif not self.pv.arrays:
            notes.append("no PV arrays configured: PV forecast is zero")
        cap = self.pv.inverter_ac_limit_kw or (self.pv.kwp_total * 1.1 if self.pv.arrays else 0.0)
        pv_q = np.sort(np.clip(pv_q, 0.0, cap), axis=1)
        out[["pv_p10_kw", "pv_p50_kw", "pv_p90_kw"]] = pv_q

        if self.load_weather is not None and not self.use_load_weather and "temp_c" in rows.columns:
            load_fb[rows["temp_c"].notna().to_numpy()] = False
            notes.append("load: temperature model not used: it did not beat calendar-and-lags on held-back data")
        if load_fb.any():
            reason = "no weather model" if self.load_weather is None else "no temperature forecast"
            notes.append(f"load: {int(load_fb.sum())}/{len(rows)} slots from the calendar-and-lags fallback ({reason})")
        if pv_fb.any():
            reason = "no weather model" if self.pv_weather is None else "no irradiance forecast"
            notes.append(
                f"pv: {int(pv_fb.sum())}/{int(day.sum())} daylight slots from clear sky x recent ratio fallback ({reason})"
            )
        lag_missing = rows["load_level_24h"].isna().iloc[0]
        if lag_missing:
            notes.append("recent history has less than half of the last 24 h: level features missing")
        out.attrs.update(
            model_id=self.model_id, issued_at=issue.isoformat(), fallback=bool(load_fb.any() or pv_fb.any()),
            fallback_load=bool(load_fb.any()), fallback_pv=bool(pv_fb.any()),
            notes=notes,
        )
        return out

    # ------------------------------------------------------------------ persistence

    def save(self, path: str | Path) -> Path:
        """Pickle the model set to ``path`` and write its card to ``path`` with suffix .json."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as fh:
            pickle.dump(self, fh, protocol=pickle.HIGHEST_PROTOCOL)
        path.with_suffix(".json").write_text(json.dumps(self.card, indent=2, sort_keys=True))
        return path

    @classmethod
    def load(cls, path: str | Path) -> ForecastModels:
        path = Path(path)
        if not path.exists():
            raise ForecastError(f"model file not found: {path}")
        with path.open("rb") as fh:
            obj = pickle.load(fh)  # noqa: S301 - our own model files only
        if not isinstance(obj, cls):
            raise ForecastError(f"{path} does not hold Aurora forecast models")
        return obj


def _beats(weather_model: QuantileModel | None, fallback: QuantileModel | None) -> bool:
    """Use a weather-driven model only if it scored better than the fallback on held-back data."""
    if weather_model is None:
        return False
    if fallback is None or weather_model.cal_pinball is None or fallback.cal_pinball is None:
        return True
    # A margin, because a weather model has more features to overfit with: real weather
    # information shows up as a clear gain, noise as a coin flip.
    return weather_model.cal_pinball < (1.0 - WEATHER_MARGIN_FRAC) * fallback.cal_pinball


def _fallback_base(rows: pd.DataFrame, default_ratio: float) -> pd.Series:
    """Clear-sky PV times the recent measured/clear-sky ratio (3 days, else 1 day, else typical).

    A feature for the PV models (and the no-history estimate), not an input that is ever filled in.
    """
    ratio = rows["pv_ratio_3d"].fillna(rows["pv_ratio_1d"]).fillna(default_ratio)
    return rows["cs_kw"] * ratio


# ---------------------------------------------------------------------------- model replacement


def score_models(
    models: ForecastModels,
    data: pd.DataFrame,
    weather: pd.DataFrame | None,
    issue_times: list[pd.Timestamp],
    horizon_hours: int = 48,
) -> float:
    """Mean pinball loss (kW, load + PV, over p10/p50/p90) of forecasts issued at ``issue_times``."""
    from shared.forecast.metrics import pinball_loss

    losses = []
    for issue in issue_times:
        fc = models.forecast(issue, timedelta(hours=horizon_hours), weather, data)
        actual = data.reindex(fc.index)
        for target in ("load", "pv"):
            y = actual[f"{target}_kw"].to_numpy()
            q = fc[[f"{target}_p10_kw", f"{target}_p50_kw", f"{target}_p90_kw"]].to_numpy()
            ok = np.isfinite(y)
            if ok.any():
                losses.append(pinball_loss(y[ok], q[ok]))
    if not losses:
        raise ForecastError("no observations in the held-back period to score models on")
    return float(np.mean(losses))
