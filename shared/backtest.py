"""Closed-loop backtest: the planner (MPC) replayed over recorded history.

Every ``replan_minutes`` the planner gets only what was knowable at that moment:

- prices: today's (local day), and tomorrow's only once the day-ahead auction has published
  them (``site.tariff.auction_time_local``, 13:00 by default); never beyond the data;
- load/PV forecasts (``forecast``): ``perfect`` (the measured future: an upper bound for the
  MPC), ``naive`` (the same slot on the most recent day before now; "yesterday"), or ``aurora``
  (the forecaster's models trained strictly on data before the issue time, retrained every
  ``retrain_days``, a forecast issued every ``forecast_every_hours``);
- the SoC from the simulator, the capacity-tariff peaks already made this billing period, and
  the previous plan (for the planner's stability terms).

Its plan is executed by :mod:`shared.simulator` against the measured load and PV until the
next replan. The result is compared with the same house without a battery (``baseline``), a
battery on a simple self-consumption rule (the planner's fallback rule) and the perfect
hindsight :mod:`shared.oracle`, all priced by :func:`shared.cost.plan_cost`. Every battery
strategy starts from the same SoC; the energy each leaves at the end is valued by the one rule
of :mod:`shared.cost` (:func:`shared.cost.adjusted_money`), and the captured fractions are on
these adjusted costs. A range with a slot without measured load/PV is refused.

Battery and PV only (see :func:`shared.oracle.battery_pv_site`). Deterministic: the same
inputs give the same numbers (single-threaded HiGHS, LightGBM with fixed seeds).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, Literal

import numpy as np
import pandas as pd

from shared.config import SiteConfig
from shared.cost import (
    CostBreakdown,
    adjusted_money,
    captured_frac,
    end_soc_value,
    plan_cost,
    stored_energy_value_per_kwh,
)
from shared.forecast.replay import AuroraForecast, ForecastKind, make_forecaster
from shared.oracle import (
    Actuals,
    OracleRun,
    actuals,
    battery_pv_site,
    capacity_state_before,
    oracle_range,
    range_index,
)
from shared.progress import Progress
from shared.ruleguard import DayMoney, GuardMode, decide
from shared.simulator import Rule, money, no_battery_flows, replay
from shared.slots import SLOT, local_day_bounds
from shared.tariff import PriceError, price_curve_from_data, priced_slots

# --------------------------------------------------------------------------- what is knowable


def prices_known_until(now: pd.Timestamp, site: SiteConfig) -> pd.Timestamp:
    """End (UTC, exclusive) of the prices published at ``now``: end of today, or of tomorrow after the auction.

    A time-of-use tariff (``tariff.day_ahead: false``) is known in advance: a week ahead here.
    """
    if not site.tariff.day_ahead:
        return now + timedelta(days=7)
    local = now.tz_convert(site.tz)
    today = local.date()
    auction = site.tariff.auction_time_local
    published = local.time() >= auction
    last_day = today + timedelta(days=1) if published else today
    return local_day_bounds(last_day, site.tz)[1]


# --------------------------------------------------------------------------- the loop


def daily_costs(flows: pd.DataFrame, prices: pd.DataFrame, site: SiteConfig) -> dict[date, float]:
    """Money per local day (capacity charge increments attributed to the day that caused them)."""
    out: dict[date, float] = {}
    dates = np.asarray(flows.index.tz_convert(site.tz).date)
    imports = flows["import_kw"]
    for d in pd.unique(dates):
        sel = dates == d
        part = flows.loc[sel]
        state = capacity_state_before(imports, part.index[0], site)
        out[d] = money(plan_cost(part, prices.loc[sel], site, capacity_state=state))
    return out


@dataclass
class BacktestResult:
    site_id: str
    currency: str
    forecast: str
    date_from: date
    date_to: date
    replan_minutes: int
    flows: pd.DataFrame
    prices: pd.DataFrame
    realized: CostBreakdown
    baseline: CostBreakdown
    self_consumption: CostBreakdown
    oracle: CostBreakdown
    per_day: list[dict[str, Any]]
    runtime_s: float
    replans: int
    solve_s_total: float
    fallback_plans: int
    soc_start_kwh: float
    soc_end_kwh: float
    oracle_soc_end_kwh: float
    rule_soc_end_kwh: float
    end_soc_value_per_kwh: float  # shared.cost.stored_energy_value_per_kwh over the range
    notes: list[str] = field(default_factory=list)
    curves: dict[str, pd.Series] = field(default_factory=dict)
    risk: str = "balanced"
    oracle_run: OracleRun | None = None  # for reuse by another forecaster's run of the same range
    rule_guard: str = "off"
    rule_guard_plans: int = 0  # replans where shared.ruleguard handed the battery to the rule

    def adjusted(self, strategy: str) -> float:
        """Money of ``strategy`` (realized, self_consumption, oracle, baseline) with its stored-energy
        difference valued by the one rule (the baseline has no battery: nothing to adjust)."""
        if strategy == "baseline":
            return money(self.baseline)
        cost, soc_end = {"realized": (self.realized, self.soc_end_kwh),
                         "self_consumption": (self.self_consumption, self.rule_soc_end_kwh),
                         "oracle": (self.oracle, self.oracle_soc_end_kwh)}[strategy]
        return adjusted_money(money(cost), self.soc_start_kwh, soc_end, self.end_soc_value_per_kwh)

    @property
    def savings_captured_frac(self) -> float | None:
        return captured_frac(self.adjusted("baseline"), self.adjusted("realized"), self.adjusted("oracle"))

    @property
    def rule_captured_frac(self) -> float | None:
        return captured_frac(self.adjusted("baseline"), self.adjusted("self_consumption"), self.adjusted("oracle"))

    def to_dict(self) -> dict[str, Any]:
        def r(x: float) -> float:
            return round(float(x), 6)

        frac, rule_frac = self.savings_captured_frac, self.rule_captured_frac
        socs = {"realized": self.soc_end_kwh, "self_consumption": self.rule_soc_end_kwh,
                "oracle": self.oracle_soc_end_kwh}
        return {
            "site_id": self.site_id, "currency": self.currency, "forecast": self.forecast, "risk": self.risk,
            "from": self.date_from.isoformat(), "to": self.date_to.isoformat(), "days": len(self.per_day),
            "replan_minutes": self.replan_minutes,
            "realized_cost": r(money(self.realized)), "baseline_cost": r(money(self.baseline)),
            "self_consumption_cost": r(money(self.self_consumption)), "oracle_cost": r(money(self.oracle)),
            "realized_adjusted_cost": r(self.adjusted("realized")),
            "self_consumption_adjusted_cost": r(self.adjusted("self_consumption")),
            "oracle_adjusted_cost": r(self.adjusted("oracle")),
            "savings_captured_frac": None if frac is None else round(frac, 6),
            "rule_captured_frac": None if rule_frac is None else round(rule_frac, 6),
            "soc_start_kwh": r(self.soc_start_kwh), "rule_soc_end_kwh": r(self.rule_soc_end_kwh),
            "end_soc_value_per_kwh": r(self.end_soc_value_per_kwh),
            "end_soc_value": {k: r(end_soc_value(self.soc_start_kwh, v, self.end_soc_value_per_kwh))
                              for k, v in socs.items()},
            "realized_import_kwh": r(self.realized.import_kwh), "realized_export_kwh": r(self.realized.export_kwh),
            "realized_capacity_cost": r(self.realized.capacity_cost), "realized_wear_cost": r(self.realized.wear_cost),
            "oracle_capacity_cost": r(self.oracle.capacity_cost),
            "soc_end_kwh": r(self.soc_end_kwh), "oracle_soc_end_kwh": r(self.oracle_soc_end_kwh),
            "replans": self.replans, "fallback_plans": self.fallback_plans,
            "rule_guard": self.rule_guard, "rule_guard_plans": self.rule_guard_plans,
            "solve_s_total": round(self.solve_s_total, 3),
            "runtime_s": round(self.runtime_s, 3), "notes": self.notes, "per_day": self.per_day,
        }


def run_backtest(
    frame: pd.DataFrame,
    site: SiteConfig,
    date_from: date,
    date_to: date,
    forecast: ForecastKind = "perfect",
    replan_minutes: int = 60,
    soc_kwh: float | None = None,
    progress: Progress | None = None,
    forecast_kwargs: dict[str, Any] | None = None,
    rule: Rule = "executor",
    risk: Literal["cautious", "balanced", "bold"] | None = None,
    oracle_run: OracleRun | None = None,
    rule_guard: GuardMode | None = None,
) -> BacktestResult:
    """Closed-loop MPC over the local days ``date_from`` .. ``date_to`` (inclusive); see module doc.

    ``risk`` overrides ``planner.risk`` (cautious plans on the forecaster's load p90 / PV p10 where
    it has quantiles); ``oracle_run`` reuses an oracle of the same range and start SoC (comparing
    forecasters in one run); ``rule_guard`` overrides ``planner.rule_guard.mode`` (:mod:`shared.ruleguard`)."""
    from shared.optimize import PlanInputs, solve_plan
    from shared.optimize.fallback import rule_guard_plan

    t_start = time.perf_counter()
    if replan_minutes <= 0 or replan_minutes % 15:
        raise ValueError(f"--replan-minutes must be a positive multiple of 15, got {replan_minutes}")
    had_deferrable = bool(site.water_heaters or site.evs)
    site = battery_pv_site(site)
    b = site.battery
    if b is None:
        raise ValueError("the site has no battery: nothing to backtest (add battery: to the site YAML)")
    index = range_index(site, date_from, date_to)
    act = actuals(frame, site, index)
    data_end = frame.index[-1] + SLOT
    forecaster = make_forecaster(forecast, frame, site, act, **(forecast_kwargs or {}))
    step_slots = replan_minutes // 15
    soc0 = b.reserve_soc_kwh if soc_kwh is None else float(soc_kwh)
    soc = soc0
    parts: list[pd.DataFrame] = []
    imports = pd.Series(dtype=float)
    previous: pd.Series | None = None
    replans = fallbacks = 0
    solve_s = 0.0
    n = len(index)
    horizon = pd.Timedelta(hours=site.planner.horizon_hours)
    guard_cfg = site.planner.rule_guard.model_copy(update={"mode": rule_guard}) if rule_guard \
        else site.planner.rule_guard
    # the rule on the measured data: the guard's yardstick and the comparison row below
    sc_flows = self_consumption_flows(act, site, soc0)
    days_sc = daily_costs(sc_flows, act.prices, site)
    local_dates = np.asarray(index.tz_convert(site.tz).date)
    rule_soc_start = pd.Series(np.r_[soc0, sc_flows["soc_kwh"].to_numpy()[:-1]]).groupby(local_dates).first()
    guard_days: list[DayMoney] = []
    notes_guard: list[str] = []
    guard = decide(guard_days, guard_cfg)
    guarded_days: set[date] = set()
    guard_plans = 0
    day_start_k, day_soc_start = 0, soc0
    for k0 in range(0, n, step_slots):
        now = index[k0]
        if k0 and local_dates[k0] != local_dates[day_start_k]:
            # a local day finished: its money against the rule's decides the next plans (its capacity
            # charge counts only that day's peaks: an approximation under a capacity tariff)
            done = pd.concat(parts).iloc[day_start_k:k0]
            d = local_dates[day_start_k]
            guard_days.append(DayMoney(
                d, daily_costs(done, act.prices.iloc[day_start_k:k0], site)[d], day_soc_start, soc,
                days_sc[d], float(rule_soc_start[d]), float(sc_flows["soc_kwh"].iloc[k0 - 1]),
                stored_energy_value_per_kwh(act.prices["import_price_per_kwh"].iloc[day_start_k:k0], b)))
            was = guard.use_rule
            guard = decide(guard_days, guard_cfg, rule_active=was)
            if guard.use_rule != was:
                notes_guard.append(f"{now.tz_convert(site.tz):%Y-%m-%d %H:%M}: {guard.reason}")
            day_start_k, day_soc_start = k0, soc
        end = min(prices_known_until(now, site), now + horizon, data_end)
        plan_index = pd.date_range(now, end, freq=SLOT, inclusive="left")
        window = frame.reindex(plan_index)
        # a horizon ends at the last published price (as in the live planner); none at all is an error
        prices = price_curve_from_data(window, site, allow_missing=True)
        n_priced = priced_slots(prices)
        if n_priced < min(step_slots, n - k0):
            raise PriceError(f"no price for {plan_index[n_priced].isoformat()} (needed to plan at {now.isoformat()})")
        plan_index, prices = plan_index[:n_priced], prices.iloc[:n_priced]
        load_fc, pv_fc = forecaster.forecast(now, plan_index)
        quantiles = forecaster.quantiles(now, plan_index)
        state = capacity_state_before(imports, now, site) if site.tariff.capacity.enabled else None
        inputs = PlanInputs(index=plan_index, load_kw=load_fc, pv_kw=pv_fc, prices=prices, soc_kwh=soc,
                            capacity_state=state, previous_battery_kw=previous, risk=risk,
                            load_p90_kw=None if quantiles is None else quantiles[0],
                            pv_p10_kw=None if quantiles is None else quantiles[1])
        t0 = time.perf_counter()
        plan = rule_guard_plan(inputs, site, guard.reason) if guard.use_rule else solve_plan(inputs, site)
        solve_s += time.perf_counter() - t0
        if guard.use_rule:
            guard_plans += 1
            guarded_days.add(local_dates[k0])
        replans += 1
        fallbacks += int(plan.fallback)
        k1 = min(k0 + step_slots, n)
        executed = plan.slots.iloc[: k1 - k0]
        flows = replay(executed, act.load_kw[k0:k1], act.pv_kw[k0:k1], site, soc, rule=rule)
        soc = float(flows["soc_kwh"].iloc[-1])
        parts.append(flows)
        if site.tariff.capacity.enabled:
            # only the running billing period matters (at most a month of slots)
            keep = imports[imports.index >= now - pd.Timedelta(days=32)] if len(imports) else imports
            imports = pd.concat([keep, flows["import_kw"]]) if len(keep) else flows["import_kw"]
        previous = (plan.slots["charge_kw"] - plan.slots["discharge_kw"]).iloc[k1 - k0:]
        if progress:
            progress(k1, n, now.tz_convert(site.tz).strftime("%Y-%m-%d %H:%M"))
    flows = pd.concat(parts)
    realized = plan_cost(flows, act.prices, site)

    base_flows = no_battery_flows(act.load_kw, act.pv_kw, index, site)
    baseline = plan_cost(base_flows, act.prices, site)
    self_consumption = plan_cost(sc_flows, act.prices, site)
    reuse = oracle_run is not None and oracle_run.days[0].day == date_from and oracle_run.days[-1].day == date_to \
        and abs(oracle_run.soc_start_kwh - soc0) < 1e-9
    orc = oracle_run if reuse else oracle_range(frame, site, date_from, date_to, soc_kwh=soc0)

    per_day = []
    days_real = daily_costs(flows, act.prices, site)
    days_base = daily_costs(base_flows, act.prices, site)
    days_orc = {d.day: d.oracle_cost for d in orc.days}
    soc_end_by_day = flows["soc_kwh"].groupby(local_dates).last()
    rule_soc_by_day = sc_flows["soc_kwh"].groupby(local_dates).last()
    orc_soc_by_day = {d.day: d.soc_end_kwh for d in orc.days}
    for d in days_real:
        per_day.append({
            "date": d.isoformat(), "realized_cost": round(days_real[d], 6), "baseline_cost": round(days_base[d], 6),
            "self_consumption_cost": round(days_sc[d], 6), "oracle_cost": round(days_orc.get(d, float("nan")), 6),
            "soc_end_kwh": round(float(soc_end_by_day[d]), 4), "rule_soc_end_kwh": round(float(rule_soc_by_day[d]), 4),
            "oracle_soc_end_kwh": round(float(orc_soc_by_day.get(d, float("nan"))), 4),
            "rule_guard": d in guarded_days,
        })
    notes = list(forecaster.notes) + list(orc.notes) + notes_guard
    if had_deferrable:
        notes.append("water heaters/EVs not modelled (the measured load already contains them)")
    if isinstance(forecaster, AuroraForecast) and forecaster.train_s:
        notes.append(f"aurora: trained {len(forecaster.train_s)} times ({sum(forecaster.train_s):.1f} s), "
                     f"{len(forecaster.forecast_s)} forecasts ({sum(forecaster.forecast_s):.1f} s)")
    curves = {
        "realized": pd.Series(list(days_real.values()), index=list(days_real.keys())).cumsum(),
        "baseline": pd.Series(list(days_base.values()), index=list(days_base.keys())).cumsum(),
        "self_consumption": pd.Series(list(days_sc.values()), index=list(days_sc.keys())).cumsum(),
        "oracle": pd.Series(list(days_orc.values()), index=list(days_orc.keys())).cumsum(),
    }
    return BacktestResult(
        site_id=site.site_id, currency=site.tariff.currency, forecast=forecast, date_from=date_from, date_to=date_to,
        replan_minutes=replan_minutes, flows=flows, prices=act.prices, realized=realized, baseline=baseline,
        self_consumption=self_consumption, oracle=orc.cost, per_day=per_day, runtime_s=time.perf_counter() - t_start,
        replans=replans, solve_s_total=solve_s, fallback_plans=fallbacks, soc_start_kwh=soc0,
        risk=risk or site.planner.risk, oracle_run=orc, rule_guard=guard_cfg.mode, rule_guard_plans=guard_plans,
        soc_end_kwh=soc, oracle_soc_end_kwh=orc.soc_end_kwh, rule_soc_end_kwh=float(sc_flows["soc_kwh"].iloc[-1]),
        end_soc_value_per_kwh=orc.value_per_kwh, notes=notes, curves=curves,
    )


def self_consumption_flows(act: Actuals, site: SiteConfig, soc_kwh: float) -> pd.DataFrame:
    """The simple rule on measured data (the planner's fallback: PV surplus charges, the battery covers
    the load down to the reserve, never grid charging nor export from the battery)."""
    from shared.optimize import PlanInputs
    from shared.optimize.fallback import self_consumption_plan
    from shared.optimize.inputs import apply_strategy

    inputs = PlanInputs(index=act.index, load_kw=act.load_kw, pv_kw=act.pv_kw, prices=act.prices, soc_kwh=soc_kwh)
    return self_consumption_plan(apply_strategy(inputs, site)[0], site)

