"""The simulator: what really happens when a plan meets the measured load and PV.

One source of truth for the oracle, the backtest, the Gym environment and the what-if tools.
Battery physics come from :mod:`shared.battery`, money from :func:`shared.cost.plan_cost`;
nothing here re-implements either. Pure functions over numpy / pandas, no I/O.

Execution rule (per 15-min slot), ``rule="absorb"`` (the default, what a grid-setpoint
inverter does):

1. Water heaters and EVs run as planned (``water_kw``, ``ev_kw``, ``water{i}_kw``).
2. PV curtailment is at most what the plan curtailed, and never more than the PV there is.
3. The battery is asked for the planned setpoint (``charge_kw - discharge_kw``) PLUS the
   forecast error of the net load: ``(pv_actual - pv_forecast) - (load_actual - load_forecast)``
   (both after curtailment). So with no error it does exactly what the plan says, and any
   error is first absorbed by the battery, which keeps the grid exchange at the planned value.
4. :func:`shared.battery.step` clamps that request to the power and SoC limits.
5. The grid takes the rest: import if the house needs more, export (up to the export limit,
   0 when export is disabled) if it has a surplus; what cannot be exported is curtailed.

``rule="setpoint"``: the battery follows the planned setpoint only (clamped) and the grid
takes the whole forecast error, except where the import guard is on
(:mod:`shared.execution`, ``executor.import_guard``; by default when a capacity tariff is
configured) and the caller passes the plan's ``planned_import_kw``: then the grid import is
capped at the plan's import + ``executor.import_guard_margin_kw`` by lowering the battery power
(grid charging first, then discharge down to the reserve, within the power limits), as the
live executor does each tick.

``rule="self_consumption"``: what an inverter in self-consumption mode does, whatever the
setpoint: the battery takes the measured PV surplus and covers the measured deficit
(``pv - curtailment - load - water - ev``), never below the reserve (the executor's SoC floor),
clamped by :func:`shared.battery.step`; it never charges from the grid nor discharges to export.

``rule="executor"``: per slot what the live executor (``services/executor/control.py``) does
with the plan's ``reason_code`` (:func:`executor_rules`): slots it sends as a fixed battery
command (grid charging, discharging to export, holding energy for later, manual blocks, idle
while importing) follow the setpoint and the grid takes the error; the slots it runs in
self-consumption mode (storing PV surplus, covering the load, the rest) run ``self_consumption``.
The difference matters when export pays nothing: under ``absorb`` a battery idle at night while
importing charges from the grid whenever the load is below its forecast, and a slot that covers
the load only in part (importing the rest) charges from the grid when the load falls below its
forecast, filling room that tomorrow's free PV would have filled; the executor does neither.
With a perfect forecast ``executor`` equals the plan wherever the plan's self-consumption slots
store the whole surplus / cover the whole deficit (what the planner's flows do in those slots
unless two slots tie on price; a partial cover is then run in full and the next plan adapts).

Slots whose measured load or PV is missing (NaN) must be filled by the caller; the simulator
refuses NaN rather than guess.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from shared.battery import power_limits_kw, step
from shared.config import SiteConfig
from shared.cost import CapacityState, CostBreakdown, plan_cost
from shared.execution import guard_battery_kw, import_guard_enabled
from shared.modes import SETPOINT_REASON_CODES
from shared.slots import SLOT_HOURS

Rule = Literal["absorb", "setpoint", "self_consumption", "executor"]

IDLE_EPS_KW = 0.05  # as the executor: below this a planned flow is noise
FLOW_COLUMNS = (
    "load_kw", "pv_kw", "pv_curtail_kw", "import_kw", "export_kw", "charge_kw", "discharge_kw", "soc_kwh",
    "water_kw", "ev_kw",
)


class SimulationError(ValueError):
    """Inputs the simulator cannot replay; the message names the input and the slot."""


@dataclass(frozen=True)
class SlotOutcome:
    """What happened in one slot (all powers >= 0, mean kW over the slot; SoC at the slot end)."""

    load_kw: float
    pv_kw: float
    pv_curtail_kw: float
    import_kw: float
    export_kw: float
    charge_kw: float
    discharge_kw: float
    soc_kwh: float
    water_kw: float = 0.0
    ev_kw: float = 0.0

    @property
    def battery_kw(self) -> float:
        return self.charge_kw - self.discharge_kw


def execute_slot(
    site: SiteConfig,
    soc_kwh: float,
    load_kw: float,
    pv_kw: float,
    battery_kw: float,
    *,
    load_forecast_kw: float | None = None,
    pv_forecast_kw: float | None = None,
    pv_curtail_kw: float = 0.0,
    water_kw: float = 0.0,
    ev_kw: float = 0.0,
    rule: Rule = "absorb",
    slot_hours: float = SLOT_HOURS,
    planned_import_kw: float | None = None,
) -> SlotOutcome:
    """One slot of execution by the module's rule. ``battery_kw``: the setpoint (+ = charge).
    ``planned_import_kw``: the plan's import for the slot (the import guard's cap under ``setpoint``)."""
    if not (np.isfinite(load_kw) and np.isfinite(pv_kw)):
        raise SimulationError(f"measured load/PV missing (load_kw={load_kw}, pv_kw={pv_kw})")
    curtail = min(max(0.0, pv_curtail_kw), pv_kw)
    request = float(battery_kw)
    floor_kwh = None
    if rule == "absorb" and load_forecast_kw is not None and pv_forecast_kw is not None:
        planned_usable_pv = pv_forecast_kw - min(max(0.0, pv_curtail_kw), pv_forecast_kw)
        error_kw = ((pv_kw - curtail) - planned_usable_pv) - (load_kw - load_forecast_kw)
        request += error_kw
    elif rule == "self_consumption":
        request = (pv_kw - curtail) - (load_kw + water_kw + ev_kw)
        if site.battery is not None:  # the executor's SoC floor in self-consumption mode
            floor_kwh = min(soc_kwh, max(site.battery.min_soc_kwh, site.battery.reserve_soc_kwh))
    elif rule not in ("absorb", "setpoint"):
        raise SimulationError(f"unknown execution rule {rule!r} (absorb, setpoint or self_consumption per slot)")
    b = site.battery
    if (rule == "setpoint" and planned_import_kw is not None and b is not None
            and np.isfinite(planned_import_kw) and import_guard_enabled(site)):
        # the executor's import guard: the extra discharge stops at the reserve (as its SoC guard)
        floor_kwh = min(soc_kwh, max(b.min_soc_kwh, b.reserve_soc_kwh))
        max_discharge = power_limits_kw(soc_kwh, slot_hours, b, floor_kwh=floor_kwh)[1]
        house_net_kw = load_kw + water_kw + ev_kw - (pv_kw - curtail)
        guarded = guard_battery_kw(request, planned_import_kw, house_net_kw,
                                   margin_kw=site.executor.import_guard_margin_kw,
                                   max_discharge_kw=max_discharge)
        if guarded >= request or request < 0:
            floor_kwh = None  # not guarded, or a planned discharge: its own limits as before
        request = guarded
    if b is None:
        charge = discharge = 0.0
        soc_end = 0.0
    else:
        s = step(soc_kwh, request, slot_hours, b, floor_kwh=floor_kwh)
        charge, discharge, soc_end = s.charge_kw, s.discharge_kw, s.soc_end_kwh
    net_kw = load_kw + water_kw + ev_kw + charge - discharge - (pv_kw - curtail)
    import_kw = max(0.0, net_kw)
    surplus_kw = max(0.0, -net_kw)
    export_cap = site.grid.max_export_kw if site.tariff.export_enabled else 0.0
    export_kw = min(surplus_kw, export_cap)
    curtail += surplus_kw - export_kw  # what the grid cannot take is not produced
    return SlotOutcome(load_kw=load_kw, pv_kw=pv_kw, pv_curtail_kw=curtail, import_kw=import_kw, export_kw=export_kw,
                       charge_kw=charge, discharge_kw=discharge, soc_kwh=soc_end, water_kw=water_kw, ev_kw=ev_kw)


@dataclass
class SimResult:
    """Replayed flows (``FLOW_COLUMNS`` + ``water{i}_kw``, SoC at each slot end), the end SoC and the money."""

    flows: pd.DataFrame
    soc_end_kwh: float
    cost: CostBreakdown

    @property
    def realized_cost(self) -> float:
        """Money plus battery wear: import - export + capacity + wear (no planner penalties)."""
        return money(self.cost)


def money(cost: CostBreakdown) -> float:
    """The figure every strategy is compared on: import - export revenue + capacity charge + wear."""
    return cost.energy_cost + cost.wear_cost


def _column(frame: pd.DataFrame, name: str, n: int) -> np.ndarray:
    return frame[name].to_numpy(dtype=float) if name in frame.columns else np.zeros(n)


def executor_rules(plan: pd.DataFrame) -> list[Rule]:
    """Per plan slot, how the live executor runs it: ``setpoint`` (a fixed battery command) or
    ``self_consumption``, from the slot's ``reason_code`` (without one, from its flows: idle while
    importing is a hold), as ``services/executor/control.py::intent_from_slot`` does."""
    n = len(plan)
    setpoint = _column(plan, "charge_kw", n) - _column(plan, "discharge_kw", n)
    codes = plan["reason_code"].to_numpy() if "reason_code" in plan.columns else np.full(n, "", dtype=object)
    imp = _column(plan, "import_kw", n)
    idle = (np.abs(setpoint) <= IDLE_EPS_KW) & (imp > IDLE_EPS_KW)
    return ["setpoint" if (codes[t] in SETPOINT_REASON_CODES or (codes[t] == "idle" and idle[t])
                           or (not codes[t] and idle[t])) else "self_consumption" for t in range(n)]


def replay(
    plan: pd.DataFrame,
    load_kw: np.ndarray | pd.Series,
    pv_kw: np.ndarray | pd.Series,
    site: SiteConfig,
    soc_kwh: float,
    *,
    rule: Rule = "absorb",
) -> pd.DataFrame:
    """Execute ``plan`` (a :class:`~shared.optimize.PlanResult` slots frame, or any frame with
    ``charge_kw``/``discharge_kw`` and the forecast ``load_kw``/``pv_kw`` it was made with) against the
    measured ``load_kw``/``pv_kw`` from ``soc_kwh``. Returns the flows frame on the plan's index."""
    n = len(plan)
    load = np.asarray(load_kw, dtype=float)
    pv = np.asarray(pv_kw, dtype=float)
    if len(load) != n or len(pv) != n:
        raise SimulationError(f"measured load/PV: {len(load)}/{len(pv)} values for {n} plan slots")
    bad = ~(np.isfinite(load) & np.isfinite(pv))
    if bad.any():
        raise SimulationError(f"measured load/PV missing for {int(bad.sum())} slot(s), first at "
                              f"{plan.index[int(np.argmax(bad))].isoformat()}")
    setpoint = _column(plan, "charge_kw", n) - _column(plan, "discharge_kw", n)
    planned_import = (plan["import_kw"].to_numpy(dtype=float) if "import_kw" in plan.columns
                      else np.full(n, np.nan))  # the import guard's cap; none: no guard
    load_fc = plan["load_kw"].to_numpy(dtype=float) if "load_kw" in plan.columns else load
    pv_fc = plan["pv_kw"].to_numpy(dtype=float) if "pv_kw" in plan.columns else pv
    curtail = _column(plan, "pv_curtail_kw", n)
    water = _column(plan, "water_kw", n)
    ev = _column(plan, "ev_kw", n)
    out = np.zeros((n, len(FLOW_COLUMNS)))
    soc = float(soc_kwh)
    rules = executor_rules(plan) if rule == "executor" else [rule] * n
    for t in range(n):
        o = execute_slot(site, soc, load[t], pv[t], setpoint[t], load_forecast_kw=load_fc[t], pv_forecast_kw=pv_fc[t],
                         pv_curtail_kw=curtail[t], water_kw=water[t], ev_kw=ev[t], rule=rules[t],
                         planned_import_kw=planned_import[t])
        soc = o.soc_kwh
        out[t] = (o.load_kw, o.pv_kw, o.pv_curtail_kw, o.import_kw, o.export_kw, o.charge_kw, o.discharge_kw,
                  o.soc_kwh, o.water_kw, o.ev_kw)
    flows = pd.DataFrame(out, index=plan.index, columns=list(FLOW_COLUMNS))
    for col in plan.columns:
        if col.startswith("water") and col.endswith("_kw") and col != "water_kw":
            flows[col] = plan[col].to_numpy(dtype=float)
    flows.index.name = "slot_start"
    return flows


def simulate(
    plan: pd.DataFrame,
    load_kw: np.ndarray | pd.Series,
    pv_kw: np.ndarray | pd.Series,
    prices: pd.DataFrame,
    site: SiteConfig,
    soc_kwh: float,
    *,
    rule: Rule = "absorb",
    capacity_state: CapacityState | None = None,
    reserve_kwh: float | None = None,
    water_on_before: dict[str, bool] | None = None,
) -> SimResult:
    """Replay ``plan`` against measured load/PV and price the result with :func:`shared.cost.plan_cost`.

    Pass the plan's ``capacity_state``, ``reserve_kwh`` (``PlanResult.strategy.reserve_kwh``) and
    water-heater state to price it exactly as the planner did (then a perfect forecast agrees to
    the cent with ``PlanResult.cost``; shortfall penalties are the planner's and are not repeated).
    """
    flows = replay(plan, load_kw, pv_kw, site, soc_kwh, rule=rule)
    cost = plan_cost(flows, prices.loc[flows.index] if not prices.index.equals(flows.index) else prices, site,
                     capacity_state=capacity_state, reserve_kwh=reserve_kwh, water_on_before=water_on_before)
    soc_end = float(flows["soc_kwh"].iloc[-1]) if len(flows) else float(soc_kwh)
    return SimResult(flows=flows, soc_end_kwh=soc_end, cost=cost)


def no_battery_flows(load_kw: np.ndarray, pv_kw: np.ndarray, index: pd.DatetimeIndex, site: SiteConfig) -> pd.DataFrame:
    """The baseline: the same house without a battery (PV covers the load, the rest goes to the grid)."""
    load = np.asarray(load_kw, dtype=float)
    pv = np.asarray(pv_kw, dtype=float)
    net = load - pv
    export_cap = site.grid.max_export_kw if site.tariff.export_enabled else 0.0
    export = np.minimum(np.maximum(0.0, -net), export_cap)
    flows = pd.DataFrame({
        "load_kw": load, "pv_kw": pv, "pv_curtail_kw": np.maximum(0.0, -net) - export,
        "import_kw": np.maximum(0.0, net), "export_kw": export, "charge_kw": 0.0, "discharge_kw": 0.0,
        "soc_kwh": 0.0, "water_kw": 0.0, "ev_kw": 0.0,
    }, index=index)
    flows.index.name = "slot_start"
    return flows
