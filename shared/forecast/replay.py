"""Replay forecasters: load/PV forecasts as they were knowable at a past moment.

Used where history is replayed (the closed-loop backtest, the Gym environment):
``perfect`` (the measured future: an upper bound for the MPC), ``naive`` (the same slot on the
most recent day before now; "yesterday") and ``aurora`` (the forecaster's models trained
strictly on data before the issue time, retrained every ``retrain_days``).
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from shared.config import SiteConfig

if TYPE_CHECKING:
    from shared.oracle import Actuals

ForecastKind = Literal["perfect", "naive", "aurora"]


class Forecaster:
    """Load/PV forecast for the slots of ``index`` as known at ``now`` (= index[0])."""

    name: str = ""
    notes: list[str]

    def __init__(self) -> None:
        self.notes = []

    def forecast(self, now: pd.Timestamp, index: pd.DatetimeIndex) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def quantiles(self, now: pd.Timestamp, index: pd.DatetimeIndex) -> tuple[np.ndarray, np.ndarray] | None:
        """(load p90, PV p10) of the forecast just made for ``index`` (what ``planner.risk: cautious``
        plans on), or None when the forecaster has no quantiles."""
        return None


class PerfectForecast(Forecaster):
    name = "perfect"

    def __init__(self, frame: pd.DataFrame) -> None:
        super().__init__()
        self.load = frame["load_kw"]
        self.pv = frame["pv_kw"]

    def forecast(self, now: pd.Timestamp, index: pd.DatetimeIndex) -> tuple[np.ndarray, np.ndarray]:
        # beyond the backtest range (look-ahead) a gap in the data counts as 0
        return (np.nan_to_num(self.load.reindex(index).to_numpy(dtype=float)),
                np.nan_to_num(self.pv.reindex(index).to_numpy(dtype=float)))


class NaiveForecast(Forecaster):
    """The same slot on the most recent earlier day whose value was measured before ``now``
    (then one more day back while it is missing, up to a week; 0 when nothing was ever measured)."""

    name = "naive"

    def __init__(self, frame: pd.DataFrame) -> None:
        super().__init__()
        self.load = frame["load_kw"]
        self.pv = frame["pv_kw"]

    def forecast(self, now: pd.Timestamp, index: pd.DatetimeIndex) -> tuple[np.ndarray, np.ndarray]:
        day = pd.Timedelta(days=1)
        # days back so that the source slot lies strictly before now
        back = ((index - now) // day + 1).astype(int)
        out = []
        for series in (self.load, self.pv):
            values = np.full(len(index), np.nan)
            for extra in range(8):
                todo = ~np.isfinite(values)
                if not todo.any():
                    break
                src = index[todo] - (back[todo] + extra) * day
                values[todo] = series.reindex(src).to_numpy(dtype=float)
            missing = ~np.isfinite(values)
            if missing.any():
                values[missing] = 0.0
            out.append(values)
        return out[0], out[1]


class AuroraForecast(Forecaster):
    """Aurora models (shared.forecast) trained only on data before the issue time."""

    name = "aurora"

    def __init__(self, frame: pd.DataFrame, site: SiteConfig, retrain_days: int = 7, forecast_every_hours: int = 6,
                 max_train_days: int = 120, min_train_days: int = 14, horizon_hours: int = 48,
                 train_kwargs: dict[str, Any] | None = None) -> None:
        super().__init__()
        from shared.forecast.evaluate import weather_from_forecast_columns

        self.frame = frame[["load_kw", "pv_kw"]]
        self.weather = weather_from_forecast_columns(frame)
        self.site = site
        self.retrain = timedelta(days=retrain_days)
        self.every = timedelta(hours=forecast_every_hours)
        self.max_train = timedelta(days=max_train_days)
        self.min_train = timedelta(days=min_train_days)
        self.horizon = timedelta(hours=horizon_hours) + self.every
        self.models = None
        self.trained_at: pd.Timestamp | None = None
        self.current: pd.DataFrame | None = None
        self.issued_at: pd.Timestamp | None = None
        self.quantiles_ok = False  # the last forecast came from the models (not the naive start)
        self.naive = NaiveForecast(frame)
        self.train_s: list[float] = []
        self.forecast_s: list[float] = []
        self.model_ids: list[str] = []
        # lighter than the forecaster's nightly training so a year of weekly retraining stays in minutes
        self.train_kwargs = {"issue_hours_local": (0, 12), "num_rounds": 120, "row_stride": 4, **(train_kwargs or {})}
        if self.weather is None:
            self.notes.append("aurora: no *_fc24h weather forecast columns; fallback models (calendar, lags, clear sky)")

    def _train(self, now: pd.Timestamp) -> None:
        from shared.forecast.models import ForecastModels

        lo = now - self.max_train
        hist = self.frame.loc[(self.frame.index >= lo) & (self.frame.index < now)]
        w = None if self.weather is None else self.weather.loc[(self.weather.index >= lo) & (self.weather.index < now)]
        t0 = time.perf_counter()
        self.models = ForecastModels.train(hist, w, self.site, **self.train_kwargs)
        self.train_s.append(time.perf_counter() - t0)
        self.model_ids.append(self.models.model_id)
        self.trained_at = now

    def forecast(self, now: pd.Timestamp, index: pd.DatetimeIndex) -> tuple[np.ndarray, np.ndarray]:
        from shared.forecast.features import HISTORY_DAYS_NEEDED

        if now - self.frame.index[0] < self.min_train + timedelta(days=1):
            note = f"aurora: naive forecast until {self.min_train.days} days of history exist"
            if note not in self.notes:
                self.notes.append(note)
            self.quantiles_ok = False
            return self.naive.forecast(now, index)
        self.quantiles_ok = True
        if self.models is None or now - self.trained_at >= self.retrain:
            self._train(now)
        covered = self.current is not None and index[-1] in self.current.index
        if self.issued_at is None or now - self.issued_at >= self.every or not covered:
            recent = self.frame.loc[(self.frame.index >= now - timedelta(days=HISTORY_DAYS_NEEDED)) & (self.frame.index < now)]
            w = None
            if self.weather is not None:
                w = self.weather.loc[(self.weather.index >= now) & (self.weather.index < now + self.horizon + timedelta(hours=3))]
            t0 = time.perf_counter()
            self.current = self.models.forecast(now, self.horizon, w, recent)
            self.forecast_s.append(time.perf_counter() - t0)
            self.issued_at = now
        fc = self.current.reindex(index)
        return (np.nan_to_num(fc["load_p50_kw"].to_numpy(dtype=float)),
                np.nan_to_num(fc["pv_p50_kw"].to_numpy(dtype=float)))

    def quantiles(self, now: pd.Timestamp, index: pd.DatetimeIndex) -> tuple[np.ndarray, np.ndarray] | None:
        if not self.quantiles_ok or self.current is None:
            return None
        fc = self.current.reindex(index)
        return (np.nan_to_num(fc["load_p90_kw"].to_numpy(dtype=float)),
                np.nan_to_num(fc["pv_p10_kw"].to_numpy(dtype=float)))


def make_forecaster(kind: ForecastKind, frame: pd.DataFrame, site: SiteConfig, act: Actuals, **kwargs) -> Forecaster:
    if kind == "perfect":
        return PerfectForecast(frame)
    if kind == "naive":
        return NaiveForecast(frame)
    if kind == "aurora":
        return AuroraForecast(frame, site, **kwargs)
    raise ValueError(f"--forecast: unknown kind {kind!r} (perfect, naive or aurora)")
