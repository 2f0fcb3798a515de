"""What the web app shows, computed from contract messages and stored history (no HTTP here).

- :func:`chart_data`: one 15-minute grid from the start of the past 24 h (or local midnight, if
  earlier) to the end of the plan, with prices, forecast bands, measurements, planned flows and
  SoC as columns a time-series chart (uPlot) draws directly.
- :func:`today_money`: today's energy cost so far (measured), the plan's rest of today, and the
  saving against the same day without a battery, priced by the one cost model (shared.cost).
- :func:`banners`: what is degraded right now, in words (stale inputs, alarms, planner errors,
  fallback plans, vacation, pause).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from shared.config import SiteConfig
from shared.contracts import ExecutorStateMsg, ForecastMsg, PlanMsg, PricesMsg, TelemetryMsg
from shared.cost import plan_cost
from shared.optimize.explain import REASON_CODES
from shared.slots import SLOT, SLOT_HOURS, as_utc, floor_slot, local_day_bounds

PAST = timedelta(hours=24)
PLANNER_ERROR_WINDOW = timedelta(minutes=30)  # a planner error older than this (wall time) is history
PRICE_FIELDS = ("import_price_per_kwh", "export_price_per_kwh")
FORECAST_FIELDS = ("pv_p10_kw", "pv_p50_kw", "pv_p90_kw", "load_p10_kw", "load_p50_kw", "load_p90_kw")
PLAN_FIELDS = ("charge_kw", "discharge_kw", "import_kw", "export_kw", "water_kw", "ev_kw")
# chart columns in drawing order; the page groups them by unit
CHART_SERIES = (*PRICE_FIELDS, *FORECAST_FIELDS, "pv_measured_kw", "load_measured_kw", *PLAN_FIELDS,
                "soc_planned_pct", "soc_target_pct", "soc_measured_pct")


def reason_words(code: str | None) -> str:
    """The planner's reason code for a slot in words (shared.optimize.explain.REASON_CODES)."""
    if not code:
        return "no reason given"
    return REASON_CODES.get(code, code.replace("_", " "))


def chart_window(now: datetime, site: SiteConfig, plan: PlanMsg | None) -> tuple[pd.Timestamp, pd.Timestamp]:
    """[start, end) of the chart: the past 24 h and the whole current local day, up to the plan's end."""
    now_ts = as_utc(now)
    day_start, day_end = local_day_bounds(now_ts.tz_convert(site.tz).date(), site.tz)
    start = min(floor_slot(now_ts - PAST), day_start.tz_convert("UTC"))
    end = max(day_end.tz_convert("UTC"), floor_slot(now_ts) + timedelta(hours=24))
    if plan is not None and plan.slots:
        end = max(end, as_utc(plan.slots[-1].start) + SLOT)
    return start, min(end, floor_slot(now_ts) + timedelta(hours=48))


def _column(index: pd.DatetimeIndex, values: dict[pd.Timestamp, float | None]) -> list[float | None]:
    out: list[float | None] = []
    for ts in index:
        v = values.get(ts)
        out.append(None if v is None or (isinstance(v, float) and math.isnan(v)) else round(float(v), 4))
    return out


def _slot_values(starts: Iterable[Any], values: Iterable[Any], shift: timedelta = timedelta(0)) -> dict:
    return {as_utc(s) + shift: v for s, v in zip(starts, values)}


def chart_data(
    site: SiteConfig,
    now: datetime,
    plan: PlanMsg | None,
    forecast: ForecastMsg | None,
    prices: PricesMsg | None,
    price_history: pd.DataFrame | None = None,
    observations: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """Columns on one 15-minute grid; SoC values sit at slot ends (as planned and measured)."""
    start, end = chart_window(now, site, plan)
    index = pd.date_range(start, end, freq=SLOT, inclusive="left")
    cols: dict[str, dict[pd.Timestamp, Any]] = {name: {} for name in CHART_SERIES}
    # prices: stored history first, the latest message wins; a plan's own prices fill gaps
    if price_history is not None and not price_history.empty:
        for field in PRICE_FIELDS:
            cols[field].update(_slot_values(price_history.index, price_history[field]))
    if plan is not None:
        for field in PRICE_FIELDS:
            cols[field].update({k: v for k, v in _slot_values([s.start for s in plan.slots],
                                                              [getattr(s, field) for s in plan.slots]).items()
                                if v is not None and k not in cols[field]})
    if prices is not None:
        step = timedelta(minutes=prices.resolution_minutes)
        for slot in prices.slots:  # hourly prices hold for every 15-minute slot of their hour
            t = as_utc(slot.start)
            while t < as_utc(slot.start) + step:
                cols["import_price_per_kwh"][t] = slot.import_price_per_kwh
                cols["export_price_per_kwh"][t] = slot.export_price_per_kwh
                t += SLOT
    if forecast is not None:
        for field in FORECAST_FIELDS:
            cols[field] = _slot_values([s.start for s in forecast.slots], [getattr(s, field) for s in forecast.slots])
    if observations is not None and not observations.empty:
        for name in ("pv", "load"):
            if f"{name}_kwh" in observations.columns:
                cols[f"{name}_measured_kw"] = _slot_values(observations.index, observations[f"{name}_kwh"] / SLOT_HOURS)
        if "soc_end_frac" in observations.columns:
            cols["soc_measured_pct"] = _slot_values(observations.index, observations["soc_end_frac"] * 100, SLOT)
    if plan is not None:
        starts = [s.start for s in plan.slots]
        for field in PLAN_FIELDS:
            cols[field] = _slot_values(starts, [getattr(s, field) for s in plan.slots])
        capacity = site.battery.capacity_kwh if site.battery is not None else None
        if capacity:
            cols["soc_planned_pct"] = _slot_values(starts, [100 * s.soc_kwh / capacity for s in plan.slots], SLOT)
        cols["soc_target_pct"] = _slot_values(
            starts, [None if s.soc_target_frac is None else 100 * s.soc_target_frac for s in plan.slots])
    grid = index.append(pd.DatetimeIndex([end]))  # one more point so step lines reach the end
    return {
        "x": [int(ts.timestamp()) for ts in grid],
        "series": {name: _column(grid, cols[name]) for name in CHART_SERIES},
        "now": int(as_utc(now).timestamp()),
        "timezone": site.location.timezone,
        "currency": site.tariff.currency,
        "plan_id": plan.plan_id if plan is not None else None,
        "forecast_id": forecast.forecast_id if forecast is not None else None,
    }


def _cost(flows: pd.DataFrame, prices: pd.DataFrame, site: SiteConfig) -> float | None:
    if flows.empty:
        return 0.0
    prices = prices.reindex(flows.index)
    if prices[list(PRICE_FIELDS)].isna().any().any():
        return None  # a slot without a price: no guessed money
    breakdown = plan_cost(flows, prices[list(PRICE_FIELDS)], site)
    return round(breakdown.import_cost - breakdown.export_revenue, 4)


MEASURED = ["import_kwh", "export_kwh", "charge_kwh", "discharge_kwh"]


def measured_money(site: SiteConfig, obs: pd.DataFrame, prices: pd.DataFrame
                   ) -> tuple[float | None, float | None, float | None]:
    """(cost, cost without a battery, saving) of measured slots: import cost minus export revenue.

    Without a battery the same home would have exchanged ``import - export - charge + discharge``
    with the grid in each slot. None where a price is missing.
    """
    obs = obs[MEASURED].dropna()
    measured = pd.DataFrame({"import_kw": obs["import_kwh"] / SLOT_HOURS,
                             "export_kw": obs["export_kwh"] / SLOT_HOURS}, index=obs.index)
    net_kw = (obs["import_kwh"] - obs["export_kwh"] - obs["charge_kwh"] + obs["discharge_kwh"]) / SLOT_HOURS
    without = pd.DataFrame({"import_kw": net_kw.clip(lower=0), "export_kw": (-net_kw).clip(lower=0)},
                           index=obs.index)
    cost, cost_without = _cost(measured, prices, site), _cost(without, prices, site)
    saving = round(cost_without - cost, 4) if cost is not None and cost_without is not None else None
    return cost, cost_without, saving


def days_money(site: SiteConfig, obs: pd.DataFrame, prices: pd.DataFrame) -> list[dict[str, Any]]:
    """Per local day of measured slots: realized cost, the same day without a battery, the saving."""
    if obs is None or obs.empty or not all(c in obs.columns for c in MEASURED):
        return []
    out = []
    days = obs.index.tz_convert(site.tz).date
    for day in sorted(set(days)):
        part = obs[days == day]
        cost, without, saving = measured_money(site, part, prices)
        out.append({"day": day.isoformat(), "realized": cost, "no_battery": without, "saving": saving,
                    "slots_measured": len(part[MEASURED].dropna())})
    return out


def today_money(
    site: SiteConfig, now: datetime, plan: PlanMsg | None, prices: pd.DataFrame, observations: pd.DataFrame
) -> dict[str, Any]:
    """Today's import cost minus export revenue: measured so far, planned for the rest, without a battery.

    ``prices``: ``import/export_price_per_kwh`` per 15-minute slot (UTC index); ``observations``:
    measured slots of today, priced by :func:`measured_money`. None where a price or a measurement is missing: no money is guessed. The capacity fee is
    a monthly figure and is not in these per-day numbers.
    """
    now_ts = as_utc(now)
    day_start, day_end = (t.tz_convert("UTC") for t in local_day_bounds(now_ts.tz_convert(site.tz).date(), site.tz))
    out: dict[str, Any] = {"currency": site.tariff.currency, "so_far": None, "no_battery_so_far": None,
                           "saving_so_far": None, "planned_rest": None, "planned_day": None, "slots_measured": 0}
    obs = observations[(observations.index >= day_start) & (observations.index < floor_slot(now_ts))] \
        if observations is not None and not observations.empty else pd.DataFrame()
    if not obs.empty and all(c in obs.columns for c in MEASURED):
        out["slots_measured"] = len(obs[MEASURED].dropna())
        out["so_far"], out["no_battery_so_far"], out["saving_so_far"] = measured_money(site, obs, prices)
    elif obs.empty:
        out["so_far"] = out["no_battery_so_far"] = out["saving_so_far"] = 0.0
    if plan is not None:
        rows = [s for s in plan.slots if floor_slot(now_ts) <= as_utc(s.start) < day_end]
        if rows:
            flows = pd.DataFrame({"import_kw": [s.import_kw for s in rows], "export_kw": [s.export_kw for s in rows]},
                                 index=pd.DatetimeIndex([as_utc(s.start) for s in rows]))
            plan_prices = pd.DataFrame({f: [getattr(s, f) for s in rows] for f in PRICE_FIELDS}, index=flows.index)
            plan_prices = plan_prices.combine_first(prices.reindex(flows.index)) if not prices.empty else plan_prices
            out["planned_rest"] = _cost(flows, plan_prices, site)
        else:
            out["planned_rest"] = 0.0
        if out["planned_rest"] is not None and out["so_far"] is not None:
            out["planned_day"] = round(out["so_far"] + out["planned_rest"], 4)
    return out


def now_card(site: SiteConfig, now: datetime, plan: PlanMsg | None, state: ExecutorStateMsg | None,
             telemetry: TelemetryMsg | None) -> dict[str, Any]:
    """The slot the plan is in now (mode, reason in words) and the measured power flow."""
    slot = None
    if plan is not None:
        current = floor_slot(now)
        slot = next((s for s in plan.slots if as_utc(s.start) == current), None)
    flow = None
    if telemetry is not None:
        flow = {k: getattr(telemetry, k) for k in ("pv_kw", "load_kw", "grid_kw", "battery_kw", "water_kw", "ev_kw")}
        flow["soc_pct"] = None if telemetry.soc_frac is None else round(100 * telemetry.soc_frac, 1)
        flow["ts"] = telemetry.ts.isoformat()
    return {
        "planned_mode": slot.mode if slot is not None else None,
        "reason": reason_words(slot.reason_code) if slot is not None else "no plan for this slot",
        "plan_reason": plan.reason if plan is not None else None,
        "executor_mode": state.mode if state is not None else None,
        "override": state.override.model_dump(mode="json") if state is not None and state.override else None,
        "flow": flow,
    }


def banners(
    site: SiteConfig,
    now: datetime,
    *,
    plan: PlanMsg | None,
    forecast: ForecastMsg | None,
    prices: PricesMsg | None,
    state: ExecutorStateMsg | None,
    telemetry: TelemetryMsg | None,
    errors: Iterable[tuple[datetime, str, str, str]] = (),
    context: dict[str, Any] | None = None,
    wall_now: datetime | None = None,
) -> list[dict[str, str]]:
    """Degraded states in words, most serious first: ``{"level": "error"|"warn"|"info", "text": ...}``.

    ``errors``: recent ``events/error`` as (wall-clock received, who, what, why); planner errors of
    the last 30 minutes are shown. ``now`` is site time (simulated in the demo), ``wall_now`` real time.
    """
    out: list[dict[str, str]] = []
    now_ts = as_utc(now)
    if plan is None:
        out.append({"level": "error", "text": "No plan received yet: the executor runs its safe mode."})
    else:
        if as_utc(plan.valid_until) < now_ts:
            out.append({"level": "error", "text": f"The plan expired at {_local(plan.valid_until, site)}: "
                                                  "the planner is not replanning."})
        if plan.fallback:
            out.append({"level": "warn", "text": f"Fallback plan (self-consumption): {plan.reason[:200]}"})
        elif plan.solver.status == "feasible":  # stopped by the time limit: say how far from the optimum at most
            gap = plan.solver.mip_gap
            within = f"within {gap * 100:.2f} % of the optimum" if gap is not None else "optimality not proven"
            out.append({"level": "info", "text": f"The plan is feasible, not proven optimal: the solver's time limit "
                                                 f"stopped it {within}."})
    if state is not None:
        for alarm in state.alarms:
            out.append({"level": "error", "text": f"Executor alarm: {alarm.replace('_', ' ')}."})
        if state.override is not None and state.override.kind == "pause":
            until = f" until {_local(state.override.expires_at, site)}" if state.override.expires_at else ""
            out.append({"level": "warn", "text": f"The executor is paused{until}: the plan is not being followed."})
        if state.shadow:
            out.append({"level": "info", "text": "Shadow mode: the executor decides but writes nothing."})
    stale_s = site.executor.telemetry_stale_s
    if telemetry is None:
        out.append({"level": "warn", "text": "No telemetry from the inverter yet."})
    elif (now_ts - as_utc(telemetry.ts)).total_seconds() > stale_s:
        out.append({"level": "warn", "text": f"Telemetry is stale: last reading {_local(telemetry.ts, site)}."})
    if prices is None:
        out.append({"level": "warn", "text": "No prices received yet."})
    elif as_utc(prices.slots[-1].start) + timedelta(minutes=prices.resolution_minutes) <= now_ts + timedelta(hours=2):
        out.append({"level": "warn", "text": f"Prices run out at {_local(prices.slots[-1].start, site)}: "
                                             "the price source is not updating."})
    if forecast is None:
        out.append({"level": "warn", "text": "No forecast received yet."})
    elif forecast.fallback:
        out.append({"level": "warn", "text": f"Forecast fallback ({forecast.model_id}): "
                                             + ("; ".join(forecast.notes)[:160] or "the model is not trained")})
    wall = as_utc(wall_now) if wall_now is not None else None
    seen: set[str] = set()
    for at, who, what, why in errors:
        if who != "planner" or why in seen or (wall is not None and wall - as_utc(at) > PLANNER_ERROR_WINDOW):
            continue
        seen.add(why)
        out.append({"level": "error", "text": f"Planner: {why[:240]}"})
    ctx = context or {}
    if ctx.get("vacation") is True:
        out.append({"level": "info", "text": "Vacation mode is on."})
    if ctx.get("away") is True:
        out.append({"level": "info", "text": "Away mode is on."})
    order = {"error": 0, "warn": 1, "info": 2}
    return sorted(out, key=lambda b: order[b["level"]])


def _local(ts: datetime | str, site: SiteConfig) -> str:
    return f"{as_utc(ts).tz_convert(site.tz):%Y-%m-%d %H:%M}"


def history_frame(observations: pd.DataFrame, prices: pd.DataFrame) -> pd.DataFrame:
    """Measured slots joined with their prices: the read API's history (JSON or CSV)."""
    frame = observations.copy()
    if prices is not None and not prices.empty:
        frame = frame.join(prices[list(PRICE_FIELDS)], how="outer")
    frame.index.name = "slot_start"
    return frame.replace({np.nan: None})


def forecast_vs_actual(site: SiteConfig, forecasts: pd.DataFrame, observations: pd.DataFrame,
                       start: datetime, end: datetime) -> dict[str, Any]:
    """Per slot: the forecast as it was known before the slot (the newest issued at or before its
    start), what was measured, and the naive forecast (the same slot a day earlier); per local day
    the mean absolute error (kW) of the p50 and of the naive forecast, for load and PV."""
    index = pd.date_range(as_utc(start), as_utc(end), freq=SLOT, inclusive="left")
    cols: dict[str, pd.Series] = {}
    if forecasts is not None and not forecasts.empty:
        known = forecasts[forecasts["issued_at"] <= forecasts.index]
        known = known.sort_values("issued_at").groupby(level=0).last()
        for field in FORECAST_FIELDS:
            cols[field] = known[field].reindex(index)
    measured = pd.DataFrame(index=index)
    for name in ("load", "pv"):
        kw = (observations[f"{name}_kwh"] / SLOT_HOURS) if observations is not None and \
            f"{name}_kwh" in observations.columns else pd.Series(dtype=float)
        cols[f"{name}_measured_kw"] = kw.reindex(index)
        cols[f"{name}_naive_kw"] = kw.reindex(index - timedelta(days=1)).set_axis(index)
        measured[name] = cols[f"{name}_measured_kw"]
    days = []
    local = index.tz_convert(site.tz).date
    for day in sorted(set(local)):
        mask = local == day
        row: dict[str, Any] = {"day": day.isoformat()}
        for name in ("load", "pv"):
            actual = cols[f"{name}_measured_kw"][mask]
            for label, pred in (("mae", cols.get(f"{name}_p50_kw")), ("naive_mae", cols[f"{name}_naive_kw"])):
                err = (pred[mask] - actual).abs().dropna() if pred is not None else pd.Series(dtype=float)
                row[f"{name}_{label}_kw"] = round(float(err.mean()), 3) if len(err) else None
        days.append(row)
    names = [*FORECAST_FIELDS, "load_measured_kw", "pv_measured_kw", "load_naive_kw", "pv_naive_kw"]
    return {
        "x": [int(ts.timestamp()) for ts in index],
        "series": {n: [None if pd.isna(v) else round(float(v), 3) for v in cols[n]] if n in cols else [None] * len(index)
                   for n in names},
        "days": days, "timezone": site.location.timezone,
    }
