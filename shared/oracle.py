"""Oracle: the best the household could have done with perfect hindsight.

The same optimisation model as the planner (:func:`shared.optimize.solve_plan`) fed with the
MEASURED load and PV and the real prices, one local day at a time: the SoC at the end of a
day is the next day's start, and a capacity tariff sees the peaks the oracle itself made
earlier in the billing period. Each daily problem also sees the next day (``lookahead_days=1``,
hindsight knows it) and keeps only its own day; the energy left at the end of that window is
valued with the planner's terminal value. Without the look-ahead (``lookahead_days=0``) a day
with a terminal value above the night price ends full of grid energy just before a sunny
morning refills the battery for free: on PV-rich homes with unpaid export that "optimum"
costs more than a plain self-consumption rule (measured on CityLearn home 3). The schedule is then replayed by :mod:`shared.simulator` (with a perfect forecast
that reproduces the plan) and priced by :func:`shared.cost.plan_cost`, so the oracle's money
is computed exactly like everyone else's.

Scope: battery and PV. The recorded load is the whole house (a water heater or EV already
in it), so :func:`battery_pv_site` drops water heaters and EVs before planning; planning them
again on top of the measured load would count them twice.

Measured gaps: a slot with no recorded load/PV is counted as zero load and zero PV for every
strategy (oracle, backtest, baseline), so the comparison stays fair; ``missing_slots`` says how
many there were.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd

from shared.config import SiteConfig
from shared.cost import CapacityState, CostBreakdown, plan_cost
from shared.progress import Progress
from shared.simulator import money, no_battery_flows, simulate
from shared.slots import SLOT_HOURS, local_day_bounds, local_day_slots, slot_range
from shared.tariff import price_curve_from_data


def oracle_site(site: SiteConfig) -> SiteConfig:
    """:func:`battery_pv_site` without the planner's anti-flip-flop costs: hindsight has nothing to
    be stable against, so the oracle minimises money only."""
    site = battery_pv_site(site)
    planner = site.planner.model_copy(update={"setpoint_change_cost_per_kw": 0.0, "mode_switch_cost": 0.0})
    return site.model_copy(update={"planner": planner})


def battery_pv_site(site: SiteConfig) -> SiteConfig:
    """The site as the oracle and backtest model it: battery and PV (see module doc)."""
    if not site.water_heaters and not site.evs:
        return site
    return site.model_copy(update={"water_heaters": [], "evs": []})


@dataclass
class Actuals:
    """Measured load/PV (NaN -> 0, counted in ``missing_slots``) and prices on a slot index."""

    index: pd.DatetimeIndex
    load_kw: np.ndarray
    pv_kw: np.ndarray
    prices: pd.DataFrame
    missing_slots: int


def actuals(frame: pd.DataFrame, site: SiteConfig, index: pd.DatetimeIndex) -> Actuals:
    """Recorded data on ``index``; prices from :func:`shared.tariff.price_curve_from_data` (a missing
    price raises :class:`shared.tariff.PriceError` naming the slot)."""
    window = frame.reindex(index)
    if window["load_kw"].isna().all():
        raise ValueError(f"no recorded data between {index[0].isoformat()} and {index[-1].isoformat()} "
                         f"(data covers {frame.index[0].isoformat()} .. {frame.index[-1].isoformat()})")
    load = window["load_kw"].to_numpy(dtype=float)
    pv = window["pv_kw"].to_numpy(dtype=float)
    missing = ~(np.isfinite(load) & np.isfinite(pv))
    prices = price_curve_from_data(window, site)
    return Actuals(index=index, load_kw=np.where(missing, 0.0, load), pv_kw=np.where(missing, 0.0, pv),
                   prices=prices, missing_slots=int(missing.sum()))


def range_index(site: SiteConfig, date_from: date, date_to: date) -> pd.DatetimeIndex:
    """Slots of the local days ``date_from`` .. ``date_to`` (inclusive)."""
    if date_to < date_from:
        raise ValueError(f"--to {date_to} is before --from {date_from}")
    start, _ = local_day_bounds(date_from, site.tz)
    _, end = local_day_bounds(date_to, site.tz)
    return slot_range(start, end)


def capacity_state_before(import_kw: pd.Series, at: pd.Timestamp, site: SiteConfig) -> CapacityState | None:
    """Peaks already made in the billing period that contains ``at`` (from realized import)."""
    cfg = site.tariff.capacity
    if not cfg.enabled or import_kw.empty:
        return None
    at_local = at.tz_convert(site.tz)
    local = import_kw.index.tz_convert(site.tz)
    mask = (np.asarray(local.year) == at_local.year) & (np.asarray(local.month) == at_local.month)
    if cfg.period == "day":
        mask &= np.asarray(local.day) == at_local.day
    mask &= np.asarray(import_kw.index < at)
    return CapacityState.from_import_history(import_kw[mask], site) if mask.any() else None


@dataclass
class OracleDay:
    day: date
    soc_start_kwh: float
    soc_end_kwh: float
    cost: CostBreakdown
    status: str
    solve_s: float
    missing_slots: int
    flows: pd.DataFrame

    @property
    def oracle_cost(self) -> float:
        return money(self.cost)

    def to_dict(self) -> dict[str, Any]:
        return {
            "date": self.day.isoformat(), "oracle_cost": round(self.oracle_cost, 6),
            "import_cost": round(self.cost.import_cost, 6), "export_revenue": round(self.cost.export_revenue, 6),
            "capacity_cost": round(self.cost.capacity_cost, 6), "wear_cost": round(self.cost.wear_cost, 6),
            "import_kwh": round(self.cost.import_kwh, 4), "export_kwh": round(self.cost.export_kwh, 4),
            "soc_start_kwh": round(self.soc_start_kwh, 4), "soc_end_kwh": round(self.soc_end_kwh, 4),
            "status": self.status, "solve_s": round(self.solve_s, 4), "missing_slots": self.missing_slots,
        }


def oracle_day(frame: pd.DataFrame, site: SiteConfig, day: date, soc_kwh: float | None = None,
               capacity_state: CapacityState | None = None, lookahead_days: int = 1) -> OracleDay:
    """The perfect-hindsight plan of one local day of recorded data, replayed and priced.

    With ``lookahead_days`` the problem also sees the following days (as far as the data goes)
    and only the day itself is kept: hindsight knows tomorrow's sun, so the day does not end
    filled from the grid just before free PV arrives (see module doc).
    """
    site = oracle_site(site)
    index = local_day_slots(day, site.tz)
    n_day = len(index)
    for k in range(1, lookahead_days + 1):
        nxt = local_day_slots(day + timedelta(days=k), site.tz)
        if nxt[-1] > frame.index[-1] or frame["load_kw"].reindex(nxt).isna().all():
            break
        index = index.append(nxt)
    act = actuals(frame, site, index)
    return oracle_day_from(day, act, site, soc_kwh, capacity_state, commit_slots=n_day)


def oracle_day_from(day: date, act: Actuals, site: SiteConfig, soc_kwh: float | None = None,
                    capacity_state: CapacityState | None = None, commit_slots: int | None = None) -> OracleDay:
    """The oracle on given measured load/PV and prices (recorded file or the live database).

    ``act`` may run past the day (lookahead); only the first ``commit_slots`` (default: all) are
    executed, replayed and priced.
    """
    from shared.optimize import PlanInputs, solve_plan

    site = oracle_site(site)
    b = site.battery
    soc0 = (b.reserve_soc_kwh if soc_kwh is None else float(soc_kwh)) if b is not None else 0.0
    inputs = PlanInputs(index=act.index, load_kw=act.load_kw, pv_kw=act.pv_kw, prices=act.prices,
                        soc_kwh=soc0 if b is not None else None, capacity_state=capacity_state)
    t0 = time.perf_counter()
    plan = solve_plan(inputs, site)
    solve_s = time.perf_counter() - t0
    n = len(act.index) if commit_slots is None else commit_slots
    sim = simulate(plan.slots.iloc[:n], act.load_kw[:n], act.pv_kw[:n], act.prices.iloc[:n], site, soc0,
                   capacity_state=capacity_state, reserve_kwh=plan.strategy.reserve_kwh)
    missing = int(np.sum((act.load_kw[:n] == 0) & (act.pv_kw[:n] == 0))) if act.missing_slots else 0
    return OracleDay(day=day, soc_start_kwh=soc0, soc_end_kwh=sim.soc_end_kwh, cost=sim.cost, status=plan.status,
                     solve_s=solve_s, missing_slots=min(missing, act.missing_slots), flows=sim.flows)


def observed_day(day: date, observations: pd.DataFrame, prices: pd.DataFrame, site: SiteConfig,
                 ) -> tuple[Actuals, CostBreakdown | None, float | None]:
    """A day as the live system recorded it (``Store.observations_between`` energies per slot and
    ``Store.prices_between``): the oracle's inputs, the realized cost (when import/export were
    measured in every slot) and the SoC before the day (the last observation before it, if any).

    A slot without a price raises ValueError naming it: the oracle does not guess prices.
    """
    site = battery_pv_site(site)
    index = local_day_slots(day, site.tz)
    obs = observations.reindex(index)
    if obs.get("load_kwh") is None or obs["load_kwh"].isna().all():
        raise ValueError(f"no observations for {day.isoformat()}")
    load = obs["load_kwh"].to_numpy(dtype=float) / SLOT_HOURS
    pv = obs["pv_kwh"].to_numpy(dtype=float) / SLOT_HOURS if "pv_kwh" in obs else np.zeros(len(index))
    missing = ~(np.isfinite(load) & np.isfinite(pv))
    p = prices.reindex(index)[["import_price_per_kwh", "export_price_per_kwh"]].astype(float)
    bad = p.isna().any(axis=1).to_numpy()
    if bad.any():
        raise ValueError(f"prices missing for {int(bad.sum())} slot(s) of {day.isoformat()}, first at "
                         f"{index[int(np.argmax(bad))].isoformat()}")
    p.index.name = "slot_start"
    act = Actuals(index=index, load_kw=np.where(missing, 0.0, load), pv_kw=np.where(missing, 0.0, pv), prices=p,
                  missing_slots=int(missing.sum()))
    realized = None
    flows_cols = {"import_kwh": "import_kw", "export_kwh": "export_kw", "charge_kwh": "charge_kw",
                  "discharge_kwh": "discharge_kw"}
    if all(c in obs for c in ("import_kwh", "export_kwh")) and obs[["import_kwh", "export_kwh"]].notna().all().all():
        flows = pd.DataFrame({kw: obs[kwh].fillna(0.0).to_numpy(dtype=float) / SLOT_HOURS
                              for kwh, kw in flows_cols.items() if kwh in obs}, index=index)
        realized = plan_cost(flows, p, site)
    soc_before = None
    if site.battery is not None and "soc_end_frac" in observations:
        before = observations.loc[observations.index < index[0], "soc_end_frac"].dropna()
        if len(before):
            soc_before = float(before.iloc[-1]) * site.battery.capacity_kwh
    return act, realized, soc_before


@dataclass
class OracleRun:
    """The oracle over a range of local days."""

    days: list[OracleDay]
    flows: pd.DataFrame
    prices: pd.DataFrame
    cost: CostBreakdown
    runtime_s: float
    missing_slots: int
    notes: list[str] = field(default_factory=list)

    @property
    def oracle_cost(self) -> float:
        return money(self.cost)

    def to_dict(self, site: SiteConfig) -> dict[str, Any]:
        return {
            "site_id": site.site_id, "currency": site.tariff.currency,
            "from": self.days[0].day.isoformat() if self.days else None,
            "to": self.days[-1].day.isoformat() if self.days else None,
            "days": len(self.days), "oracle_cost": round(self.oracle_cost, 6),
            "import_cost": round(self.cost.import_cost, 6), "export_revenue": round(self.cost.export_revenue, 6),
            "capacity_cost": round(self.cost.capacity_cost, 6), "wear_cost": round(self.cost.wear_cost, 6),
            "import_kwh": round(self.cost.import_kwh, 4), "export_kwh": round(self.cost.export_kwh, 4),
            "soc_end_kwh": round(self.days[-1].soc_end_kwh, 4) if self.days else None,
            "missing_slots": self.missing_slots, "runtime_s": round(self.runtime_s, 3),
            "solve_s_mean": round(float(np.mean([d.solve_s for d in self.days])), 4) if self.days else None,
            "per_day": [d.to_dict() for d in self.days], "notes": self.notes,
        }


def oracle_range(frame: pd.DataFrame, site: SiteConfig, date_from: date, date_to: date,
                 soc_kwh: float | None = None, progress: Progress | None = None, lookahead_days: int = 1) -> OracleRun:
    """Daily oracle problems from ``date_from`` to ``date_to`` (inclusive), SoC carried day to day,
    each seeing ``lookahead_days`` more days of hindsight (0: the day alone)."""
    t0 = time.perf_counter()
    site = oracle_site(site)
    days: list[OracleDay] = []
    soc = soc_kwh
    imports: list[pd.Series] = []
    n_days = (date_to - date_from).days + 1
    if n_days <= 0:
        raise ValueError(f"--to {date_to} is before --from {date_from}")
    for k in range(n_days):
        day = date_from + timedelta(days=k)
        start, _ = local_day_bounds(day, site.tz)
        history = pd.concat(imports) if imports else pd.Series(dtype=float)
        state = capacity_state_before(history, start, site)
        od = oracle_day(frame, site, day, soc, state, lookahead_days=lookahead_days)
        days.append(od)
        imports.append(od.flows["import_kw"])
        soc = od.soc_end_kwh
        if progress:
            progress(k + 1, n_days, day.isoformat())
    flows = pd.concat([d.flows for d in days])
    prices = price_curve_from_data(frame.reindex(flows.index), site)
    cost = plan_cost(flows, prices, site)
    notes = []
    missing = sum(d.missing_slots for d in days)
    if missing:
        notes.append(f"{missing} slots without measured load/PV counted as zero load and zero PV")
    return OracleRun(days=days, flows=flows, prices=prices, cost=cost, runtime_s=time.perf_counter() - t0,
                     missing_slots=missing, notes=notes)


def baseline_cost(act: Actuals, site: SiteConfig) -> CostBreakdown:
    """What the house pays without a battery over ``act``."""
    return plan_cost(no_battery_flows(act.load_kw, act.pv_kw, act.index, site), act.prices, site)
