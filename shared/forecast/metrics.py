"""Forecast scores: MAE, RMSE, pinball loss, p10-p90 coverage (all in the target's unit, kW)."""

from __future__ import annotations

import numpy as np

from shared.forecast.quantile import QUANTILES


def mae(y: np.ndarray, p50: np.ndarray) -> float:
    return float(np.mean(np.abs(np.asarray(y) - np.asarray(p50))))


def rmse(y: np.ndarray, p50: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(y) - np.asarray(p50)) ** 2)))


def pinball_loss(y: np.ndarray, q: np.ndarray, quantiles: tuple[float, ...] = QUANTILES) -> float:
    """Mean pinball loss over rows and the quantile columns of ``q`` (n, len(quantiles))."""
    y = np.asarray(y, dtype=float)[:, None]
    q = np.asarray(q, dtype=float)
    a = np.asarray(quantiles)[None, :]
    diff = y - q
    return float(np.mean(np.maximum(a * diff, (a - 1) * diff)))


def coverage(y: np.ndarray, p10: np.ndarray, p90: np.ndarray) -> float:
    """Share of observations inside [p10, p90] (the nominal value is 0.8)."""
    y = np.asarray(y)
    return float(np.mean((y >= np.asarray(p10)) & (y <= np.asarray(p90))))
