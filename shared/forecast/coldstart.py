"""Cold start by merit: serve a trained model only once it beats the prior on recent measured days.

Both are scored the same way on the last ``days`` whole local days that were measured (>= 90 %
of the slots with load and PV): a 24 h forecast issued at each day's local midnight from the
history before it, MAE of the p50 against the measurement, load and PV (daylight slots) summed.
The prior keeps serving while its MAE is lower or equal, or while there is no measured day to
compare on (no evidence is no reason to switch). A model refitted on every day has seen these
days, which favours it; training already held recent days back to accept it at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd

from shared.config import SiteConfig
from shared.forecast.prior import prior_forecast
from shared.slots import SLOT, local_day_bounds

MEASURED_DAY_FRAC = 0.9  # a day counts as measured when 90 % of its slots have load and PV


@dataclass(frozen=True)
class ColdStartChoice:
    use_model: bool
    model_mae_kw: float | None
    prior_mae_kw: float | None
    days: list[str]
    why: str


def measured_days(history: pd.DataFrame, site: SiteConfig, before: pd.Timestamp, days: int) -> list:
    """The last ``days`` whole local days before ``before`` with enough measured slots, oldest first."""
    local_before = pd.Timestamp(before).tz_convert(site.tz).date()
    out = []
    for k in range(days, 0, -1):
        day = local_before - timedelta(days=k)
        start, end = local_day_bounds(day, site.tz)
        sel = history.loc[(history.index >= start) & (history.index < end), ["load_kw", "pv_kw"]]
        expected = int((end - start) / SLOT)
        if int(sel.notna().all(axis=1).sum()) >= MEASURED_DAY_FRAC * expected:
            out.append(day)
    return out


def _mae_kw(forecast: pd.DataFrame, actual: pd.DataFrame) -> tuple[float, float]:
    """(sum of absolute p50 errors in kW, number of scored values) for load and PV."""
    err, n = 0.0, 0
    for target in ("load", "pv"):
        y = actual[f"{target}_kw"].to_numpy(dtype=float)
        p = forecast[f"{target}_p50_kw"].to_numpy(dtype=float)
        ok = np.isfinite(y) & np.isfinite(p)
        if target == "pv":
            ok &= (y > 0) | (p > 0)  # daylight: night zeros would flatter both
        err += float(np.abs(y[ok] - p[ok]).sum())
        n += int(ok.sum())
    return err, n


def choose_model_or_prior(model: Any, history: pd.DataFrame, site: SiteConfig, now: pd.Timestamp, *,
                          weather: pd.DataFrame | None = None, days: int = 7) -> ColdStartChoice:
    """Whether ``model`` (a :class:`~shared.forecast.models.ForecastModels`) may replace the prior."""
    scored = measured_days(history, site, now, days)
    if not scored:
        return ColdStartChoice(False, None, None, [], f"no measured day in the last {days} days to compare "
                               "the model with the prior: keeping the prior")
    errors = {"model": [0.0, 0], "prior": [0.0, 0]}
    for day in scored:
        issue, end = local_day_bounds(day, site.tz)
        past = history.loc[history.index < issue]
        try:
            model_fc = model.forecast(issue, end - issue, weather, past)
        except ValueError as err:  # ForecastError: the model cannot forecast that day
            return ColdStartChoice(False, None, None, [], f"the model cannot forecast {day}: {err}; keeping the prior")
        prior_fc = prior_forecast(site, model_fc.index)
        actual = history.reindex(model_fc.index)
        for name, fc in (("model", model_fc), ("prior", prior_fc)):
            e, n = _mae_kw(fc, actual)
            errors[name][0] += e
            errors[name][1] += n
    model_mae = errors["model"][0] / max(errors["model"][1], 1)
    prior_mae = errors["prior"][0] / max(errors["prior"][1], 1)
    use_model = model_mae < prior_mae
    span = f"{scored[0]}..{scored[-1]} ({len(scored)} measured days)"
    why = (f"model MAE {model_mae:.3f} kW {'<' if use_model else '>='} prior MAE {prior_mae:.3f} kW on {span}: "
           f"{'using the model' if use_model else 'keeping the prior'}")
    return ColdStartChoice(use_model, model_mae, prior_mae, [d.isoformat() for d in scored], why)
