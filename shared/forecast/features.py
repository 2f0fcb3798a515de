"""Feature rows for load and PV models, built the same way for training and for forecasting.

Everything is relative to an ISSUE TIME: a row is (issue slot i, horizon step h) for target slot
p = i + h, and every lag uses only observations strictly before slot i. Training simulates many
issue times inside the history, so the model sees exactly the information it will have live.
Arrays live on one regular 15-min UTC grid; gaps are NaN and stay NaN (LightGBM treats them as
missing; rows whose TARGET is missing are dropped, never filled).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from datetime import date
from functools import lru_cache

import holidays
import numpy as np
import pandas as pd

from shared.config import LocationConfig, PVConfig
from shared.forecast.solar import pv_physical_kw, solar_geometry
from shared.slots import SLOT, SLOTS_PER_HOUR, UTC

SLOTS_PER_DAY = 24 * SLOTS_PER_HOUR
WEATHER_COLUMNS = ("temp_c", "ghi_wm2", "dni_wm2", "dhi_wm2", "cloud_cover_pct")
IRRADIANCE_COLUMNS = ("ghi_wm2", "dni_wm2", "dhi_wm2")
CONTEXT_COLUMNS = ("away", "vacation")
MEAN_DAYS = 7
# The measured PV's clock may be offset from the sun (e.g. data logged in local clock time with DST
# but labelled with a fixed offset). The offset is read from the last days before each issue time.
SUN_SHIFT_MAX = 8  # slots (2 h)
SUN_SHIFT_WINDOW = 7 * 24 * SLOTS_PER_HOUR
HISTORY_DAYS_NEEDED = 15  # enough for every lag (2 weeks back) at a 48 h horizon


@lru_cache(maxsize=32)
def _holiday_dates(country: str, years: tuple[int, ...]) -> frozenset[date]:
    try:
        cal = holidays.country_holidays(country, years=list(years))
    except NotImplementedError:
        return frozenset()
    return frozenset(cal.keys())


def has_irradiance(weather: pd.DataFrame | None) -> bool:
    if weather is None or weather.empty:
        return False
    cols = set(weather.columns)
    return "ghi_wm2" in cols or {"dni_wm2", "dhi_wm2"} <= cols


@dataclass
class Grid:
    """Per-slot arrays on a regular 15-min UTC grid (observations, weather, sun, calendar)."""

    index: pd.DatetimeIndex
    load_kw: np.ndarray
    pv_kw: np.ndarray
    columns: dict[str, np.ndarray]
    # sun geometry and clear-sky PV on the grid extended by SUN_SHIFT_MAX slots at both ends
    sun: dict[str, np.ndarray] | None = None

    def position(self, ts: pd.Timestamp) -> int:
        offset = (pd.Timestamp(ts).tz_convert(UTC) - self.index[0]) / SLOT
        if offset != int(offset):
            raise ValueError(f"issue time {ts} is not on the 15-min slot grid")
        return int(offset)


def prepare_grid(
    observations: pd.DataFrame,
    weather: pd.DataFrame | None,
    location: LocationConfig,
    pv: PVConfig,
    start: pd.Timestamp,
    end: pd.Timestamp,
    weather_shift_slots: int = 0,
) -> Grid:
    """Put observations and weather on one grid [start, end) and add sun, clear sky, calendar.

    ``weather_shift_slots`` = k uses the weather value labelled k slots later for each slot
    (sources differ in whether a value is labelled by the start, middle or end of its hour).
    """
    index = pd.date_range(start, end, freq=SLOT, inclusive="left", tz=UTC, name="slot_start")
    obs = observations.reindex(index)
    cols: dict[str, np.ndarray] = {}
    # one sun computation on the grid extended for clock shifts; the grid itself is its middle
    ext_index = pd.date_range(start - SLOT * SUN_SHIFT_MAX, end + SLOT * SUN_SHIFT_MAX, freq=SLOT, inclusive="left", tz=UTC)
    ext_geo = solar_geometry(ext_index, location)
    sun = {
        "zenith_deg": ext_geo["zenith_deg"].to_numpy(),
        "azimuth_deg": ext_geo["azimuth_deg"].to_numpy(),
        "cs_kw": pv_physical_kw(pv, ext_geo, None).to_numpy(),
    }
    inner = slice(SUN_SHIFT_MAX, SUN_SHIFT_MAX + len(index))
    geometry = ext_geo.iloc[inner].set_axis(index)
    cols["zenith_deg"] = sun["zenith_deg"][inner]
    cols["azimuth_deg"] = sun["azimuth_deg"][inner]
    cols["cs_kw"] = sun["cs_kw"][inner]
    if weather is not None and not weather.empty:
        # Tolerate one extra slot of weather after `end` for the shift.
        w_index = pd.date_range(start, end + SLOT * (abs(weather_shift_slots) + 1), freq=SLOT, tz=UTC)
        w = weather.reindex(w_index)
        if weather_shift_slots:
            w = w.shift(-weather_shift_slots)
        w = w.reindex(index)
        for col in WEATHER_COLUMNS:
            if col in w.columns:
                cols[col] = w[col].to_numpy(dtype=float)
        if has_irradiance(w):
            # physics only where the weather has irradiance (a forecast covers the horizon only)
            have = w["ghi_wm2"].notna() if "ghi_wm2" in w.columns else w["dni_wm2"].notna() & w["dhi_wm2"].notna()
            have = have.to_numpy()
            phys = np.full(len(index), np.nan)
            if have.any():
                wcols = w.loc[have, [c for c in w.columns if c in WEATHER_COLUMNS]]
                phys[have] = pv_physical_kw(pv, geometry.loc[have], wcols).to_numpy()
            cols["phys_kw"] = phys
    for col in CONTEXT_COLUMNS:
        if col in obs.columns:
            cols[col] = obs[col].to_numpy(dtype=float)
    local = index.tz_convert(location.tz)
    cols["slot_of_day"] = (local.hour * SLOTS_PER_HOUR + local.minute // 15).to_numpy(dtype=float)
    dow = local.day_of_week.to_numpy()
    cols["dow"] = dow.astype(float)
    cols["doy"] = local.day_of_year.to_numpy(dtype=float)
    years = tuple(sorted(set(local.year.tolist())))
    hol = _holiday_dates(location.country, years)
    is_hol = np.fromiter((d in hol for d in local.date), dtype=bool, count=len(local))
    cols["holiday"] = is_hol.astype(float)
    # day type: 0 working day, 1 Saturday, 2 Sunday or public holiday
    cols["daytype"] = np.where(is_hol | (dow == 6), 2.0, np.where(dow == 5, 1.0, 0.0))
    load = obs["load_kw"].to_numpy(dtype=float) if "load_kw" in obs.columns else np.full(len(index), np.nan)
    pvv = obs["pv_kw"].to_numpy(dtype=float) if "pv_kw" in obs.columns else np.full(len(index), np.nan)
    return Grid(index=index, load_kw=load, pv_kw=pvv, columns=cols, sun=sun)


def sun_shifts(grid: Grid, issue_pos: np.ndarray, window: int = SUN_SHIFT_WINDOW) -> np.ndarray:
    """Per issue time, the shift k (slots) for which clear-sky PV at t + k best correlates with the
    PV measured in the ``window`` slots before the issue (0 when there is too little to tell)."""
    n = len(grid.index)
    pv = grid.pv_kw
    ok = np.isfinite(pv)
    pv0 = np.where(ok, pv, 0.0)
    ends = np.clip(np.asarray(issue_pos, dtype=np.int64), 0, n)
    starts = np.clip(ends - window, 0, n)

    def wsum(x: np.ndarray) -> np.ndarray:
        c = np.concatenate([[0.0], np.cumsum(x)])
        return c[ends] - c[starts]

    cnt = wsum(ok.astype(float))
    s_p, s_pp = wsum(pv0), wsum(pv0 * pv0)
    best = np.zeros(len(ends), dtype=np.int64)
    best_corr = np.full(len(ends), -np.inf)
    base_corr = None
    for k in range(-SUN_SHIFT_MAX, SUN_SHIFT_MAX + 1):
        cs = grid.sun["cs_kw"][SUN_SHIFT_MAX + k : SUN_SHIFT_MAX + k + n] * ok
        s_c, s_cc, s_pc = wsum(cs), wsum(cs * cs), wsum(pv0 * cs)
        with np.errstate(invalid="ignore", divide="ignore"):
            cov = s_pc - s_p * s_c / cnt
            corr = cov / np.sqrt((s_pp - s_p**2 / cnt) * (s_cc - s_c**2 / cnt))
        corr = np.where(np.isfinite(corr), corr, -np.inf)
        if k == 0:
            base_corr = corr
        better = corr > best_corr + 1e-9
        best[better], best_corr[better] = k, corr[better]
    # keep 0 unless the shift is clearly better (noise must not move the sun)
    unclear = (cnt < window * 0.5) | ~np.isfinite(best_corr) | (best_corr - base_corr < 0.005)
    best[unclear] = 0
    return best


def _take(values: np.ndarray, pos: np.ndarray) -> np.ndarray:
    ok = (pos >= 0) & (pos < len(values))
    out = np.full(pos.shape, np.nan)
    out[ok] = values[pos[ok]]
    return out


def _window_stats(values: np.ndarray, ends: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Sum and count of the non-missing values in [end - length, end) for each end position."""
    finite = np.isfinite(values)
    csum = np.concatenate([[0.0], np.cumsum(np.where(finite, values, 0.0))])
    ccnt = np.concatenate([[0], np.cumsum(finite)])
    hi = np.clip(ends, 0, len(values))
    lo = np.clip(ends - length, 0, len(values))
    return csum[hi] - csum[lo], (ccnt[hi] - ccnt[lo]).astype(float)


def _window_mean(values: np.ndarray, ends: np.ndarray, length: int, min_frac: float = 0.5) -> np.ndarray:
    total, count = _window_stats(values, ends, length)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count >= min_frac * length, total / count, np.nan)


def _pv_ratio(grid: Grid, ends: np.ndarray, length: int, shifts: np.ndarray) -> np.ndarray:
    """Measured PV energy / clear-sky PV energy over [end - length, end), over slots with data."""
    pv = grid.pv_kw
    n = len(grid.index)
    both = np.isfinite(pv)
    pv_sum, _ = _window_stats(np.where(both, pv, np.nan), ends, length)
    cs_sum = np.zeros(len(ends))
    cs_total = np.zeros(len(ends))
    for k in np.unique(shifts):
        sel = shifts == k
        cs = grid.sun["cs_kw"][SUN_SHIFT_MAX + k : SUN_SHIFT_MAX + k + n]
        cs_sum[sel] = _window_stats(np.where(both, cs, np.nan), ends[sel], length)[0]
        cs_total[sel] = _window_stats(cs, ends[sel], length)[0]
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = pv_sum / cs_sum
    # Too little of the window's sunshine observed -> unknown, not a guess.
    ratio[(cs_sum < 0.5 * cs_total) | (cs_total <= 0)] = np.nan
    return np.clip(ratio, 0.0, 2.0)


def _nan_quantile_axis0(stack: np.ndarray, q: float) -> np.ndarray:
    """Quantile (linear interpolation) along axis 0 ignoring NaN; all-NaN columns give NaN.

    np.nanquantile falls back to a Python loop per column when NaN are present: far too slow here.
    """
    s = np.sort(stack, axis=0)  # NaN sort last
    n = np.isfinite(stack).sum(axis=0)
    pos = q * np.clip(n - 1, 0, None)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, np.clip(n - 1, 0, None))
    cols = np.arange(stack.shape[1])
    frac = pos - lo
    out = s[lo, cols] * (1 - frac) + s[hi, cols] * frac
    out[n == 0] = np.nan
    return out


def build_rows(grid: Grid, issue_pos: np.ndarray, n_steps: int) -> pd.DataFrame:
    """One row per (issue, horizon step): features, targets (may be NaN) and baselines."""
    issue_pos = np.asarray(issue_pos, dtype=np.int64)
    steps = np.arange(n_steps, dtype=np.int64)
    ii = np.repeat(issue_pos, n_steps)
    hh = np.tile(steps, len(issue_pos))
    pp = ii + hh
    days_back = hh // SLOTS_PER_DAY + 1  # most recent whole-day lag that is before the issue
    c = grid.columns
    rows: dict[str, np.ndarray] = {"issue_pos": ii, "horizon_h": hh / SLOTS_PER_HOUR, "pos": pp}
    for name in ("slot_of_day", "dow", "doy", "holiday", "daytype"):
        rows[name] = _take(c[name], pp)
    rows["issue_slot"] = _take(c["slot_of_day"], ii)  # models trained on several issue hours tell them apart
    shifts = sun_shifts(grid, issue_pos)
    kk = np.repeat(shifts, n_steps)
    for name in ("zenith_deg", "azimuth_deg", "cs_kw"):
        rows[name] = _take(grid.sun[name], pp + kk + SUN_SHIFT_MAX)
    rows["sun_shift_slots"] = kk.astype(float)
    for name in (*WEATHER_COLUMNS, "phys_kw"):
        if name in c:
            rows[name] = _take(c[name], pp)
    for name in CONTEXT_COLUMNS:
        if name in c:
            # context known at issue time (away / vacation) holds over the horizon
            rows[name] = _take(c[name], ii - 1)
    if "temp_c" in c:
        rows["temp_mean_24h"] = _window_mean(c["temp_c"], pp + SLOTS_PER_DAY // 2, SLOTS_PER_DAY)

    load, pv = grid.load_kw, grid.pv_kw
    rows["load_kw"] = _take(load, pp)
    rows["pv_kw"] = _take(pv, pp)
    rows["load_lag_day"] = _take(load, pp - SLOTS_PER_DAY * days_back)
    rows["load_lag_week"] = _take(load, pp - 7 * SLOTS_PER_DAY)
    lags = np.stack([_take(load, pp - SLOTS_PER_DAY * (days_back + j)) for j in range(MEAN_DAYS)])
    pv_lags = np.stack([_take(pv, pp - SLOTS_PER_DAY * (days_back + j)) for j in range(MEAN_DAYS)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        rows["load_mean7"] = np.nanmean(lags, axis=0)
        rows["load_std7"] = np.nanstd(lags, axis=0)
        rows["load_p10_7"] = _nan_quantile_axis0(lags, 0.1)
        rows["load_p90_7"] = _nan_quantile_axis0(lags, 0.9)
        rows["load_med7"] = _nan_quantile_axis0(lags, 0.5)
        rows["load_lag_2week"] = _take(load, pp - 14 * SLOTS_PER_DAY)
        rows["pv_mean7"] = np.nanmean(pv_lags, axis=0)
        rows["pv_p10_7"] = _nan_quantile_axis0(pv_lags, 0.1)
        rows["pv_p90_7"] = _nan_quantile_axis0(pv_lags, 0.9)
        rows["pv_med7"] = _nan_quantile_axis0(pv_lags, 0.5)
    rows["pv_lag_day"] = _take(pv, pp - SLOTS_PER_DAY * days_back)
    # two weeks of the same slot: robust (median, quartiles) estimates of the typical level
    lags14 = np.concatenate([lags, np.stack([
        _take(load, pp - SLOTS_PER_DAY * (days_back + j)) for j in range(MEAN_DAYS, 2 * MEAN_DAYS)])])
    rows["load_med14"] = _nan_quantile_axis0(lags14, 0.5)
    rows["load_p25_14"] = _nan_quantile_axis0(lags14, 0.25)
    rows["load_p75_14"] = _nan_quantile_axis0(lags14, 0.75)
    # the same +-1 h window over the last 7 days: habits drift by an hour, a profile should too
    wide = np.stack([
        _take(load, pp - SLOTS_PER_DAY * (days_back + j) + o) for j in range(MEAN_DAYS) for o in range(-4, 5)
    ])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        rows["load_mean7_wide"] = np.nanmean(wide, axis=0)
        rows["load_med7_wide"] = _nan_quantile_axis0(wide, 0.5)
    issue_only = issue_pos
    lvl3 = _window_mean(load, issue_only, 3 * SLOTS_PER_HOUR)
    lvl24 = _window_mean(load, issue_only, SLOTS_PER_DAY)
    lvl7d = _window_mean(load, issue_only, 7 * SLOTS_PER_DAY)
    r1 = _pv_ratio(grid, issue_only, SLOTS_PER_DAY, shifts)
    r3 = _pv_ratio(grid, issue_only, 3 * SLOTS_PER_DAY, shifts)
    rows["load_level_3h"] = np.repeat(lvl3, n_steps)
    rows["load_level_24h"] = np.repeat(lvl24, n_steps)
    rows["load_level_7d"] = np.repeat(lvl7d, n_steps)
    rows["pv_ratio_1d"] = np.repeat(r1, n_steps)
    rows["pv_ratio_3d"] = np.repeat(r3, n_steps)
    rows["pv_ratio_7d"] = np.repeat(_pv_ratio(grid, issue_only, 7 * SLOTS_PER_DAY, shifts), n_steps)
    # the sky of the last hours (NaN at night): today's weather persists into the next hours
    rows["pv_ratio_3h"] = np.repeat(_pv_ratio(grid, issue_only, 3 * SLOTS_PER_HOUR, shifts), n_steps)
    rows["pv_ratio_6h"] = np.repeat(_pv_ratio(grid, issue_only, 6 * SLOTS_PER_HOUR, shifts), n_steps)
    rows["daylight"] = (rows["zenith_deg"] < 90.0).astype(float)
    # the same-slot history as clear-sky indices: adapts to orientation and shading per time of day
    with np.errstate(invalid="ignore", divide="ignore"):
        cs_ok = np.where(rows["cs_kw"] > 0.01, rows["cs_kw"], np.nan)
        rows["pv_lag_index"] = np.clip(rows["pv_lag_day"] / cs_ok, 0.0, 3.0)
        rows["pv_med7_index"] = np.clip(rows["pv_med7"] / cs_ok, 0.0, 3.0)
        rows["pv_p90_7_index"] = np.clip(rows["pv_p90_7"] / cs_ok, 0.0, 3.0)
        # clear-sky index of the same slot over 14 days, each day at its own sun position
        day_starts = [pp - SLOTS_PER_DAY * (days_back + j) for j in range(2 * MEAN_DAYS)]
        cs_days = [_take(grid.sun["cs_kw"], q + kk + SUN_SHIFT_MAX) for q in day_starts]
        idx14 = np.stack([_take(pv, q) / np.where(c > 0.01, c, np.nan) for q, c in zip(day_starts, cs_days)])
        idx14 = np.clip(idx14, 0.0, 3.0)
        rows["pv_index_med14"] = _nan_quantile_axis0(idx14, 0.5)
        rows["pv_index_p75_14"] = _nan_quantile_axis0(idx14, 0.75)
    frame = pd.DataFrame(rows)
    frame.index = grid.index[np.clip(pp, 0, len(grid.index) - 1)]
    return frame


def training_issue_positions(grid: Grid, tz, hours_local: tuple[int, ...], first_valid: int) -> np.ndarray:
    """Grid positions of simulated issue times (given local hours of every day) inside the grid."""
    days = pd.date_range(
        grid.index[0].tz_convert(tz).normalize(), grid.index[-1].tz_convert(tz).normalize(), freq="D"
    )
    pos = np.concatenate(
        [np.asarray(((days + pd.Timedelta(hours=h)).tz_convert(UTC) - grid.index[0]) / SLOT) for h in hours_local]
    ).astype(np.int64)
    pos = np.sort(pos)
    return pos[(pos >= first_valid) & (pos < len(grid.index))]
