"""What-if analyses on one day: what would forcing more export cost?

:func:`whatif_export` plans the day once (the baseline plan), then forces export in the
``k`` highest export-price slots for k = 1, 2, ... (manual ``export`` blocks: the planner
re-plans the whole day around them), replays each plan with :mod:`shared.simulator` against
the measured (or, live, forecast) load and PV, and reports per step the target export, the
export that really happened in the forced slots, and the cost change against the baseline.

The target per forced slot is what the site could physically send out there: the export
limit, at most the battery's discharge power plus PV minus the house's load. When the planner cannot
meet a target (e.g. the battery runs dry), :func:`shared.optimize.solve_plan` drops the blocks
(status ``relaxed``) and the realized export shows by how much it falls short.

``relaxed=True`` lowers cycle cost and margins: no wear cost, the soft reserve down to the
hard minimum SoC, no stability costs, no terminal value (the day may end empty).

Costs are adjusted for the energy each plan leaves in the battery (every plan starts from the
same SoC), valued by the one rule of :mod:`shared.cost` (the planner's terminal value; 0 when
relaxed): export forced out of the battery is energy the baseline still has at the end of the
day, and without the adjustment it looked like a "saving" (up to 0.99 EUR on the SE4 home).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from shared.config import SiteConfig
from shared.cost import adjusted_money, stored_energy_value_per_kwh
from shared.oracle import Actuals, actuals, battery_pv_site
from shared.simulator import money, simulate
from shared.slots import SLOT, SLOT_HOURS, local_day_slots


def relaxed_site(site: SiteConfig) -> SiteConfig:
    """The site with cycle cost and margins lowered (see module doc)."""
    b = site.battery
    updates: dict[str, Any] = {
        "planner": site.planner.model_copy(update={"setpoint_change_cost_per_kw": 0.0, "mode_switch_cost": 0.0}),
    }
    if b is not None:
        updates["battery"] = b.model_copy(update={"wear_cost_per_kwh": 0.0, "reserve_soc_frac": b.min_soc_frac,
                                                  "reserve_penalty_per_kwh": 0.0, "terminal_value_per_kwh": 0.0})
    return site.model_copy(update=updates)


@dataclass
class WhatIfStep:
    forced_slots: int
    target_export_kwh: float
    realized_export_forced_kwh: float
    export_kwh: float
    cost: float  # adjusted for the energy left (see module doc)
    cost_change: float
    status: str
    money: float = 0.0  # the day's money before the adjustment
    soc_end_kwh: float = 0.0
    first_forced: list[str] = field(default_factory=list)
    flows: dict[str, list[float]] = field(default_factory=dict)  # per slot: export_kw, import_kw, soc_kwh (end)

    def to_dict(self) -> dict[str, Any]:
        return {
            "forced_slots": self.forced_slots, "target_export_kwh": round(self.target_export_kwh, 4),
            "realized_export_forced_kwh": round(self.realized_export_forced_kwh, 4),
            "export_kwh": round(self.export_kwh, 4), "cost": round(self.cost, 6), "money": round(self.money, 6),
            "soc_end_kwh": round(self.soc_end_kwh, 4),
            "cost_change": round(self.cost_change, 6), "status": self.status, "forced": self.first_forced,
        }


@dataclass
class WhatIfResult:
    day: date
    currency: str
    relaxed: bool
    baseline_cost: float  # adjusted for the energy left (see module doc)
    baseline_export_kwh: float
    steps: list[WhatIfStep]
    source: str = "recorded"
    soc_start_kwh: float = 0.0
    baseline_soc_end_kwh: float = 0.0
    end_soc_value_per_kwh: float = 0.0
    slots: list[str] = field(default_factory=list)  # slot starts (ISO, UTC) of ``flows``
    baseline_flows: dict[str, list[float]] = field(default_factory=dict)

    def to_dict(self, site_id: str, flows: bool = False) -> dict[str, Any]:
        return {
            "site_id": site_id, "day": self.day.isoformat(), "currency": self.currency, "relaxed": self.relaxed,
            "source": self.source, "baseline_cost": round(self.baseline_cost, 6),
            "soc_start_kwh": round(self.soc_start_kwh, 4), "baseline_soc_end_kwh": round(self.baseline_soc_end_kwh, 4),
            "end_soc_value_per_kwh": round(self.end_soc_value_per_kwh, 6),
            "baseline_export_kwh": round(self.baseline_export_kwh, 4),
            "steps": [{**s.to_dict(), **({"flows": s.flows} if flows else {})} for s in self.steps],
            **({"slots": self.slots, "baseline_flows": self.baseline_flows} if flows else {}),
        }


def whatif_export_on(day: date, act: Actuals, site: SiteConfig, soc_kwh: float | None = None, relaxed: bool = False,
                     steps: int = 8, slots_per_step: int = 1) -> WhatIfResult:
    """The what-if on given load/PV and prices (``act``); see module doc."""
    from shared.optimize import ManualBlock, PlanInputs, solve_plan

    site = battery_pv_site(site)
    if relaxed:
        site = relaxed_site(site)
    b = site.battery
    if b is None:
        raise ValueError("whatif export needs a site with a battery")
    if not site.tariff.export_enabled or site.grid.max_export_kw <= 0:
        raise ValueError("export is disabled for this site (tariff.export_enabled / grid.max_export_kw)")
    soc0 = b.reserve_soc_kwh if soc_kwh is None else float(soc_kwh)

    def run(blocks: list) -> tuple[Any, Any]:
        inputs = PlanInputs(index=act.index, load_kw=act.load_kw, pv_kw=act.pv_kw, prices=act.prices, soc_kwh=soc0,
                            manual_blocks=blocks)
        plan = solve_plan(inputs, site)
        sim = simulate(plan.slots, act.load_kw, act.pv_kw, act.prices, site, soc0)
        return plan, sim

    value = stored_energy_value_per_kwh(act.prices["import_price_per_kwh"], b)

    def cost_of(sim: Any) -> float:
        return adjusted_money(money(sim.cost), soc0, sim.soc_end_kwh, value)

    def flows_of(sim: Any) -> dict[str, list[float]]:
        return {k: [round(float(v), 3) for v in sim.flows[k].to_numpy()] for k in ("export_kw", "import_kw", "soc_kwh")}

    _, base = run([])
    base_cost = cost_of(base)
    export_price = act.prices["export_price_per_kwh"].to_numpy()
    order = np.argsort(-export_price, kind="stable")  # highest export price first; ties: earliest
    # what the site can physically push out: battery at full discharge plus PV, minus the house's own load
    target_kw = np.clip(b.max_discharge_kw + act.pv_kw - act.load_kw, 0.0, site.grid.max_export_kw)
    out: list[WhatIfStep] = []
    for k in range(1, steps + 1):
        n = min(len(order), k * slots_per_step)
        forced = np.sort(order[:n])
        blocks = [ManualBlock(start=act.index[t], end=act.index[t] + SLOT, action="export", power_kw=float(target_kw[t]))
                  for t in forced]
        plan, sim = run(blocks)
        realized_forced = float(sim.flows["export_kw"].to_numpy()[forced].sum() * SLOT_HOURS)
        cost = cost_of(sim)
        out.append(WhatIfStep(
            forced_slots=n, target_export_kwh=float(target_kw[forced].sum() * SLOT_HOURS),
            realized_export_forced_kwh=realized_forced, export_kwh=sim.cost.export_kwh, cost=cost,
            cost_change=cost - base_cost, status=plan.status, money=money(sim.cost), soc_end_kwh=sim.soc_end_kwh,
            first_forced=[act.index[t].tz_convert(site.tz).strftime("%H:%M") for t in forced], flows=flows_of(sim),
        ))
        if n >= len(order):
            break
    return WhatIfResult(day=day, currency=site.tariff.currency, relaxed=relaxed, baseline_cost=base_cost,
                        baseline_export_kwh=base.cost.export_kwh, steps=out, soc_start_kwh=soc0,
                        baseline_soc_end_kwh=base.soc_end_kwh, end_soc_value_per_kwh=value,
                        slots=[ts.isoformat() for ts in act.index.tz_convert("UTC")], baseline_flows=flows_of(base))


def whatif_export(frame: pd.DataFrame, site: SiteConfig, day: date, soc_kwh: float | None = None, relaxed: bool = False,
                  steps: int = 8, slots_per_step: int = 1) -> WhatIfResult:
    """The export what-if on one local day of recorded data (measured load/PV, recorded or tariff prices)."""
    act = actuals(frame, battery_pv_site(site), local_day_slots(day, site.tz))
    return whatif_export_on(day, act, site, soc_kwh, relaxed, steps, slots_per_step)


def live_actuals(store: Any, site: SiteConfig, day: date) -> Actuals:
    """The running stack's view of ``day``: stored prices; load and PV as measured in the slots that
    have an observation, the latest forecast (p50) in the others (a past day is all measured, today
    half and half, tomorrow all forecast). ``Actuals.missing_slots`` counts the forecast slots.
    Leading slots that are neither (a site younger than the day) are left out: the what-if then
    covers the rest of the day, which is what the planner plans too.

    Raises ValueError naming what is missing (a gap in the day, a slot without a price).
    """
    index = local_day_slots(day, site.tz)
    start, end = index[0].to_pydatetime(), (index[-1] + SLOT).to_pydatetime()
    obs = store.observations_between(site.site_id, start, end).reindex(index)
    nan = np.full(len(index), np.nan)
    load_kw = (obs["load_kwh"] / SLOT_HOURS).to_numpy(dtype=float) if "load_kwh" in obs else nan
    pv_kw = (obs["pv_kwh"] / SLOT_HOURS).to_numpy(dtype=float) if "pv_kwh" in obs else nan
    unmeasured = np.isnan(load_kw) | np.isnan(pv_kw)
    issued = "no forecast in the database"
    if unmeasured.any():
        fc = store.latest_forecast(site.site_id)
        if fc is not None:
            issued = f"the latest forecast, issued {fc.issued_at.isoformat()}"
            fc_frame = pd.DataFrame([{"slot_start": s.start, "load_kw": s.load_p50_kw, "pv_kw": s.pv_p50_kw}
                                     for s in fc.slots])
            fc_frame["slot_start"] = pd.to_datetime(fc_frame["slot_start"], utc=True)
            fc_frame = fc_frame.set_index("slot_start").reindex(index)
            load_kw = np.where(unmeasured, fc_frame["load_kw"].to_numpy(dtype=float), load_kw)
            pv_kw = np.where(unmeasured, fc_frame["pv_kw"].to_numpy(dtype=float), pv_kw)
    known = ~(np.isnan(load_kw) | np.isnan(pv_kw))
    if not known.any():
        raise ValueError(f"{day.isoformat()}: nothing measured and not covered by {issued}")
    first = int(np.argmax(known))
    if not known[first:].all():
        gap = index[first + int(np.argmin(known[first:]))].tz_convert(site.tz)
        raise ValueError(f"{day.isoformat()}: the slot at {gap:%H:%M} is neither measured nor covered by {issued}")
    index, load_kw, pv_kw, unmeasured = index[first:], load_kw[first:], pv_kw[first:], unmeasured[first:]
    prices = store.prices_between(site.site_id, index[0].to_pydatetime(), end)
    p = prices.reindex(index)[["import_price_per_kwh", "export_price_per_kwh"]].astype(float) if len(prices) else None
    if p is None or p.isna().any().any():
        raise ValueError(f"prices for {day.isoformat()} are not (all) in the database")
    p.index.name = "slot_start"
    return Actuals(index=index, load_kw=load_kw, pv_kw=pv_kw, prices=p, missing_slots=int(unmeasured.sum()))
