"""Antares decision features: what the policy knows at the start of the slot it decides.

One function, :func:`decision_features`, serves training (episodes) and acting (evaluation, a
policy runner), so the model never sees features computed differently at run time.

Only knowable information goes in: the clock, the SoC at the slot start, the published prices
of the rest of the day, the load/PV *forecasts* and the load/PV measured in the previous
slot. Never the measured load/PV of the slot being decided, nor its end SoC, nor the
planner's setpoint (the policy must act without the planner).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from shared.config import BatteryConfig

FEATURES: tuple[str, ...] = (
    "tod_sin", "tod_cos", "day_progress_frac", "slots_left",
    "soc_frac", "stored_kwh", "room_kwh",
    "import_price", "export_price", "import_price_next4h", "import_price_rest_min", "import_price_rest_max",
    "price_rank_rest_frac", "hours_to_rest_max", "hours_to_rest_min",
    "load_fc_kw", "pv_fc_kw", "net_fc_kw", "load_fc_next4h_kw", "pv_fc_next4h_kw",
    "surplus_fc_rest_kwh", "deficit_fc_rest_kwh", "deficit_fc_dearer_kwh", "surplus_fc_next4h_kwh",
    "load_last_kw", "pv_last_kw",
)
LOOKAHEAD_SLOTS = 16
SLOT_H = 0.25


@dataclass(frozen=True)
class DayInputs:
    """The knowable inputs of one local day: slot starts, prices, forecasts (arrays of one length)."""

    index: pd.DatetimeIndex
    tz_hours: np.ndarray  # local time of day in hours at each slot start
    import_price: np.ndarray
    export_price: np.ndarray
    load_fc_kw: np.ndarray
    pv_fc_kw: np.ndarray

    @classmethod
    def build(cls, index: pd.DatetimeIndex, tz, import_price, export_price, load_fc_kw, pv_fc_kw) -> DayInputs:
        local = index.tz_convert(tz)
        hours = np.asarray(local.hour + local.minute / 60.0, dtype=float)
        arrays = [np.asarray(a, dtype=float) for a in (import_price, export_price, load_fc_kw, pv_fc_kw)]
        for name, a in zip(("import_price", "export_price", "load_fc_kw", "pv_fc_kw"), arrays):
            if len(a) != len(index):
                raise ValueError(f"{name}: {len(a)} values for {len(index)} slots")
            if not np.isfinite(a).all():
                raise ValueError(f"{name} has missing values on {index[0].date()} (first at slot "
                                 f"{int(np.argmin(np.isfinite(a)))})")
        return cls(index, hours, *arrays)


def decision_features(day: DayInputs, t: int, soc_kwh: float, load_last_kw: float, pv_last_kw: float,
                      battery: BatteryConfig) -> np.ndarray:
    """Feature vector (:data:`FEATURES` order, float64) for deciding slot ``t`` of ``day``."""
    n = len(day.index)
    imp = day.import_price[t:]
    ahead = slice(t, min(n, t + LOOKAHEAD_SLOTS))
    load_rest = day.load_fc_kw[t:]
    pv_rest = day.pv_fc_kw[t:]
    net_rest = load_rest - pv_rest
    deficit = np.maximum(net_rest, 0.0)
    surplus = np.maximum(-net_rest, 0.0)
    dearer = imp > imp[0] + 1e-9
    cap = battery.capacity_kwh
    stored = soc_kwh - battery.min_soc_kwh
    room = battery.max_soc_kwh - soc_kwh
    h = day.tz_hours[t]
    net_ahead = day.load_fc_kw[ahead] - day.pv_fc_kw[ahead]
    return np.array([
        np.sin(2 * np.pi * h / 24.0), np.cos(2 * np.pi * h / 24.0), t / n, n - t,
        soc_kwh / cap, stored, room,
        imp[0], day.export_price[t], day.import_price[ahead].mean(), imp.min(), imp.max(),
        float(dearer.mean()), int(np.argmax(imp)) * SLOT_H, int(np.argmin(imp)) * SLOT_H,
        day.load_fc_kw[t], day.pv_fc_kw[t], net_rest[0], day.load_fc_kw[ahead].mean(), day.pv_fc_kw[ahead].mean(),
        surplus.sum() * SLOT_H, deficit.sum() * SLOT_H, deficit[dearer].sum() * SLOT_H,
        np.maximum(-net_ahead, 0.0).sum() * SLOT_H,
        load_last_kw, pv_last_kw,
    ], dtype=float)
