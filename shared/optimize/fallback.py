"""The safe self-consumption plan used when the optimiser cannot give one.

Rules a person can check: PV first covers the load, its surplus charges the battery and the
rest is exported (curtailed beyond the export limit); the battery covers what PV cannot, down
to its reserve; nothing is bought to charge the battery or exported from it. Water heaters
heat in the cheapest slots of each local day until the day's minimum; an EV charges at full
power from the start of its session until its target. Battery physics: :mod:`shared.battery`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from shared.battery import step
from shared.config import SiteConfig
from shared.cost import plan_cost
from shared.optimize.explain import mode_changes_per_day, slot_modes
from shared.optimize.inputs import PlanInputs, WaterState, apply_strategy
from shared.optimize.result import PlanResult, SolverStats


def _water_schedule(inputs: PlanInputs, site: SiteConfig) -> dict[int, np.ndarray]:
    price = inputs.prices["import_price_per_kwh"].to_numpy()
    dates = np.asarray(inputs.index.tz_convert(site.tz).date)
    out = {}
    for i, heater in enumerate(site.water_heaters):
        on = np.zeros(len(inputs.index))
        state = inputs.water.get(heater.name, WaterState())
        for k, day in enumerate(pd.unique(dates)):
            slots = np.flatnonzero(dates == day)
            need = heater.daily_min_kwh - (state.done_today_kwh if k == 0 else 0.0)
            if inputs.vacation or need <= 0:
                continue
            n = min(len(slots), int(np.ceil(need / (heater.power_kw * inputs.slot_hours) - 1e-9)))
            on[slots[np.argsort(price[slots], kind="stable")[:n]]] = heater.power_kw
        out[i] = on
    return out


def self_consumption_plan(inputs: PlanInputs, site: SiteConfig) -> pd.DataFrame:
    n, dt = len(inputs.index), inputs.slot_hours
    load = np.asarray(inputs.load_kw, float)
    pv = np.asarray(inputs.pv_kw, float)
    water = _water_schedule(inputs, site)
    water_total = sum(water.values()) if water else np.zeros(n)
    ev_kw = np.zeros(n)
    for i, ev in enumerate(site.evs):
        from shared.optimize.ev import ev_sessions  # the same session rules as the model
        from shared.optimize.inputs import apply_strategy
        from shared.optimize.model import Model

        _, strategy = apply_strategy(inputs, site)
        probe = Model(site=site, inputs=inputs, strategy=strategy)
        for mask, _dep in ev_sessions(probe, ev, i == 0):
            need = ev.target_kwh
            for t in np.flatnonzero(mask):
                if need <= 1e-9:
                    break
                p = min(ev.max_charge_kw, need / (ev.charge_efficiency * dt))
                ev_kw[t] += p
                need -= p * ev.charge_efficiency * dt
    demand = load + water_total + ev_kw
    b = site.battery
    soc = inputs.soc_kwh if inputs.soc_kwh is not None else (b.reserve_soc_kwh if b else 0.0)
    ch = np.zeros(n)
    dis = np.zeros(n)
    socs = np.zeros(n)
    for t in range(n):
        net = pv[t] - demand[t]
        if b is not None:
            floor = b.reserve_soc_kwh
            if net > 0:
                s = step(soc, net, dt, b)
            else:
                # the battery covers the house only, never the car (unless allowed)
                cover = load[t] + water_total[t] - pv[t] + (ev_kw[t] if any(e.battery_may_feed_ev for e in site.evs) else 0)
                s = step(soc, -max(0.0, min(-net, cover)), dt, b, floor_kwh=floor)
            ch[t], dis[t], soc = s.charge_kw, s.discharge_kw, s.soc_end_kwh
        socs[t] = soc
    net = pv - demand - ch + dis
    imp = np.maximum(0.0, -net)
    exp_possible = site.grid.max_export_kw if site.tariff.export_enabled else 0.0
    exp = np.minimum(np.maximum(0.0, net), exp_possible)
    curt = np.maximum(0.0, net) - exp
    frame = pd.DataFrame(
        {
            "load_kw": load, "pv_kw": pv, "pv_curtail_kw": curt, "import_kw": imp, "export_kw": exp,
            "charge_kw": ch, "discharge_kw": dis, "soc_kwh": socs, "water_kw": water_total, "ev_kw": ev_kw,
        },
        index=inputs.index,
    )
    for i, on in water.items():
        frame[f"water{i}_kw"] = on
    frame.index.name = "slot_start"
    return frame


def fallback_plan(inputs: PlanInputs, site: SiteConfig) -> PlanResult:
    """A safe self-consumption plan: no optimiser, no grid charging, nothing exported from the battery."""
    return _rule_plan(inputs, site, "fallback", "fallback_self_consumption", True,
                      "fallback: the optimiser found no plan, so the battery only stores PV surplus and covers the load")


def rule_guard_plan(inputs: PlanInputs, site: SiteConfig, reason: str) -> PlanResult:
    """The self-consumption rule chosen by :mod:`shared.ruleguard` (status ``rule``; not a failure)."""
    return _rule_plan(inputs, site, "rule", "rule_guard_self_consumption", False, reason)


def _rule_plan(inputs: PlanInputs, site: SiteConfig, status: str, reason_code: str, fallback: bool,
               reason: str) -> PlanResult:
    adjusted, strategy = apply_strategy(inputs, site)
    frame = self_consumption_plan(adjusted, site)
    cost = plan_cost(frame, inputs.prices, site, capacity_state=inputs.capacity_state, slot_hours=inputs.slot_hours,
                     reserve_kwh=strategy.reserve_kwh,
                     water_on_before={n: s.on_now for n, s in inputs.water.items()})
    frame["mode"] = slot_modes(frame)
    frame["reason_code"] = reason_code
    frame["bus_value_per_kwh"] = np.nan
    frame["soc_value_per_kwh"] = np.nan
    stats = SolverStats(status=status, objective=cost.total)
    return PlanResult(
        status=status, slots=frame, cost=cost, objective_terms={}, stats=stats, reason=reason,
        strategy=strategy, fallback=fallback, mode_changes_per_day=mode_changes_per_day(frame, site),
    )
