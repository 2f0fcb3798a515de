"""What a plan is made from: :class:`PlanInputs` and the strategy that adjusts them (risk, vacation)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date
from typing import Literal

import numpy as np
import pandas as pd

from shared.config import SiteConfig
from shared.cost import CapacityState
from shared.slots import SLOT, SLOT_HOURS

ManualAction = Literal["charge", "discharge", "export", "hold", "heat"]


class PlanInputError(ValueError):
    """Inputs a plan cannot be made from; the message names the input and the slot."""


@dataclass(frozen=True)
class ManualBlock:
    """A user's instruction for a time window; it becomes a constraint of the plan.

    ``charge``/``discharge``: battery at ``power_kw`` (default: its limit) in every slot;
    ``export``: export at least ``power_kw`` (default: the export limit); ``hold``: battery idle;
    ``heat``: every water heater on.
    """

    start: pd.Timestamp
    end: pd.Timestamp
    action: ManualAction
    power_kw: float | None = None


@dataclass(frozen=True)
class WaterState:
    """What a water heater has done before the plan starts."""

    done_today_kwh: float = 0.0
    hours_since_heated: float = 0.0
    on_now: bool = False
    days_since_legionella: float = 0.0


@dataclass
class PlanInputs:
    """Everything one plan needs, on the 15-min slot grid (``index``: contiguous UTC slot starts).

    ``load_kw``/``pv_kw`` are the median forecasts; ``load_p90_kw``/``pv_p10_kw`` (optional) are
    used by a cautious risk setting. ``prices`` comes from :func:`shared.tariff.price_curve`.
    ``previous_battery_kw`` (signed, + = charge) are the previous plan's setpoints, for stability.
    ``ev_*`` context applies to the session running at the start (or the next one).
    """

    index: pd.DatetimeIndex
    load_kw: np.ndarray
    pv_kw: np.ndarray
    prices: pd.DataFrame
    soc_kwh: float | None = None
    load_p90_kw: np.ndarray | None = None
    pv_p10_kw: np.ndarray | None = None
    previous_battery_kw: pd.Series | None = None
    vacation: bool = False
    away: bool = False
    ev_plugged: bool | None = None
    ev_departure: pd.Timestamp | None = None
    ev_target_kwh: float | None = None
    manual_blocks: list[ManualBlock] = field(default_factory=list)
    capacity_state: CapacityState | None = None
    water: dict[str, WaterState] = field(default_factory=dict)
    risk: Literal["cautious", "balanced", "bold"] | None = None
    reserve_soc_frac: float | None = None  # the user's reserve (e.g. from Home Assistant); None: the site's

    @property
    def slots(self) -> int:
        return len(self.index)

    @property
    def slot_hours(self) -> float:
        return SLOT_HOURS

    def start_local_date(self, site: SiteConfig) -> date:
        return self.index[0].tz_convert(site.tz).date()

    def validate(self) -> None:
        n = len(self.index)
        if n == 0:
            raise PlanInputError("the horizon has no slots (no published prices after the start?)")
        if self.index.tz is None:
            raise PlanInputError("index: slot starts need a time zone (UTC)")
        if n > 1 and not (pd.Series(self.index[1:] - self.index[:-1]) == SLOT).all():
            raise PlanInputError("index: slots must be contiguous 15-minute steps")
        for name in ("load_kw", "pv_kw", "load_p90_kw", "pv_p10_kw"):
            arr = getattr(self, name)
            if arr is None:
                continue
            arr = np.asarray(arr, dtype=float)
            if len(arr) != n:
                raise PlanInputError(f"{name}: {len(arr)} values for {n} slots")
            bad = ~np.isfinite(arr)
            if bad.any():
                raise PlanInputError(
                    f"{name}: missing for {int(bad.sum())} slot(s), first at {self.index[int(np.argmax(bad))].isoformat()}"
                )
            if (arr < 0).any():
                raise PlanInputError(f"{name}: negative at {self.index[int(np.argmax(arr < 0))].isoformat()}")
        if not self.prices.index.equals(self.index):
            raise PlanInputError("prices: index differs from the plan's slots")
        for col in ("import_price_per_kwh", "export_price_per_kwh"):
            arr = self.prices[col].to_numpy(dtype=float)
            bad = ~np.isfinite(arr)
            if bad.any():
                raise PlanInputError(f"prices.{col}: missing from {self.index[int(np.argmax(bad))].isoformat()}")


@dataclass(frozen=True)
class Strategy:
    """What risk appetite and context turned into: the forecast quantile and the reserve used."""

    risk: str
    load_quantile: str
    pv_quantile: str
    reserve_kwh: float
    notes: tuple[str, ...] = ()


RESERVE_FACTOR = {"cautious": 1.5, "balanced": 1.0, "bold": 0.5}


def apply_strategy(inputs: PlanInputs, site: SiteConfig) -> tuple[PlanInputs, Strategy]:
    """Risk appetite picks the forecast quantile and scales the soft reserve."""
    risk = inputs.risk or site.planner.risk
    notes: list[str] = []
    load, pv = np.asarray(inputs.load_kw, float), np.asarray(inputs.pv_kw, float)
    load_q = pv_q = "p50"
    if risk == "cautious":
        if inputs.load_p90_kw is not None:
            load, load_q = np.asarray(inputs.load_p90_kw, float), "p90"
        if inputs.pv_p10_kw is not None:
            pv, pv_q = np.asarray(inputs.pv_p10_kw, float), "p10"
    reserve = 0.0
    if site.battery is not None:
        b = site.battery
        base_kwh = b.reserve_soc_kwh if inputs.reserve_soc_frac is None else inputs.reserve_soc_frac * b.capacity_kwh
        reserve = min(b.max_soc_kwh, max(b.min_soc_kwh, base_kwh * RESERVE_FACTOR[risk]))
    if inputs.vacation:
        notes.append("vacation: no daily hot-water minimum, anti-legionella cycle only")
    if inputs.away:
        notes.append("away")
    adjusted = replace(inputs, load_kw=load, pv_kw=pv)
    return adjusted, Strategy(risk=risk, load_quantile=load_q, pv_quantile=pv_q, reserve_kwh=reserve, notes=tuple(notes))


def inputs_from_recorded(
    frame: pd.DataFrame, site: SiteConfig, start: pd.Timestamp | str, hours: float, soc_kwh: float | None = None,
    **context,
) -> PlanInputs:
    """Plan inputs from recorded site data (``shared.sitedata`` frame), the recorded values as forecast.

    The horizon is ``hours`` from ``start`` but ends at the last published price (the first slot
    without one). Missing load or PV inside the horizon is an error naming the slot.
    """
    from shared.slots import floor_slot, horizon_slots
    from shared.tariff import price_curve_from_data, priced_slots

    index = horizon_slots(floor_slot(start), hours)
    window = frame.reindex(index)
    if window["load_kw"].isna().all():
        raise PlanInputError(f"no recorded data from {index[0].isoformat()} (data covers {frame.index[0]} .. {frame.index[-1]})")
    prices = price_curve_from_data(window, site, allow_missing=True)
    n = priced_slots(prices)
    index = index[:n]
    window = window.iloc[:n]
    prices = prices.iloc[:n]
    return PlanInputs(
        index=index,
        load_kw=window["load_kw"].to_numpy(dtype=float),
        pv_kw=window["pv_kw"].to_numpy(dtype=float),
        prices=prices,
        soc_kwh=soc_kwh,
        **context,
    )
