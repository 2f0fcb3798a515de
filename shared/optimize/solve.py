"""Solve a plan: build the model from components, solve with HiGHS through PuLP, explain it.

``solve_plan(inputs, site)`` never returns a broken plan: an infeasible or failed solve is
retried with soft limits relaxed (manual blocks and water-heater gaps dropped), and failing
that :func:`~shared.optimize.fallback.fallback_plan` gives a safe self-consumption plan flagged
``fallback``.

The parts: :mod:`~shared.optimize.result` (the plan, no solver imports),
:mod:`~shared.optimize.highs` (the HiGHS adapter), :mod:`~shared.optimize.incumbent` (the
heuristic first plan, from the components' hooks), :mod:`~shared.optimize.cuts` (solver-only cuts).
"""

from __future__ import annotations

import time

import highspy
import numpy as np
import pandas as pd

from shared.config import SiteConfig
from shared.optimize.components import PV, Battery, CapacityTariff, Component, Grid, ManualBlocks, Stability
from shared.optimize.ev import EV
from shared.optimize.explain import (
    binding_limits,
    mode_changes_per_day,
    plan_reason,
    slot_modes,
    slot_reason_codes,
)
from shared.optimize.fallback import fallback_plan
from shared.optimize.highs import (
    build_highs,
    fix_binaries_and_resolve,
    has_solution,
    mip_gap_of,
    quiet_primal_heuristics,
    run_lp,
    solver_gap,
    warm_start,
)
from shared.optimize.incumbent import heuristic_incumbent
from shared.optimize.inputs import PlanInputs, Strategy, WaterState, apply_strategy
from shared.optimize.model import Model
from shared.optimize.result import SLOT_COLUMNS, PlanResult, SolverStats, cost_of, plan_status
from shared.optimize.water_heater import WaterHeater


def components_for(site: SiteConfig, inputs: PlanInputs, ev_hourly: bool = False) -> list[Component]:
    comps: list[Component] = [Grid(), PV()]
    if site.battery is not None:
        comps.append(Battery())
        comps.append(Stability())
    for i, heater in enumerate(site.water_heaters):
        comps.append(WaterHeater(heater, i, inputs.water.get(heater.name, WaterState())))
    for i, ev in enumerate(site.evs):
        comps.append(EV(ev, i, hourly=ev_hourly))
    comps.append(ManualBlocks())
    if site.tariff.capacity.enabled:
        comps.append(CapacityTariff())
    return comps


def build_model(inputs: PlanInputs, site: SiteConfig, strategy: Strategy, relaxed: bool = False,
                ev_hourly: bool = False) -> tuple[Model, list[Component]]:
    """Assemble the model: the builder only loops over components."""
    m = Model(site=site, inputs=inputs, strategy=strategy, relaxed=relaxed)
    comps = components_for(site, inputs, ev_hourly)
    for comp in comps:
        comp.build(m)
    m.finish()
    return m, comps


def _ev_hourly_then_fix(h: highspy.Highs, m: Model, comps: list[Component], site: SiteConfig) -> float | None:
    """Stage 2 of the staged solve; returns the proven gap of the plan left in ``h`` (None: no plan).

    Stage 1 (already run) solved the model with the EV's minimum power relaxed to "each clock
    hour charges 0 or at least one slot's worth at minimum power" (one binary per hour instead
    of per slot): a relaxation of the full model, so its dual bound L is a lower bound. Here,
    each hour's energy is put into as many slots as can each take the minimum power, those slots
    get [min, max] and the others 0, every binary is fixed, and the LP gives a plan feasible for
    the full model with cost U. Proven gap: (U - L) / |U|.
    """
    if not has_solution(h):
        return None
    info = h.getInfo()
    lower = float(info.mip_dual_bound)
    x = np.asarray(h.getSolution().col_value)
    idx = np.array([v.index for v in m.binaries], dtype=np.int32)
    vals = np.round(x[idx])
    h.changeColsIntegrality(len(idx), idx, np.array([highspy.HighsVarType.kContinuous] * len(idx)))
    h.changeColsBounds(len(idx), idx, vals, vals)
    cols: list[int] = []
    lows: list[float] = []
    ups: list[float] = []
    for c in comps:  # the EVs' hook: each hour's energy over slots that can take the minimum power
        c_cols, c_lows, c_ups = c.staged_bounds(m, x)
        cols += c_cols
        lows += c_lows
        ups += c_ups
    if cols:
        h.changeColsBounds(len(cols), np.array(cols, dtype=np.int32), np.array(lows), np.array(ups))
    run_lp(h)
    if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
        return None
    upper = float(h.getInfo().objective_function_value)
    return max(0.0, (upper - lower) / max(abs(upper), 1e-9))


def solve_plan(inputs: PlanInputs, site: SiteConfig, time_limit_s: float | None = None) -> PlanResult:
    """The cheapest safe plan for ``inputs`` (see module doc for relax and fallback)."""
    inputs.validate()
    adjusted, strategy = apply_strategy(inputs, site)
    messages: list[str] = []
    total_build = total_solve = 0.0
    # EV minimum power (semi-continuous, a binary per plugged slot) slowed the MILP most; a staged
    # solve proves the same gap faster when it can (see _ev_hourly_then_fix), else the full MILP.
    staged = any((not ev.modulating) or ev.min_charge_kw > 0 for ev in site.evs)
    limit_s = float(time_limit_s or site.planner.time_limit_s)
    for attempt, relaxed in enumerate((False, True), start=1):
        warm: dict[str, float] | None = None
        started = time.perf_counter()
        for ev_hourly in ((True, False) if staged else (False,)):
            remaining_s = max(1.0, limit_s - (time.perf_counter() - started))
            t0 = time.perf_counter()
            m, comps = build_model(adjusted, site, strategy, relaxed=relaxed, ev_hourly=ev_hourly)
            t_model = time.perf_counter() - t0
            h, t_build = build_highs(m, site, time_limit_s=remaining_s)
            t1 = time.perf_counter()
            if warm is not None:
                warm_start(h, m, warm)
                quiet_primal_heuristics(h)  # the 2 full-MILP reference days: 1.8 -> 1.1 s, 6.4 -> 2.3 s
            else:
                if heuristic_incumbent(h, m, comps) is not None:
                    quiet_primal_heuristics(h)
                # the heuristic's time counts against the limit too
                left_s = max(0.5, limit_s - (time.perf_counter() - started))
                h.setOptionValue("time_limit", h.getRunTime() + left_s)
            h.run()
            gap = _ev_hourly_then_fix(h, m, comps, site) if ev_hourly else mip_gap_of(h, m)
            total_build += t_model + t_build
            total_solve += time.perf_counter() - t1
            out_of_time = time.perf_counter() - started > 0.9 * limit_s
            if gap is not None and has_solution(h) and (gap <= solver_gap(site) or not ev_hourly or out_of_time):
                status = h.getModelStatus()
                return _result(m, comps, h, adjusted, site, strategy, relaxed, attempt, total_build, total_solve,
                               h.modelStatusToString(status), messages, gap)
            if ev_hourly and gap is not None:
                warm = {v.name: h.getSolution().col_value[v.index] for v in m.prob.variables()}
        messages.append(f"attempt {attempt} ({'relaxed' if relaxed else 'strict'}): {h.modelStatusToString(h.getModelStatus())}")
    result = fallback_plan(inputs, site)
    result.messages = messages + result.messages
    result.stats.build_s, result.stats.solve_s = total_build, total_solve
    return result


def _result(m: Model, comps: list[Component], h: highspy.Highs, inputs: PlanInputs, site: SiteConfig,
            strategy: Strategy, relaxed: bool, attempt: int, build_s: float, solve_s: float, status_text: str,
            messages: list[str], mip_gap: float) -> PlanResult:
    x = np.asarray(h.getSolution().col_value)
    objective = float(h.getInfo().objective_function_value)
    t0 = time.perf_counter()
    # The LP with the binaries fixed gives the duals, and its solution is the plan: a MILP
    # incumbent (e.g. from a heuristic) need not be LP-optimal in its continuous part, where
    # the tie-breaks that keep flows unique only act at an exact LP optimum.
    duals = fix_binaries_and_resolve(h, m, x)
    dual_s = time.perf_counter() - t0
    objective_terms_mip = m.cost_values(x)
    if duals is not None:
        x = duals[0]
    objective_terms = m.cost_values(x)
    # the plan's objective without the smoothing tie-break; a smoothed plan may cost a hair
    # more than the MILP incumbent, and the proven gap grows by exactly that
    new_objective = float(sum(objective_terms.values()))
    if new_objective > objective:
        mip_gap += (new_objective - objective) / max(abs(new_objective), 1e-9)
    objective = new_objective
    _ = objective_terms_mip
    for comp in comps:
        comp.extract(m, x)

    frame = pd.DataFrame(index=m.index)
    for col in SLOT_COLUMNS:
        frame[col] = np.asarray(m.columns.get(col, np.zeros(m.T)), dtype=float) * np.ones(m.T)
    for key, values in m.columns.items():
        if key not in frame.columns:
            frame[key] = values
    if site.battery is None:
        frame["soc_kwh"] = 0.0
    # clean solver round-off (1e-9 kW) so flows read as they are
    num = frame.select_dtypes("number").columns
    frame[num] = frame[num].where(frame[num].abs() > 1e-7, 0.0)
    frame.index.name = "slot_start"

    if duals is not None:
        x_fixed, col_dual, row_dual = duals
        # d(objective)/d(load kWh in the slot): what one more kWh used there costs
        frame["bus_value_per_kwh"] = [row_dual[r.index] / m.dt for r in m.bus_rows]
        frame["soc_value_per_kwh"] = 0.0  # no battery
        for comp in comps:
            for col, values in comp.slot_duals(m, row_dual).items():
                frame[col] = values
        binding = binding_limits(m, x_fixed, col_dual, row_dual)
    else:
        frame["bus_value_per_kwh"] = np.nan
        frame["soc_value_per_kwh"] = np.nan
        binding = []
        messages.append("fixed-binary LP for the duals did not solve; marginal values omitted")
    frame["mode"] = slot_modes(frame)
    frame["reason_code"] = slot_reason_codes(frame, m)

    cost = cost_of(frame, inputs, site, strategy, comps, x)
    stats = SolverStats(
        build_s=build_s, solve_s=solve_s, dual_s=dual_s, mip_gap=mip_gap, objective=objective,
        variables=h.getNumCol(), constraints=h.getNumRow(), binaries=len(m.binaries), status=status_text,
        attempts=attempt,
    )
    result = PlanResult(
        status=plan_status(status_text, mip_gap, site, relaxed),
        slots=frame,
        cost=cost,
        objective_terms=objective_terms,
        stats=stats,
        reason="",
        strategy=strategy,
        binding=binding,
        mode_changes_per_day=mode_changes_per_day(frame, site),
        terminal_value_per_kwh=m.terminal_value_per_kwh,
        messages=messages,
    )
    if relaxed:
        messages.append("strict model infeasible: solved with manual blocks and water-heater gaps relaxed")
    result.reason = plan_reason(result, site, inputs)
    return result
