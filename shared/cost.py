"""THE cost model: what a schedule of flows costs the household, in the site currency.

Planner, simulator, oracle and Gym environment all call :func:`plan_cost`, so a plan's
reported cost and a replay of the same flows agree to the cent. Pure functions over numpy /
pandas, no I/O.

Sign and unit conventions: every ``*_kw`` flow is >= 0 and is the mean power over its slot;
``slot_hours`` turns it into kWh. Prices come from :func:`shared.tariff.price_curve`.

Capacity tariff (``tariff.capacity``): the bill depends on peaks of the grid import in the
billing period (month, or day). Only what the schedule ADDS to the bill counts: the cost is
``billed(peaks so far + planned peaks) - billed(peaks so far)``, per billing period the
schedule touches (a later period starts with no peaks). Methods:

- ``max_hourly``: price_per_kw x highest hourly-average import of the period;
- ``max_15min``: the same on 15-minute averages (Belgium);
- ``mean_top_n_distinct_days``: price_per_kw x mean of the N highest daily peaks (Sweden);
- ``tiers_mean_top3_daily``: the cost of the tier reached by the mean of the 3 highest daily
  peaks (Norway). A tier applies when the mean is strictly above its ``above_kw``.

Fewer than N days in a period count the missing days as 0 kW peaks. Hours are clock hours
in UTC (equal to local hours in zones with whole-hour offsets).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from shared.config import BatteryConfig, CapacityTariffConfig, SiteConfig
from shared.slots import SLOT_HOURS

TIER_TOLERANCE_KW = 1e-6


@dataclass(frozen=True)
class CapacityState:
    """Peaks of the current billing period before the schedule starts.

    ``daily_peaks_kw``: per local date, the highest hourly-average import (15-min average for
    ``max_15min``) already reached that day, for the dates of the current period.
    """

    daily_peaks_kw: dict[date, float] = field(default_factory=dict)

    @staticmethod
    def from_import_history(import_kw: pd.Series, site: SiteConfig, method: str | None = None) -> CapacityState:
        """Build the state from measured import (15-min slots, kW) of the period so far."""
        if import_kw.empty:
            return CapacityState()
        method = method or site.tariff.capacity.method
        peaks = _daily_peaks(import_kw.index, import_kw.to_numpy(dtype=float), site, method, SLOT_HOURS)
        return CapacityState(daily_peaks_kw={d: float(v) for d, v in peaks.items()})

    def peak_so_far_kw(self) -> float:
        return max(self.daily_peaks_kw.values(), default=0.0)


@dataclass(frozen=True)
class CostBreakdown:
    import_cost: float
    export_revenue: float
    wear_cost: float
    capacity_cost: float
    water_start_cost: float
    reserve_penalty: float
    ev_shortfall_penalty: float
    water_shortfall_penalty: float
    import_kwh: float
    export_kwh: float

    @property
    def energy_cost(self) -> float:
        """What the household pays: import - export + capacity (wear is a depreciation)."""
        return self.import_cost - self.export_revenue + self.capacity_cost

    @property
    def penalties(self) -> float:
        return self.reserve_penalty + self.ev_shortfall_penalty + self.water_shortfall_penalty

    @property
    def total(self) -> float:
        return self.energy_cost + self.wear_cost + self.water_start_cost + self.penalties

    def to_dict(self) -> dict[str, float]:
        out = asdict(self)
        out.update(energy_cost=self.energy_cost, penalties=self.penalties, total=self.total)
        return out


# --------------------------------------------------------------------------- capacity tariff


def period_key(day: date, period: str) -> tuple[int, ...]:
    return (day.year, day.month) if period == "month" else (day.year, day.month, day.day)


def hour_groups(index: pd.DatetimeIndex) -> np.ndarray:
    """Integer label per slot of the clock hour it belongs to (UTC clock hours)."""
    hours = index.floor("h")
    _, labels = np.unique(np.asarray(hours.asi8), return_inverse=True)
    return labels


def _daily_peaks(
    index: pd.DatetimeIndex, import_kw: np.ndarray, site: SiteConfig, method: str, slot_hours: float
) -> dict[date, float]:
    """Per local date: highest hourly-average import (or slot average for max_15min)."""
    local_dates = np.asarray(index.tz_convert(site.tz).date)
    if method == "max_15min":
        values, value_dates = import_kw, local_dates
    else:
        labels = hour_groups(index)
        values = np.bincount(labels, weights=import_kw * slot_hours)  # kWh in the hour = mean kW over it
        value_dates = np.empty(len(values), dtype=object)
        value_dates[labels] = local_dates  # an hour belongs to the date of its slots
    peaks: dict[date, float] = {}
    for d, v in zip(value_dates, values):
        if v > peaks.get(d, -np.inf):
            peaks[d] = float(v)
    return peaks


def _top_n_sum(values: list[float], n: int) -> float:
    padded = sorted(values, reverse=True)[:n]
    return float(sum(padded))


def tier_cost(mean_kw: float, cfg: CapacityTariffConfig) -> float:
    tiers = sorted(cfg.tiers, key=lambda t: t.above_kw)
    if not tiers:
        return 0.0
    cost = tiers[0].cost_per_period
    for tier in tiers[1:]:
        if mean_kw > tier.above_kw + TIER_TOLERANCE_KW:
            cost = tier.cost_per_period
    return cost


def billed_capacity(daily_peaks_kw: dict[date, float], cfg: CapacityTariffConfig) -> float:
    """The capacity charge of one billing period from its daily peaks."""
    values = list(daily_peaks_kw.values())
    if cfg.method in ("max_hourly", "max_15min"):
        return cfg.price_per_kw * max(values, default=0.0)
    if cfg.method == "mean_top_n_distinct_days":
        return cfg.price_per_kw * _top_n_sum(values, cfg.top_n) / cfg.top_n
    if cfg.method == "tiers_mean_top3_daily":
        return tier_cost(_top_n_sum(values, 3) / 3.0, cfg)
    raise ValueError(f"tariff.capacity.method: unknown method {cfg.method!r}")


def capacity_cost(
    index: pd.DatetimeIndex,
    import_kw: np.ndarray,
    site: SiteConfig,
    state: CapacityState | None = None,
    slot_hours: float = SLOT_HOURS,
) -> float:
    """What the schedule adds to the capacity charges of the periods it touches."""
    cfg = site.tariff.capacity
    if not cfg.enabled or len(index) == 0:
        return 0.0
    state = state or CapacityState()
    planned = _daily_peaks(index, np.asarray(import_kw, dtype=float), site, cfg.method, slot_hours)
    first_key = period_key(index[0].tz_convert(site.tz).date(), cfg.period)
    periods: dict[tuple[int, ...], dict[date, float]] = {}
    for d, v in planned.items():
        periods.setdefault(period_key(d, cfg.period), {})[d] = v
    total = 0.0
    for key, peaks in periods.items():
        before = {d: v for d, v in state.daily_peaks_kw.items() if period_key(d, cfg.period) == key}
        if key != first_key:
            before = {}
        after = dict(before)
        for d, v in peaks.items():
            after[d] = max(after.get(d, 0.0), v)
        total += billed_capacity(after, cfg) - billed_capacity(before, cfg)
    return float(total)


# --------------------------------------------------------------------------- the whole bill


def water_shortfall_price_per_kwh(import_price_per_kwh: np.ndarray) -> float:
    """Penalty per kWh of a water heater's daily minimum not met: dearer than any import."""
    return 1.0 + 2.0 * max(float(np.max(np.abs(import_price_per_kwh), initial=0.0)), 0.0)


def water_starts(water_kw: np.ndarray, on_before: bool = False) -> int:
    on = np.asarray(water_kw) > 1e-6
    prev = np.concatenate([[on_before], on[:-1]])
    return int(np.sum(on & ~prev))


def plan_cost(
    flows: pd.DataFrame,
    prices: pd.DataFrame,
    site: SiteConfig,
    capacity_state: CapacityState | None = None,
    slot_hours: float = SLOT_HOURS,
    reserve_kwh: float | None = None,
    ev_shortfall_kwh: dict[str, float] | None = None,
    water_shortfall_kwh: dict[str, float] | None = None,
    water_on_before: dict[str, bool] | None = None,
) -> CostBreakdown:
    """Cost of per-slot flows at per-slot prices.

    ``flows``: ``import_kw``, ``export_kw`` and optionally ``charge_kw``, ``discharge_kw``,
    ``soc_kwh`` (end of slot, for the soft-reserve penalty) and ``water{i}_kw`` per water heater
    ``site.water_heaters[i]`` (for start costs). ``prices``: ``import_price_per_kwh``,
    ``export_price_per_kwh`` on the same index. Shortfalls (kWh below an EV target or a water
    heater's daily minimum) are priced with the site's penalties.
    """
    if not flows.index.equals(prices.index):
        raise ValueError("flows and prices must share the same slot index")
    zeros = np.zeros(len(flows))

    def col(name: str) -> np.ndarray:
        return flows[name].to_numpy(dtype=float) if name in flows.columns else zeros

    import_kw, export_kw = col("import_kw"), col("export_kw")
    import_price = prices["import_price_per_kwh"].to_numpy(dtype=float)
    export_price = prices["export_price_per_kwh"].to_numpy(dtype=float)
    import_kwh = import_kw * slot_hours
    export_kwh = export_kw * slot_hours

    wear = 0.0
    reserve_penalty = 0.0
    battery = site.battery
    if battery is not None:
        wear = battery.wear_cost_per_kwh * float(np.sum(col("charge_kw") + col("discharge_kw"))) * slot_hours
        if "soc_kwh" in flows.columns and battery.reserve_penalty_per_kwh > 0:
            reserve = battery.reserve_soc_kwh if reserve_kwh is None else reserve_kwh
            below_kwh = np.maximum(0.0, reserve - col("soc_kwh"))
            reserve_penalty = battery.reserve_penalty_per_kwh * float(np.sum(below_kwh)) * slot_hours

    water_start = 0.0
    on_before = water_on_before or {}
    for i, heater in enumerate(site.water_heaters):
        name = f"water{i}_kw"
        if name in flows.columns and heater.start_cost > 0 and not heater.modulating:
            water_start += heater.start_cost * water_starts(col(name), on_before.get(heater.name, False))

    ev_penalty = 0.0
    for ev in site.evs:
        ev_penalty += ev.shortfall_penalty_per_kwh * float((ev_shortfall_kwh or {}).get(ev.name, 0.0))
    water_penalty = water_shortfall_price_per_kwh(import_price) * float(sum((water_shortfall_kwh or {}).values()))

    return CostBreakdown(
        import_cost=float(np.dot(import_kwh, import_price)),
        export_revenue=float(np.dot(export_kwh, export_price)),
        wear_cost=float(wear),
        capacity_cost=capacity_cost(flows.index, import_kw, site, capacity_state, slot_hours),
        water_start_cost=float(water_start),
        reserve_penalty=float(reserve_penalty),
        ev_shortfall_penalty=float(ev_penalty),
        water_shortfall_penalty=float(water_penalty),
        import_kwh=float(import_kwh.sum()),
        export_kwh=float(export_kwh.sum()),
    )


# --------------------------------------------------------------------------- measured saving


def battery_saving(index: pd.DatetimeIndex, import_kwh: ArrayLike, export_kwh: ArrayLike, charge_kwh: ArrayLike,
                   discharge_kwh: ArrayLike, prices: pd.DataFrame, site: SiteConfig) -> float:
    """Money the battery saved over measured slots: the same home without it minus what it paid.

    Without the battery every slot's net grid flow (import - export - charge + discharge) would
    have crossed the meter: its import/export at the slot's prices is the counterfactual. What
    was paid: the measured import/export plus the battery's wear, both by :func:`plan_cost`.
    Capacity-tariff effects are left out: a per-slot running sum cannot see a period's peaks.
    """
    net_kwh = (np.asarray(import_kwh, float) - np.asarray(export_kwh, float)
               - np.asarray(charge_kwh, float) + np.asarray(discharge_kwh, float))
    hours = SLOT_HOURS
    actual = pd.DataFrame({"import_kw": np.asarray(import_kwh, float) / hours,
                           "export_kw": np.asarray(export_kwh, float) / hours,
                           "charge_kw": np.asarray(charge_kwh, float) / hours,
                           "discharge_kw": np.asarray(discharge_kwh, float) / hours}, index=index)
    without = pd.DataFrame({"import_kw": np.maximum(net_kwh, 0.0) / hours,
                            "export_kw": np.maximum(-net_kwh, 0.0) / hours}, index=index)
    paid, would_pay = plan_cost(actual, prices, site), plan_cost(without, prices, site)
    return float((would_pay.import_cost - would_pay.export_revenue)
                 - (paid.import_cost - paid.export_revenue + paid.wear_cost))


# --------------------------------------------------------------------------- stored energy
#
# THE rule that puts strategies ending with different amounts of energy in the battery on the
# same footing (backtest, oracle, what-if, Antares evaluation, oracle service). Without it a
# strategy that ends the window full of bought energy looks dearer than one that drained the
# battery, although the energy is still there (measured: a 3-day SE4 backtest showed the
# oracle at 3.75 EUR against 1.80 EUR for the self-consumption rule; the oracle had 12.5 kWh
# more left). Every strategy starts from the same SoC; the energy it leaves above (below) that
# start is credited (charged) at one price per kWh:
#
#     adjusted cost = money - value_per_kwh x (soc_end_kwh - soc_start_kwh)
#
# value_per_kwh is the planner's terminal value: what a stored kWh displaces later, taken as
# the median import price of the window after discharge losses and wear (the battery's
# ``terminal_value_per_kwh`` when configured), never below 0. The planner values the energy it
# leaves at the horizon end the same way, so a plan and its accounting agree. A house without
# a battery stores nothing: its adjustment is 0.


def stored_energy_value_per_kwh(import_price_per_kwh: np.ndarray | pd.Series, battery: BatteryConfig | None) -> float:
    """What a kWh left in the battery is worth (see the rule above); 0 without a battery."""
    if battery is None:
        return 0.0
    if battery.terminal_value_per_kwh is not None:
        return max(0.0, float(battery.terminal_value_per_kwh))
    prices = np.asarray(import_price_per_kwh, dtype=float)
    prices = prices[np.isfinite(prices)]
    if prices.size == 0:
        return 0.0
    return max(0.0, battery.discharge_efficiency * float(np.median(prices)) - battery.wear_cost_per_kwh)


def end_soc_value(soc_start_kwh: float, soc_end_kwh: float, value_per_kwh: float) -> float:
    """The money value of the energy a strategy leaves in the battery beyond what it started with."""
    return value_per_kwh * (float(soc_end_kwh) - float(soc_start_kwh))


def adjusted_money(money: float, soc_start_kwh: float, soc_end_kwh: float, value_per_kwh: float) -> float:
    """Money with the stored-energy difference valued by the one rule: what strategies are compared on."""
    return float(money) - end_soc_value(soc_start_kwh, soc_end_kwh, value_per_kwh)


def captured_frac(baseline: float, strategy: float, best: float) -> float | None:
    """Share of the best strategy's savings a strategy captured, (baseline - strategy) / (baseline - best),
    on adjusted costs; None when the best saves nothing."""
    if abs(baseline - best) < 1e-9:
        return None
    return (baseline - strategy) / (baseline - best)
