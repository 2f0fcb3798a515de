"""LightGBM quantile trios (p10/p50/p90) with calibration and a no-crossing guarantee."""

from __future__ import annotations

from dataclasses import dataclass, field

import lightgbm as lgb
import numpy as np
import pandas as pd

QUANTILES = (0.1, 0.5, 0.9)
CAL_TARGET_LO, CAL_TARGET_HI = 0.08, 0.92
# Modest and quiet: the machines are small and shared. One thread: on 2 busy cores, OpenMP with
# 2 threads measured 5-10x SLOWER than 1 thread (threads wait at every barrier for a busy core).
BASE_PARAMS: dict = {
    "objective": "quantile",
    "learning_rate": 0.05,
    "num_leaves": 15,
    "min_data_in_leaf": 200,
    "feature_fraction": 0.9,
    "bagging_fraction": 0.7,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "max_bin": 63,
    "num_threads": 1,
    "verbose": -1,
    "seed": 7,
    "deterministic": True,
    "force_col_wise": True,
}


def fix_crossing(q: np.ndarray) -> np.ndarray:
    """Sort each row so p10 <= p50 <= p90 (rearrangement never makes pinball loss worse)."""
    return np.sort(q, axis=1)


@dataclass
class QuantileModel:
    """Three LightGBM boosters on the same features; predictions are band-calibrated and sorted."""

    features: list[str]
    num_rounds: int = 200
    params: dict = field(default_factory=dict)
    boosters: list[lgb.Booster] = field(default_factory=list)
    scale_lo: float = 1.0  # multiplies the (p50 - p10) distance, fitted on held-back data
    scale_hi: float = 1.0
    cal_pinball: float | None = None  # pinball loss on the held-back set (after calibration)
    rounds_used: list[int] = field(default_factory=list)

    def _train(
        self, x: pd.DataFrame, y: np.ndarray, x_val: pd.DataFrame | None = None, y_val: np.ndarray | None = None,
        rounds: list[int] | None = None,
    ) -> list[lgb.Booster]:
        """One booster per quantile; with a validation set, stop when it no longer improves
        (small histories overfit quickly) and remember the rounds used."""
        data = lgb.Dataset(x[self.features], label=y, free_raw_data=False, params={"max_bin": 63, "verbose": -1})
        val = None
        if x_val is not None and y_val is not None:
            val = lgb.Dataset(x_val[self.features], label=y_val, reference=data)
        out = []
        used = []
        for n, alpha in enumerate(QUANTILES):
            params = {**BASE_PARAMS, **self.params, "alpha": alpha, "metric": "quantile"}
            if val is not None:
                b = lgb.train(params, data, num_boost_round=self.num_rounds, valid_sets=[val],
                              callbacks=[lgb.early_stopping(40, verbose=False)])
                used.append(max(b.best_iteration, 1))
            else:
                b = lgb.train(params, data, num_boost_round=rounds[n] if rounds else self.num_rounds)
            out.append(b)
        if used:
            self.rounds_used = used
        return out

    def raw(self, x: pd.DataFrame) -> np.ndarray:
        cols = x.reindex(columns=self.features)
        return np.column_stack([
            b.predict(cols, num_threads=1, num_iteration=b.best_iteration or None) for b in self.boosters
        ])

    def fit(
        self, x: pd.DataFrame, y: np.ndarray, x_cal: pd.DataFrame | None = None, y_cal: np.ndarray | None = None,
        refit: bool = True, cal_scale: np.ndarray | None = None,
    ) -> QuantileModel:
        """Fit; with a held-back set, calibrate the band there and (refit=True) refit on everything.

        ``cal_scale`` (per held-back row) converts target units to the scored unit for ``cal_pinball``.
        """
        if x_cal is not None and y_cal is not None and len(y_cal) >= 200:
            self.boosters = self._train(x, y, x_cal, y_cal)
            self.calibrate(x_cal, y_cal)
            q = self.predict(x_cal)
            scale = np.ones(len(y_cal)) if cal_scale is None else np.asarray(cal_scale, dtype=float)
            # score in the unit users see (e.g. kW for a model of the clear-sky ratio)
            diff = (y_cal * scale)[:, None] - q * scale[:, None]
            alpha = np.asarray(QUANTILES)[None, :]
            self.cal_pinball = float(np.mean(np.maximum(alpha * diff, (alpha - 1) * diff)))
            if refit:
                self.boosters = self._train(pd.concat([x, x_cal]), np.concatenate([y, y_cal]), rounds=self.rounds_used)
        else:
            all_x = x if x_cal is None else pd.concat([x, x_cal])
            all_y = y if y_cal is None else np.concatenate([y, y_cal])
            self.boosters = self._train(all_x, all_y)
        return self

    def calibrate(
        self, x: pd.DataFrame, y: np.ndarray, target_lo: float = CAL_TARGET_LO, target_hi: float = CAL_TARGET_HI
    ) -> None:
        """Scale each half-band so that held-back data falls below p10 / above p90 a set share of the time.

        The targets (8 % / 92 %) keep a small margin over the nominal 10 % / 90 %: the held-back days
        are few and the future drifts (seasons, habits), so bands calibrated exactly on them come out
        a little narrow on the following weeks.
        """
        q = fix_crossing(self.raw(x))
        lo_w = q[:, 1] - q[:, 0]
        hi_w = q[:, 2] - q[:, 1]
        self.scale_lo = _side_scale((q[:, 1] - y), lo_w, 1.0 - target_lo)
        self.scale_hi = _side_scale((y - q[:, 1]), hi_w, target_hi)

    def predict(self, x: pd.DataFrame) -> np.ndarray:
        """(n, 3) array p10/p50/p90, calibrated and never crossing."""
        q = fix_crossing(self.raw(x))
        p50 = q[:, 1]
        out = np.column_stack([p50 - self.scale_lo * (p50 - q[:, 0]), p50, p50 + self.scale_hi * (q[:, 2] - p50)])
        return fix_crossing(out)


def _side_scale(excess: np.ndarray, width: np.ndarray, level: float) -> float:
    """Smallest s with P(excess <= s * width) >= level, over rows with a real band width."""
    ok = width > 1e-6
    if ok.sum() < 50:
        return 1.0
    ratio = excess[ok] / width[ok]
    return float(np.clip(np.quantile(ratio, level), 0.5, 5.0))
