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

Measured gaps: the oracle refuses a day with a slot without recorded load or PV
(:class:`IncompleteDayError` names the first one): a missing slot is not zero load and zero
PV, and hindsight over a guessed day is no benchmark. A look-ahead day with gaps is simply not
looked at. The live oracle also refuses a day that is not over yet.

Stored energy: a range's last day is solved without look-ahead, with the energy left at its
end valued by :func:`shared.cost.stored_energy_value_per_kwh` over the range's import prices,
the rule every comparison uses (:func:`shared.cost.adjusted_money`); so the oracle minimises
exactly the adjusted money it is compared on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd

from shared.config import SiteConfig
from shared.cost import CapacityState, CostBreakdown, adjusted_money, plan_cost, stored_energy_value_per_kwh
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


class IncompleteDayError(ValueError):
    """Measured load or PV is missing in a slot the oracle (or a comparison) would need."""


@dataclass
class Actuals:
    """Measured load/PV and prices on a slot index (with ``allow_missing``: NaN -> 0, counted in
    ``missing_slots``; the Gym environment only)."""

    index: pd.DatetimeIndex
    load_kw: np.ndarray
    pv_kw: np.ndarray
    prices: pd.DataFrame
    missing_slots: int


def actuals(frame: pd.DataFrame, site: SiteConfig, index: pd.DatetimeIndex, allow_missing: bool = False) -> Actuals:
    """Recorded data on ``index``; prices from :func:`shared.tariff.price_curve_from_data` (a missing
    price raises :class:`shared.tariff.PriceError` naming the slot). A slot without measured load
    or PV raises :class:`IncompleteDayError` naming it, unless ``allow_missing`` (then 0)."""
    window = frame.reindex(index)
    if window["load_kw"].isna().all():
        raise ValueError(f"no recorded data between {index[0].isoformat()} and {index[-1].isoformat()} "
                         f"(data covers {frame.index[0].isoformat()} .. {frame.index[-1].isoformat()})")
    load = window["load_kw"].to_numpy(dtype=float)
    pv = window["pv_kw"].to_numpy(dtype=float)
    missing = ~(np.isfinite(load) & np.isfinite(pv))
    if missing.any() and not allow_missing:
        raise IncompleteDayError(
            f"{int(missing.sum())} slot(s) without measured load/PV between {index[0].isoformat()} and "
            f"{index[-1].isoformat()}, first at {index[int(np.argmax(missing))].isoformat()}: a missing slot is "
            f"not zero load and PV; choose days with complete data")
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
            "status": self.status, "solve_s": round(self.solve_s, 4),
        }


def oracle_day(frame: pd.DataFrame, site: SiteConfig, day: date, soc_kwh: float | None = None,
               capacity_state: CapacityState | None = None, lookahead_days: int = 1,
               terminal_value_per_kwh: float | None = None) -> OracleDay:
    """The perfect-hindsight plan of one local day of recorded data, replayed and priced.

    With ``lookahead_days`` the problem also sees the following days (as far as the data goes)
    and only the day itself is kept: hindsight knows tomorrow's sun, so the day does not end
    filled from the grid just before free PV arrives (see module doc). A look-ahead day with a
    gap in the data is left out. ``terminal_value_per_kwh`` overrides the value of the energy
    left at the end of the problem.
    """
    site = oracle_site(site)
    index = local_day_slots(day, site.tz)
    n_day = len(index)
    for k in range(1, lookahead_days + 1):
        nxt = local_day_slots(day + timedelta(days=k), site.tz)
        if nxt[-1] > frame.index[-1] or frame[["load_kw", "pv_kw"]].reindex(nxt).isna().any().any():
            break
        index = index.append(nxt)
    if terminal_value_per_kwh is not None and site.battery is not None:
        battery = site.battery.model_copy(update={"terminal_value_per_kwh": float(terminal_value_per_kwh)})
        site = site.model_copy(update={"battery": battery})
    act = actuals(frame, site, index)
    return oracle_day_from(day, act, site, soc_kwh, capacity_state, commit_slots=n_day)


def oracle_day_from(day: date, act: Actuals, site: SiteConfig, soc_kwh: float | None = None,
                    capacity_state: CapacityState | None = None, commit_slots: int | None = None) -> OracleDay:
    """The oracle on given measured load/PV and prices (recorded file or the live database).

    ``act`` may run past the day (lookahead); only the first ``commit_slots`` (default: all) are
    executed, replayed and priced.
    """
    from shared.optimize import PlanInputs, solve_plan

    if act.missing_slots:
        raise IncompleteDayError(f"{day.isoformat()}: {act.missing_slots} slot(s) without measured load/PV")
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
    return OracleDay(day=day, soc_start_kwh=soc0, soc_end_kwh=sim.soc_end_kwh, cost=sim.cost, status=plan.status,
                     solve_s=solve_s, flows=sim.flows)


@dataclass
class ObservedDay:
    """A day as the live system recorded it: the oracle's inputs, the realized cost (when
    import/export were measured in every slot) and the SoC before and after the day."""

    act: Actuals
    realized: CostBreakdown | None
    soc_before_kwh: float | None
    soc_after_kwh: float | None


def observed_day(day: date, observations: pd.DataFrame, prices: pd.DataFrame, site: SiteConfig,
                 now: pd.Timestamp | None = None) -> ObservedDay:
    """A day from ``Store.observations_between`` (energies per slot, a little before the day for
    the SoC before it) and ``Store.prices_between``.

    Refused (ValueError naming what): a day not over at ``now``, a slot without observed load or
    PV (:class:`IncompleteDayError`; not zero), a slot without a price: the oracle does not guess.
    """
    site = battery_pv_site(site)
    index = local_day_slots(day, site.tz)
    if now is not None and index[-1] + (index[1] - index[0]) > pd.Timestamp(now):
        raise IncompleteDayError(f"{day.isoformat()} is not over yet (now {pd.Timestamp(now).isoformat()}): "
                                 f"the oracle needs the whole day")
    obs = observations.reindex(index)
    if obs.get("load_kwh") is None or obs["load_kwh"].isna().all():
        raise ValueError(f"no observations for {day.isoformat()}")
    load = obs["load_kwh"].to_numpy(dtype=float) / SLOT_HOURS
    pv = obs["pv_kwh"].to_numpy(dtype=float) / SLOT_HOURS if "pv_kwh" in obs else np.zeros(len(index))
    missing = ~(np.isfinite(load) & np.isfinite(pv))
    if missing.any():
        raise IncompleteDayError(
            f"{day.isoformat()}: {int(missing.sum())} slot(s) without observed load/PV, first at "
            f"{index[int(np.argmax(missing))].isoformat()}: a missing slot is not zero load and PV")
    p = prices.reindex(index)[["import_price_per_kwh", "export_price_per_kwh"]].astype(float)
    bad = p.isna().any(axis=1).to_numpy()
    if bad.any():
        raise ValueError(f"prices missing for {int(bad.sum())} slot(s) of {day.isoformat()}, first at "
                         f"{index[int(np.argmax(bad))].isoformat()}")
    p.index.name = "slot_start"
    act = Actuals(index=index, load_kw=load, pv_kw=pv, prices=p, missing_slots=0)
    realized = None
    flows_cols = {"import_kwh": "import_kw", "export_kwh": "export_kw", "charge_kwh": "charge_kw",
                  "discharge_kwh": "discharge_kw"}
    if all(c in obs for c in ("import_kwh", "export_kwh")) and obs[["import_kwh", "export_kwh"]].notna().all().all():
        flows = pd.DataFrame({kw: obs[kwh].fillna(0.0).to_numpy(dtype=float) / SLOT_HOURS
                              for kwh, kw in flows_cols.items() if kwh in obs}, index=index)
        realized = plan_cost(flows, p, site)
    soc_before = soc_after = None
    if site.battery is not None and "soc_end_frac" in observations:
        before = observations.loc[observations.index < index[0], "soc_end_frac"].dropna()
        if len(before):
            soc_before = float(before.iloc[-1]) * site.battery.capacity_kwh
        last = obs["soc_end_frac"].iloc[-1]
        if np.isfinite(last):
            soc_after = float(last) * site.battery.capacity_kwh
    return ObservedDay(act=act, realized=realized, soc_before_kwh=soc_before, soc_after_kwh=soc_after)


@dataclass
class OracleRun:
    """The oracle over a range of local days."""

    days: list[OracleDay]
    flows: pd.DataFrame
    prices: pd.DataFrame
    cost: CostBreakdown
    runtime_s: float
    value_per_kwh: float  # the stored-energy value of the range (shared.cost.stored_energy_value_per_kwh)
    notes: list[str] = field(default_factory=list)

    @property
    def oracle_cost(self) -> float:
        return money(self.cost)

    @property
    def soc_start_kwh(self) -> float:
        return self.days[0].soc_start_kwh

    @property
    def soc_end_kwh(self) -> float:
        return self.days[-1].soc_end_kwh

    @property
    def adjusted_cost(self) -> float:
        return adjusted_money(self.oracle_cost, self.soc_start_kwh, self.soc_end_kwh, self.value_per_kwh)

    def to_dict(self, site: SiteConfig) -> dict[str, Any]:
        return {
            "site_id": site.site_id, "currency": site.tariff.currency,
            "from": self.days[0].day.isoformat() if self.days else None,
            "to": self.days[-1].day.isoformat() if self.days else None,
            "days": len(self.days), "oracle_cost": round(self.oracle_cost, 6),
            "oracle_adjusted_cost": round(self.adjusted_cost, 6),
            "import_cost": round(self.cost.import_cost, 6), "export_revenue": round(self.cost.export_revenue, 6),
            "capacity_cost": round(self.cost.capacity_cost, 6), "wear_cost": round(self.cost.wear_cost, 6),
            "import_kwh": round(self.cost.import_kwh, 4), "export_kwh": round(self.cost.export_kwh, 4),
            "soc_start_kwh": round(self.soc_start_kwh, 4), "soc_end_kwh": round(self.soc_end_kwh, 4),
            "end_soc_value_per_kwh": round(self.value_per_kwh, 6), "runtime_s": round(self.runtime_s, 3),
            "solve_s_mean": round(float(np.mean([d.solve_s for d in self.days])), 4) if self.days else None,
            "per_day": [d.to_dict() for d in self.days], "notes": self.notes,
        }


def oracle_range(frame: pd.DataFrame, site: SiteConfig, date_from: date, date_to: date,
                 soc_kwh: float | None = None, progress: Progress | None = None, lookahead_days: int = 1) -> OracleRun:
    """Daily oracle problems from ``date_from`` to ``date_to`` (inclusive), SoC carried day to day,
    each seeing ``lookahead_days`` more days of hindsight (0: the day alone) except the last,
    which values the energy it leaves by the one stored-energy rule (see module doc).

    Refuses a range with a slot without measured load/PV (:class:`IncompleteDayError`)."""
    t0 = time.perf_counter()
    site = oracle_site(site)
    n_days = (date_to - date_from).days + 1
    if n_days <= 0:
        raise ValueError(f"--to {date_to} is before --from {date_from}")
    act = actuals(frame, site, range_index(site, date_from, date_to))  # refuses gaps before any solve
    value = stored_energy_value_per_kwh(act.prices["import_price_per_kwh"], site.battery)
    days: list[OracleDay] = []
    soc = soc_kwh
    imports: list[pd.Series] = []
    for k in range(n_days):
        day = date_from + timedelta(days=k)
        start, _ = local_day_bounds(day, site.tz)
        history = pd.concat(imports) if imports else pd.Series(dtype=float)
        state = capacity_state_before(history, start, site)
        last = k == n_days - 1
        od = oracle_day(frame, site, day, soc, state, lookahead_days=0 if last else lookahead_days,
                        terminal_value_per_kwh=value if last else None)
        days.append(od)
        imports.append(od.flows["import_kw"])
        soc = od.soc_end_kwh
        if progress:
            progress(k + 1, n_days, day.isoformat())
    flows = pd.concat([d.flows for d in days])
    cost = plan_cost(flows, act.prices, site)
    return OracleRun(days=days, flows=flows, prices=act.prices, cost=cost, runtime_s=time.perf_counter() - t0,
                     value_per_kwh=value)


def baseline_cost(act: Actuals, site: SiteConfig) -> CostBreakdown:
    """What the house pays without a battery over ``act``."""
    return plan_cost(no_battery_flows(act.load_kw, act.pv_kw, act.index, site), act.prices, site)
