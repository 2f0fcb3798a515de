"""Between the bus and Kepler: plan inputs from prices/forecast messages, and a PlanMsg from a PlanResult."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from shared.config import SiteConfig
from shared.contracts import CostBreakdown, ForecastMsg, PlanMsg, PlanSlot, PricesMsg, SolverStats
from shared.optimize.inputs import PlanInputError, PlanInputs
from shared.slots import SLOT, as_utc, expand_to_slots, floor_slot, local_dates


def price_frame(msg: PricesMsg) -> pd.DataFrame:
    """A price message on the 15-min grid (hourly prices repeat over their quarters)."""
    index = pd.DatetimeIndex([as_utc(s.start) for s in msg.slots], name="slot_start")
    cols = {
        "spot_per_kwh": [np.nan if s.spot_per_kwh is None else s.spot_per_kwh for s in msg.slots],
        "import_price_per_kwh": [s.import_price_per_kwh for s in msg.slots],
        "export_price_per_kwh": [s.export_price_per_kwh for s in msg.slots],
    }
    frame = pd.DataFrame(cols, index=index, dtype=float)
    if msg.resolution_minutes != 15 and len(frame) > 0:
        step = pd.Timedelta(minutes=msg.resolution_minutes)
        full = pd.date_range(frame.index[0], frame.index[-1], freq=step, name="slot_start")
        frame = frame.reindex(full)
        frame = pd.DataFrame({c: expand_to_slots(frame[c]) for c in frame.columns})
    return frame


def forecast_frame(msg: ForecastMsg) -> pd.DataFrame:
    index = pd.DatetimeIndex([as_utc(s.start) for s in msg.slots], name="slot_start")
    fields = ("load_p10_kw", "load_p50_kw", "load_p90_kw", "pv_p10_kw", "pv_p50_kw", "pv_p90_kw")
    return pd.DataFrame({f: [getattr(s, f) for s in msg.slots] for f in fields}, index=index, dtype=float)


def inputs_from_messages(
    now: datetime,
    site: SiteConfig,
    prices: PricesMsg,
    forecast: ForecastMsg,
    soc_kwh: float | None,
    hours: float | None = None,
    **context: object,
) -> PlanInputs:
    """Plan inputs from the latest bus messages.

    The horizon starts at the current slot and ends ``hours`` later, at the last published
    price, or at the end of the forecast, whichever comes first (never beyond what is known).
    """
    start = floor_slot(now)
    hours = hours or site.planner.horizon_hours
    price = price_frame(prices)
    fc = forecast_frame(forecast)
    end = start + pd.Timedelta(hours=hours)
    known = price.dropna(subset=["import_price_per_kwh", "export_price_per_kwh"])
    if known.empty or known.index[-1] < start:
        raise PlanInputError(f"prices: none published from {start.isoformat()} on (last: "
                             f"{price.index[-1].isoformat() if len(price) else 'none'})")
    if fc.empty or fc.index[-1] < start:
        raise PlanInputError(f"forecast: none from {start.isoformat()} on")
    end = min(end, known.index[-1] + SLOT, fc.index[-1] + SLOT)
    index = pd.date_range(start, end, freq=SLOT, inclusive="left", name="slot_start")
    window = price.reindex(index)
    # the horizon ends at the first gap in prices or forecast: nothing after it is known
    ok = (window[["import_price_per_kwh", "export_price_per_kwh"]].notna().all(axis=1)
          & fc.reindex(index).notna().all(axis=1)).to_numpy()
    n = int(np.argmin(ok)) if not ok.all() else len(index)
    if n == 0:
        raise PlanInputError(f"prices or forecast missing for the current slot {start.isoformat()}")
    index = index[:n]
    fcw = fc.reindex(index)
    return PlanInputs(
        index=index,
        load_kw=fcw["load_p50_kw"].to_numpy(),
        pv_kw=fcw["pv_p50_kw"].to_numpy(),
        load_p90_kw=fcw["load_p90_kw"].to_numpy(),
        pv_p10_kw=fcw["pv_p10_kw"].to_numpy(),
        prices=window.iloc[:n][["spot_per_kwh", "import_price_per_kwh", "export_price_per_kwh"]],
        soc_kwh=soc_kwh,
        **context,  # type: ignore[arg-type]
    )


def _opt(value: object) -> float | None:
    try:
        f = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return f if np.isfinite(f) else None


def plan_message(
    result: object,
    site: SiteConfig,
    created_at: datetime,
    inputs: dict[str, str | None] | None = None,
    prices: pd.DataFrame | None = None,
) -> PlanMsg:
    """The contract message of a Kepler plan (``PlanResult``), valid for ``planner.plan_validity_minutes``.

    ``prices`` (the plan inputs' price curve) adds the per-slot import/export prices.
    """
    frame: pd.DataFrame = result.slots  # type: ignore[attr-defined]
    if prices is not None:
        frame = frame.join(prices[["import_price_per_kwh", "export_price_per_kwh"]], how="left")
    cost = result.cost  # type: ignore[attr-defined]
    stats = result.stats  # type: ignore[attr-defined]
    capacity = site.battery.capacity_kwh if site.battery else None
    slots = []
    for ts, row in frame.iterrows():
        soc = max(0.0, float(row.get("soc_kwh", 0.0)))
        slots.append(PlanSlot(
            start=ts.to_pydatetime(),
            mode=str(row.get("mode", "self_consumption")),
            charge_kw=max(0.0, float(row.get("charge_kw", 0.0))),
            discharge_kw=max(0.0, float(row.get("discharge_kw", 0.0))),
            import_kw=max(0.0, float(row.get("import_kw", 0.0))),
            export_kw=max(0.0, float(row.get("export_kw", 0.0))),
            soc_kwh=soc,
            soc_target_frac=min(1.0, soc / capacity) if capacity else None,
            pv_curtail_kw=max(0.0, float(row.get("pv_curtail_kw", 0.0))),
            water_kw=max(0.0, float(row.get("water_kw", 0.0))),
            ev_kw=max(0.0, float(row.get("ev_kw", 0.0))),
            load_kw=_opt(row.get("load_kw")),
            pv_kw=_opt(row.get("pv_kw")),
            import_price_per_kwh=_opt(row.get("import_price_per_kwh")),
            export_price_per_kwh=_opt(row.get("export_price_per_kwh")),
            reason_code=str(row["reason_code"]) if "reason_code" in row and row["reason_code"] else None,
            battery_value_per_kwh=_opt(row.get("soc_value_per_kwh")),
        ))
    per_day = daily_costs(frame, site)
    first = frame.iloc[0] if len(frame) else None
    explanation = {
        "next_action": str(first["mode"]) if first is not None else None,
        "next_reason": str(first.get("reason_code", "")) if first is not None else None,
        "cost_per_local_day": per_day,
        "binding_limits": result.binding,  # type: ignore[attr-defined]
        "risk": result.strategy.risk,  # type: ignore[attr-defined]
        "terminal_value_per_kwh": _opt(result.terminal_value_per_kwh),  # type: ignore[attr-defined]
        "messages": list(result.messages),  # type: ignore[attr-defined]
    }
    changes = result.mode_changes_per_day or {}  # type: ignore[attr-defined]
    return PlanMsg(
        site_id=site.site_id,
        created_at=created_at,
        valid_until=created_at + timedelta(minutes=site.planner.plan_validity_minutes),
        inputs=inputs or {},
        fallback=bool(result.fallback),  # type: ignore[attr-defined]
        reason=str(result.reason),  # type: ignore[attr-defined]
        mode_changes_per_day=float(np.mean(list(changes.values()))) if changes else 0.0,
        slots=slots,
        cost=CostBreakdown(
            currency=site.tariff.currency,
            import_cost=cost.import_cost,
            export_revenue=cost.export_revenue,
            wear_cost=cost.wear_cost,
            capacity_cost=cost.capacity_cost,
            penalty_cost=cost.penalties + cost.water_start_cost,
            total_cost=cost.total,
        ),
        solver=SolverStats(
            status=str(result.status),  # type: ignore[attr-defined]
            objective=_opt(stats.objective),
            build_s=max(0.0, stats.build_s),
            solve_s=max(0.0, stats.solve_s),
            mip_gap=_opt(stats.mip_gap),
        ),
        explanation=explanation,
    )


def daily_costs(frame: pd.DataFrame, site: SiteConfig) -> dict[str, float]:
    """Planned energy cost (import - export) per local day of the plan, for 'cost today/tomorrow'."""
    if frame.empty or "import_price_per_kwh" not in frame.columns:
        return {}
    hours = SLOT.total_seconds() / 3600
    money = (frame["import_kw"] * frame["import_price_per_kwh"] - frame["export_kw"] * frame["export_price_per_kwh"]) * hours
    days = local_dates(frame.index, site.tz)
    return {str(d): round(float(v), 4) for d, v in money.groupby(days).sum().items()}


def previous_battery_kw(plan: PlanMsg | None) -> pd.Series | None:
    """The previous plan's signed battery setpoints (+ = charge), for the stability terms."""
    if plan is None or not plan.slots:
        return None
    index = pd.DatetimeIndex([as_utc(s.start) for s in plan.slots], name="slot_start")
    return pd.Series([s.charge_kw - s.discharge_kw for s in plan.slots], index=index, dtype=float)
