"""Solve a plan: build the model from components, solve with HiGHS through PuLP, explain it.

``solve_plan(inputs, site)`` never returns a broken plan: an infeasible or failed solve is
retried with soft limits relaxed (manual blocks and water-heater gaps dropped), and failing
that :func:`fallback_plan` gives a safe self-consumption plan flagged ``fallback``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import highspy
import numpy as np
import pandas as pd
import pulp

from shared.config import SiteConfig
from shared.cost import CostBreakdown, hour_groups, plan_cost, water_shortfall_price_per_kwh
from shared.optimize.components import (
    EV,
    PV,
    Battery,
    CapacityTariff,
    Component,
    Grid,
    ManualBlocks,
    Stability,
    WaterHeater,
)
from shared.optimize.explain import binding_limits, mode_changes_per_day, plan_reason, slot_modes, slot_reason_codes
from shared.optimize.heater_dp import cheapest_heater_blocks
from shared.optimize.inputs import PlanInputs, Strategy, WaterState, apply_strategy
from shared.optimize.model import Model

SLOT_COLUMNS = (
    "load_kw", "pv_kw", "pv_curtail_kw", "import_kw", "export_kw", "charge_kw", "discharge_kw", "soc_kwh",
    "water_kw", "ev_kw",
)


@dataclass
class SolverStats:
    build_s: float = 0.0
    solve_s: float = 0.0
    dual_s: float = 0.0
    mip_gap: float = 0.0
    objective: float = 0.0
    variables: int = 0
    constraints: int = 0
    binaries: int = 0
    status: str = ""
    attempts: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class PlanResult:
    """A plan: per-slot flows and setpoints, its cost from :func:`shared.cost.plan_cost`, how it was solved."""

    status: str  # "optimal" (proven within planner.mip_gap), "feasible" (stopped early: see stats.mip_gap),
    # "relaxed" (soft limits dropped) or "fallback"
    slots: pd.DataFrame
    cost: CostBreakdown
    objective_terms: dict[str, float]
    stats: SolverStats
    reason: str
    strategy: Strategy
    fallback: bool = False
    binding: list[dict[str, Any]] = field(default_factory=list)
    mode_changes_per_day: dict[str, int] = field(default_factory=dict)
    terminal_value_per_kwh: float = 0.0
    messages: list[str] = field(default_factory=list)

    @property
    def objective(self) -> float:
        return self.stats.objective


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


_BANNER_SILENCED = False


def _silence_banner() -> None:
    """HiGHS prints a banner on stdout when the first instance is created; ``--json`` output must
    stay one clean document, so create that first instance with stdout pointed at /dev/null."""
    global _BANNER_SILENCED
    if _BANNER_SILENCED:
        return
    import os
    import sys

    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 1)
            highspy.Highs()
    finally:
        os.dup2(saved, 1)
        os.close(saved)
    _BANNER_SILENCED = True


# The final smoothed LP may pick a plan a hair dearer than the MILP's (the reported gap grows by
# exactly that, see _result); solving to 98 % of the configured gap leaves room for it, so the
# reported gap stays within ``planner.mip_gap`` (it reached 0.10006 % on one reference day).
SOLVER_GAP_SHARE = 0.98


def _solver_gap(site: SiteConfig) -> float:
    return site.planner.mip_gap * SOLVER_GAP_SHARE


def _configure(h: highspy.Highs, site: SiteConfig, time_limit_s: float | None) -> None:
    h.setOptionValue("output_flag", False)
    h.setOptionValue("mip_rel_gap", _solver_gap(site))
    h.setOptionValue("time_limit", float(time_limit_s or site.planner.time_limit_s))
    h.setOptionValue("threads", 1)  # 2 cores shared by every service: one is plenty


def build_highs(m: Model, site: SiteConfig, mip: bool = True, time_limit_s: float | None = None) -> tuple[highspy.Highs, float]:
    """Hand the PuLP model to HiGHS in-process (PuLP's own HiGHS adapter); (highs, build_s)."""
    _silence_banner()
    solver = pulp.HiGHS(msg=False, mip=mip)
    t0 = time.perf_counter()
    solver.createAndConfigureSolver(m.prob)
    h: highspy.Highs = m.prob.solverModel
    _configure(h, site, time_limit_s)
    solver.buildSolverModel(m.prob)
    return h, time.perf_counter() - t0


def run_highs(m: Model, site: SiteConfig, mip: bool = True, time_limit_s: float | None = None) -> tuple[highspy.Highs, float, float]:
    """Build and run as one MILP (or its LP relaxation with ``mip=False``); (highs, build_s, solve_s)."""
    h, build_s = build_highs(m, site, mip, time_limit_s)
    t1 = time.perf_counter()
    h.run()
    return h, build_s, time.perf_counter() - t1


def _has_solution(h: highspy.Highs) -> bool:
    status = h.getModelStatus()
    return status == highspy.HighsModelStatus.kOptimal or (
        status in (highspy.HighsModelStatus.kTimeLimit, highspy.HighsModelStatus.kInterrupt)
        and h.getInfo().primal_solution_status == 2  # kSolutionStatusFeasible
    )


def _warm_start(h: highspy.Highs, m: Model, values: dict[str, float]) -> None:
    """Start the full MILP from the stage-2 plan (same names; per-slot EV on = charging)."""
    col = np.zeros(h.getNumCol())
    for v in m.prob.variables():
        if v.name in values:
            col[v.index] = values[v.name]
    for v in m.prob.variables():
        name = v.name
        if "_on_t" in name and name.startswith("ev"):
            power = values.get(name.replace("_on_t", "_charge_kw_t"), 0.0)
            col[v.index] = 1.0 if power > 1e-6 else 0.0
    sol = highspy.HighsSolution()
    sol.col_value = list(col)
    sol.value_valid = True
    h.setSolution(sol)


LP_TIME_S = 5.0
HEURISTIC = True
HEURISTIC_RULE = "dual"
HEURISTIC_EV_THRESHOLDS = (1e-3, 0.1)  # EV hour on above this LP value; each one tried
HEURISTIC_MAX_LPS = 12  # LP solves the local search may spend (~5-10 ms each)
HEURISTIC_DP_ITERS = 8  # heater patterns from the DP (heater_dp) priced by running-mean bus duals, one LP each


def _run_lp(h: highspy.Highs) -> None:
    """Re-run a (fixed-binary) LP on a model that already ran: HiGHS counts time over all runs,
    so give it its own allowance instead of what the MILP left over."""
    h.setOptionValue("time_limit", h.getRunTime() + LP_TIME_S)
    h.run()


def _mip_gap(h: highspy.Highs, m: Model) -> float:
    info = h.getInfo()
    return float(info.mip_gap) if m.binaries and np.isfinite(info.mip_gap) else 0.0


def _ev_hourly_then_fix(h: highspy.Highs, m: Model, comps: list[Component], site: SiteConfig) -> float | None:
    """Stage 2 of the staged solve; returns the proven gap of the plan left in ``h`` (None: no plan).

    Stage 1 (already run) solved the model with the EV's minimum power relaxed to "each clock
    hour charges 0 or at least one slot's worth at minimum power" (one binary per hour instead
    of per slot): a relaxation of the full model, so its dual bound L is a lower bound. Here,
    each hour's energy is put into as many slots as can each take the minimum power, those slots
    get [min, max] and the others 0, every binary is fixed, and the LP gives a plan feasible for
    the full model with cost U. Proven gap: (U - L) / |U|.
    """
    if not _has_solution(h):
        return None
    info = h.getInfo()
    lower = float(info.mip_dual_bound)
    x = np.asarray(h.getSolution().col_value)
    idx = np.array([v.index for v in m.binaries], dtype=np.int32)
    vals = np.round(x[idx])
    h.changeColsIntegrality(len(idx), idx, np.array([highspy.HighsVarType.kContinuous] * len(idx)))
    h.changeColsBounds(len(idx), idx, vals, vals)
    hours = hour_groups(m.index)
    cols, lows, ups = [], [], []
    for c in comps:
        if not isinstance(c, EV) or not getattr(c, "on_hours", None):
            continue
        for hr in c.on_hours:
            # the hour's energy over as many slots as can each take the minimum power
            slots = np.flatnonzero(c.plugged & (hours == hr))
            power = np.array([x[c.power.vars[t].index] for t in slots])
            energy = float(power.sum()) * m.dt
            k = min(len(slots), int(np.floor(energy / (c.low_kw * m.dt) + 1e-6)))
            on = set(slots[np.argsort(-power, kind="stable")[:k]].tolist())
            cols.append(c.on_hours[hr].index)
            lows.append(1.0 if k else 0.0)
            ups.append(1.0 if k else 0.0)
            for t in slots:
                cols.append(c.power.vars[t].index)
                lows.append(c.low_kw if int(t) in on else 0.0)
                ups.append(c.ev.max_charge_kw if int(t) in on else 0.0)
    if cols:
        h.changeColsBounds(len(cols), np.array(cols, dtype=np.int32), np.array(lows), np.array(ups))
    _run_lp(h)
    if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
        return None
    upper = float(h.getInfo().objective_function_value)
    return max(0.0, (upper - lower) / max(abs(upper), 1e-9))


def _round_heaters_and_evs(m: Model, comps: list[Component], x: np.ndarray, bus_dual: np.ndarray,
                           rule: str = "dual", ev_on_above: float = 1e-3) -> dict[int, float]:
    """Round the LP relaxation's heater blocks and EV hours to a feasible on/off pattern.

    Heater: blocks the LP ran fully stay on; each day's energy is then made up with the blocks
    where energy is cheapest at the LP optimum (``rule="dual"``: the bus duals, i.e. what one more
    kWh consumed there costs; ``"lp"``: the blocks the LP wanted most), every max-gap window
    without heating first gets its cheapest block. EV hours: on wherever the LP charged at all (the
    fixed LP then spreads the energy). Returns column -> value.
    """
    fixed: dict[int, float] = {}
    for c in comps:
        if isinstance(c, WaterHeater) and c.blocks is not None:
            nb = len(c.blocks)
            y_lp = np.array([x[v.index] for v in c.blocks])
            lb = np.array([float(v.lowBound or 0.0) for v in c.blocks])
            on = (y_lp >= 1.0 - 1e-6) | (lb >= 1.0)
            cost = np.zeros(nb)
            np.add.at(cost, c.block_of_slot, bus_dual)
            order = np.argsort(cost, kind="stable") if rule == "dual" else np.lexsort((cost, -y_lp))
            # max gap: an uncovered window gets its cheapest block, the latest one on (near) ties,
            # so it also covers as many of the following windows as it can
            for ids, need_blocks in c.gap_windows:
                if need_blocks > 0 and not on[list(ids)].any():
                    on[min(ids, key=lambda b: (round(cost[b], 3), -b))] = True
            slot_kwh = c.heater.power_kw * m.dt
            for _label, mask, need in c.requirements:
                blocks_in = c.block_of_slot[mask]
                have = float(on[blocks_in].sum()) * slot_kwh
                for b in order:
                    if have >= need - 1e-9:
                        break
                    if not on[b]:
                        k = int((blocks_in == b).sum())
                        if k:
                            on[b] = True
                            have += k * slot_kwh
            for v, val in zip(c.blocks, on):
                fixed[v.index] = 1.0 if val else 0.0
        if isinstance(c, EV) and getattr(c, "on_hours", None):
            for u in c.on_hours.values():
                fixed[u.index] = 1.0 if x[u.index] > ev_on_above else 0.0
    return fixed


def _heater_moves(comps: list[Component], fixed: dict[int, float], col_dual: np.ndarray) -> list[dict[int, float]]:
    """Candidate single-block moves of a fixed plan, most promising first: within a heating
    requirement (local day), switch one block off and another on, ranked by the reduced costs of
    the fixed block columns; only moves that keep every max-gap window covered."""
    scored: list[tuple[float, dict[int, float]]] = []
    for c in comps:
        if not (isinstance(c, WaterHeater) and c.blocks is not None):
            continue
        cols = np.array([v.index for v in c.blocks])
        on = np.array([fixed[i] > 0.5 for i in cols])
        forced = np.array([float(v.lowBound or 0.0) >= 1.0 for v in c.blocks])
        rc = col_dual[cols]
        cover = np.zeros((len(c.gap_windows), len(c.blocks)), dtype=bool)  # window x block
        for k, (w, need) in enumerate(c.gap_windows):
            cover[k, list(w)] = need > 0
        count = cover.astype(int) @ on.astype(int)  # heated blocks per window
        for _label, mask, _need in c.requirements:
            ids = np.unique(c.block_of_slot[mask])
            full = ids[np.bincount(c.block_of_slot[mask])[ids] == np.bincount(c.block_of_slot)[ids]]
            ons = sorted((b for b in full if on[b] and not forced[b]), key=lambda b: -rc[b])[:4]
            offs = sorted((b for b in full if not on[b]), key=lambda b: rc[b])[:4]
            for b_off in ons:
                for b_on in offs:
                    gain = rc[b_off] - rc[b_on]
                    if gain <= 1e-6:
                        continue
                    # windows that lose b_off and do not gain b_on must keep another heated block
                    if (count[cover[:, b_off] & ~cover[:, b_on]] >= 2).all():
                        scored.append((gain, {int(cols[b_off]): 0.0, int(cols[b_on]): 1.0}))
    scored.sort(key=lambda x: -x[0])
    return [mv for _, mv in scored]


def _heuristic_incumbent(h: highspy.Highs, m: Model, comps: list[Component]) -> float | None:
    """Give HiGHS a good first plan so branching only has to prove the bound.

    LP relaxation -> round heater blocks and EV hours (see :func:`_round_heaters_and_evs`) ->
    LP (or a small MILP over any other binaries) with those fixed -> first-improvement local search
over single heater-block moves (see :func:`_heater_moves`), at most ``HEURISTIC_MAX_LPS`` LPs ->
``setSolution``. The model
    is restored afterwards; returns the incumbent's objective (None: no incumbent).
    """
    if not m.binaries:
        return None
    idx = np.array([v.index for v in m.binaries], dtype=np.int32)
    lp = h.getLp()
    lower0, upper0 = np.asarray(lp.col_lower_)[idx].copy(), np.asarray(lp.col_upper_)[idx].copy()
    cont = np.array([highspy.HighsVarType.kContinuous] * len(idx))
    integer = np.array([highspy.HighsVarType.kInteger] * len(idx))
    h.changeColsIntegrality(len(idx), idx, cont)
    try:
        _run_lp(h)
        if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
            return None
        sol = h.getSolution()
        lp_objective = h.getInfo().objective_function_value
        x = np.asarray(sol.col_value)
        bus_dual = np.asarray(sol.row_dual)[[r.index for r in m.bus_rows]]
        fixed = _round_heaters_and_evs(m, comps, x, bus_dual, HEURISTIC_RULE)
        if not fixed:
            return None
        rest = np.array([i for i in idx if i not in fixed], dtype=np.int32)
        if len(rest):  # other binaries (battery/grid direction, tiers) stay binary: a small MILP
            h.changeColsIntegrality(len(rest), rest, np.array([highspy.HighsVarType.kInteger] * len(rest)))

        def evaluate(candidate: dict[int, float]) -> tuple[float, Any] | None:
            cols = np.array(list(candidate), dtype=np.int32)
            vals = np.array(list(candidate.values()))
            h.changeColsBounds(len(cols), cols, vals, vals)
            _run_lp(h)
            if not _has_solution(h):
                return None
            return float(h.getInfo().objective_function_value), h.getSolution()

        # EV hours the LP barely uses (u ~ 0.01) would force a minimum-power slot, maybe into a
        # peak hour: also try leaving them off, and start the local search from the better plan
        first = None
        for ev_on_above in HEURISTIC_EV_THRESHOLDS:
            candidate = _round_heaters_and_evs(m, comps, x, bus_dual, HEURISTIC_RULE, ev_on_above)
            if first is not None and candidate == fixed:
                continue
            trial = evaluate(candidate)
            if trial is not None and (first is None or trial[0] < first[0] - 1e-9):
                first, fixed = trial, candidate
        if first is None:
            return None
        objective, sol = first
        inc = np.asarray(sol.col_value).copy()
        lp_bound = float(lp_objective)
        gap_target = _solver_gap(m.site)

        def proven() -> bool:  # the LP relaxation already proves the incumbent: nothing to gain
            return objective - lp_bound <= 0.5 * gap_target * max(abs(objective), 1e-9)

        # Heater patterns from the DP over the heater's own rules (max gap, daily minimum, starts),
        # priced per block by the bus duals averaged over the LPs so far (the relaxation's and each
        # fixed plan's: one plan's duals alone make the patterns oscillate). It moves whole chains
        # of blocks, which single-block moves cannot: median 0.27 -> 0.02 % above the optimum on the
        # reference benchmark.
        heaters = [c for c in comps if isinstance(c, WaterHeater) and c.blocks is not None]
        heater_cols = {v.index for c in heaters for v in c.blocks}
        bus_rows = [r.index for r in m.bus_rows]
        dual_sum, n_duals = bus_dual.copy(), 1
        shortfall_price = water_shortfall_price_per_kwh(m.import_price)
        tried: set[tuple] = set()
        # with other binaries left (battery/grid direction, tiers) each evaluation is a small MILP: fewer
        dp_iters = HEURISTIC_DP_ITERS if len(rest) == 0 else min(2, HEURISTIC_DP_ITERS)
        for _ in range(dp_iters if heaters and not proven() else 0):
            candidate = {k: v for k, v in fixed.items() if k not in heater_cols}
            for c in heaters:
                block_cost = np.zeros(len(c.blocks))
                np.add.at(block_cost, c.block_of_slot, dual_sum / n_duals * c.heater.power_kw)
                on = cheapest_heater_blocks(c, m, block_cost, shortfall_price)
                candidate.update({v.index: float(o) for v, o in zip(c.blocks, on)})
            key = tuple(sorted(candidate.items()))
            if key in tried:
                break  # the same prices again give the same pattern
            tried.add(key)
            trial = evaluate(candidate)
            if trial is None:
                continue
            if trial[1].dual_valid:  # a small MILP (other binaries left) has no duals
                dual_sum, n_duals = dual_sum + np.asarray(trial[1].row_dual)[bus_rows], n_duals + 1
            if trial[0] < objective - 1e-9:
                objective, sol = trial
                inc, fixed = np.asarray(sol.col_value).copy(), candidate
                if proven():
                    break
        lps = 1
        while len(rest) == 0 and lps < HEURISTIC_MAX_LPS and not proven():
            improved = False
            for move in _heater_moves(comps, fixed, np.asarray(sol.col_dual))[:HEURISTIC_MAX_LPS - lps]:
                candidate = dict(fixed)
                candidate.update(move)
                lps += 1
                trial = evaluate(candidate)
                if trial is not None and trial[0] < objective - 1e-9:
                    objective, sol = trial
                    inc, fixed, improved = np.asarray(sol.col_value).copy(), candidate, True
                    break
            if not improved:
                break
        if inc is None:
            return None
        # Weak root LP (heater + capacity tariff): cuts from bounds on the peaks under the
        # incumbent's cost (see _peak_heater_cuts), then a DP pattern priced by the cut LP's bus
        # duals; a better incumbent tightens the bounds, so the next pass cuts deeper.
        for _pass in range(PEAK_HEATER_CUT_PASSES if heaters and PEAK_HEATER_CUT_ROUNDS else 0):
            if objective - lp_bound <= PEAK_HEATER_CUT_ROOT_GAP * max(abs(objective), 1e-9):
                break
            h.changeColsBounds(len(idx), idx, lower0, upper0)
            h.changeColsIntegrality(len(idx), idx, cont)
            if not _peak_heater_cuts(h, m, comps, objective):
                break
            _run_lp(h)
            if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
                break
            lp_bound = max(lp_bound, float(h.getInfo().objective_function_value))
            cut_dual = np.asarray(h.getSolution().row_dual)[bus_rows]
            if len(rest):
                h.changeColsIntegrality(len(rest), rest, np.array([highspy.HighsVarType.kInteger] * len(rest)))
            candidate = {k: v for k, v in fixed.items() if k not in heater_cols}
            for c in heaters:
                block_cost = np.zeros(len(c.blocks))
                np.add.at(block_cost, c.block_of_slot, cut_dual * c.heater.power_kw)
                on = cheapest_heater_blocks(c, m, block_cost, shortfall_price)
                candidate.update({v.index: float(o) for v, o in zip(c.blocks, on)})
            trial = evaluate(candidate)
            if trial is None or trial[0] >= objective - 1e-9:
                break
            objective, sol = trial
            inc, fixed = np.asarray(sol.col_value).copy(), candidate
    finally:
        h.changeColsIntegrality(len(idx), idx, integer)
        h.changeColsBounds(len(idx), idx, lower0, upper0)
    sol = highspy.HighsSolution()
    sol.col_value = list(inc)
    sol.value_valid = True
    h.setSolution(sol)
    return objective


# Peak x heater cuts (see _peak_heater_cuts): rounds of bound tightening + cuts, and only when
# the root LP is this far below the heuristic's incumbent (the reference benchmark's median root
# gap is 0.26 %; the example site without EV had 3.5 % on hard days).
PEAK_HEATER_CUT_ROUNDS = 3  # bound-tightening rounds per pass
PEAK_HEATER_CUT_PASSES = 3  # passes of cuts + a DP pattern from the cut LP's duals (while it improves)
PEAK_HEATER_CUT_ROOT_GAP = 0.01


def _surplus_cuts(h: highspy.Highs, m: Model, heaters: list[WaterHeater]) -> int:
    """In a slot with a PV surplus s below a block heater's power P, the heater on needs P - s
    from the grid or the battery, off nothing; the LP instead runs it at s/P of a block on the
    surplus alone. The convex hull of the two cases: ``import_t + discharge_t >= (P - s_t) * y_b``
    (other consumers only add to the need). Returns rows added."""
    imp, dis = m.shared.get("grid_import_kw"), m.shared.get("battery_discharge_kw")
    if imp is None:
        return 0
    pv = m.site.pv
    limit = pv.inverter_ac_limit_kw if pv.inverter_ac_limit_kw is not None else np.inf
    surplus_kw = np.minimum(m.pv_kw, limit) - m.load_kw  # the most PV the bus can have left
    added = 0
    for c in heaters:
        power_kw = c.heater.power_kw
        for t in np.flatnonzero((surplus_kw > 1e-6) & (surplus_kw < power_kw - 1e-6)):
            cols, vals, const = [c.blocks[c.block_of_slot[t]].index], [-(power_kw - float(surplus_kw[t]))], 0.0
            for sv in (imp, dis):
                if sv is not None and sv.vars[t] is not None:
                    cols.append(sv.vars[t].index)
                    vals.append(1.0)
                elif sv is not None:
                    const += float(sv.fixed[t])
            h.addRow(-const, highspy.kHighsInf, len(cols), np.array(cols, dtype=np.int32), np.array(vals))
            added += 1
    return added


class _NoBounds(Exception):
    pass


def _peak_heater_cuts(h: highspy.Highs, m: Model, comps: list[Component], upper: float) -> int:
    """Cuts linking block heaters, battery discharge and the capacity peak; returns rows added.

    With a capacity tariff the LP runs a block heater at a fraction of its power, just enough to
    fill each hour's import up to the day's peak ("valley filling"); a whole block must instead
    come from the battery or raise the peak, and branching closes that gap slowly (the example
    site: root LP 3.5 % below the best plan, 1-7 % left after 10 s). For a demand group g (an
    hour) with peak variable P >= import energy, net load n_g (load - PV, kWh), heater energy e_b
    per block b in it and battery discharge energy D_g, the bus gives D_g + P >= n_g + sum e_b y_b.
    With bounds Plo <= P <= Phi valid for every plan no dearer than ``upper`` (the incumbent):

        D_g + P >= Plo + sum_b (e_b + n_g - Plo) y_b     (when Plo > n_g)
        D_g     >= sum_b max(0, e_b + n_g - Phi) y_b

    Both hold at y = 0 and at any single block on (and more blocks only add need); for fractional
    y they are the chord the LP lacks. Plo, Phi come from LPs minimising/maximising each peak
    with the objective capped at ``upper`` (so a plan better than the incumbent is never cut off,
    the incumbent itself is kept, and HiGHS's reported gap stays a proven one); repeated rounds
    tighten them. The rows are removed again before the final LP (they would distort the duals).
    """
    cap = next((c for c in comps if isinstance(c, CapacityTariff)), None)
    heaters = [c for c in comps if isinstance(c, WaterHeater) and c.blocks is not None]
    if cap is None or not heaters or not cap.demand_groups or any(isinstance(c, EV) for c in comps):
        return 0
    dis = m.shared.get("battery_discharge_kw")
    peaks = {v.index: v for _, v, _ in cap.demand_groups}
    n_col = h.getNumCol()
    lp = h.getLp()
    cost = np.asarray(lp.col_cost_).copy()
    all_cols = np.arange(n_col, dtype=np.int32)
    first_row = h.getNumRow()
    net_kw = m.load_kw - m.pv_kw
    added = 0
    try:
        if m.cut_rows[1] == m.cut_rows[0]:  # first pass: the surplus cuts, which need no bounds
            added += _surplus_cuts(h, m, heaters)
        nz = np.flatnonzero(cost).astype(np.int32)
        cap_rhs = upper - float(lp.offset_) + 1e-7 * max(abs(upper), 1.0)
        h.addRow(-highspy.kHighsInf, cap_rhs, len(nz), nz, cost[nz])
        cap_row = h.getNumRow() - 1
        for _round in range(PEAK_HEATER_CUT_ROUNDS):
            bounds: dict[int, tuple[float, float]] = {}
            for col in peaks:
                lo_hi = []
                for sense in (1.0, -1.0):
                    c = np.zeros(n_col)
                    c[col] = sense
                    h.changeColsCost(n_col, all_cols, c)
                    _run_lp(h)
                    if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
                        raise _NoBounds
                    lo_hi.append(sense * float(h.getInfo().objective_function_value))
                bounds[col] = (lo_hi[0] - 1e-6, lo_hi[1] + 1e-6)
            rows_before = added
            for slots, peak, scale in cap.demand_groups:
                p_lo, p_hi = bounds[peak.index]
                n_g = float(net_kw[slots].sum()) * scale
                d_terms = [(dis.vars[t].index, scale) for t in slots if dis is not None and dis.vars[t] is not None]
                d_const = sum(float(dis.fixed[t]) * scale for t in slots if dis is not None and dis.vars[t] is None)
                for c in heaters:
                    blocks, counts = np.unique(c.block_of_slot[slots], return_counts=True)
                    e_b = c.heater.power_kw * scale * counts
                    y_cols = [c.blocks[b].index for b in blocks]
                    if p_lo > n_g + 1e-6:
                        cols = [i for i, _ in d_terms] + [peak.index] + y_cols
                        vals = [v for _, v in d_terms] + [1.0] + list(-(e_b + n_g - p_lo))
                        h.addRow(p_lo - d_const, highspy.kHighsInf, len(cols), np.array(cols, dtype=np.int32),
                                 np.array(vals))
                        added += 1
                    need = np.maximum(0.0, e_b + n_g - p_hi)
                    if (need > 1e-6).any():
                        cols = [i for i, _ in d_terms] + y_cols
                        vals = [v for _, v in d_terms] + list(-need)
                        h.addRow(-d_const, highspy.kHighsInf, len(cols), np.array(cols, dtype=np.int32),
                                 np.array(vals))
                        added += 1
            if added == rows_before:
                break
        h.deleteRows(1, np.array([cap_row], dtype=np.int32))
    except _NoBounds:  # an LP did not solve: keep the model as it was
        h.deleteRows(h.getNumRow() - first_row, np.arange(first_row, h.getNumRow(), dtype=np.int32))
        return 0
    finally:
        h.changeColsCost(n_col, all_cols, cost)
    m.cut_rows = (m.cut_rows[0] if m.cut_rows[1] > m.cut_rows[0] else first_row, h.getNumRow())
    return added


# With the heuristic's incumbent HiGHS's own primal heuristics (RINS, RENS, root reduced-cost
# sub-MIPs, feasibility jump) mostly spend time: the branch-and-cut only has to prove the bound.
# Reference benchmark, same incumbents, back to back (load ~4.7): MILP median 239 -> 161 ms,
# mean 771 -> 379 ms; any one of them off alone helps less. Also for the full MILP warm-started
# from the staged solve's plan.
QUIET_PRIMAL_HEURISTICS = {
    "mip_heuristic_run_rins": False,
    "mip_heuristic_run_rens": False,
    "mip_heuristic_run_root_reduced_cost": False,
    "mip_heuristic_run_feasibility_jump": False,
}


def _quiet_primal_heuristics(h: highspy.Highs) -> None:
    for option, value in QUIET_PRIMAL_HEURISTICS.items():
        h.setOptionValue(option, value)


def _fix_binaries_and_resolve(h: highspy.Highs, m: Model, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """LP with binaries fixed at their MIP values: its duals explain the plan."""
    first, end = getattr(m, "cut_rows", (0, 0))
    if end > first:  # solver-only cuts (see _peak_heater_cuts) must not show up in the duals
        h.deleteRows(end - first, np.arange(first, end, dtype=np.int32))
        m.cut_rows = (0, 0)
    if m.binaries:
        idx = np.array([v.index for v in m.binaries], dtype=np.int32)
        vals = np.round(x[idx])
        h.changeColsIntegrality(len(idx), idx, np.array([highspy.HighsVarType.kContinuous] * len(idx)))
        h.changeColsBounds(len(idx), idx, vals, vals)
    _add_smoothing(h, m)
    _run_lp(h)
    if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
        return None
    sol = h.getSolution()
    n = m.prob.numVariables() if hasattr(m.prob, "numVariables") else len(m.prob.variables())
    return np.asarray(sol.col_value)[:n], np.asarray(sol.col_dual)[:n], np.asarray(sol.row_dual)


# With hourly prices and hourly capacity peaks, how power is spread over the quarter hours of an
# hour costs nothing, so the MILP returns spiky flows (needless inverter writes). The final LP
# adds a tiny cost per kW of change of grid import and battery power from slot to slot: it only
# picks among (nearly) equal plans. Its cost counts in the objective and the reported gap.
SMOOTHING_PER_KW = 1e-6  # below the grid tie-break (2.5e-6 per kW and slot), so it never buys simultaneous flows


def _add_smoothing(h: highspy.Highs, m: Model) -> None:
    series = [m.shared.get("grid_import_kw")]
    ch, dis = m.shared.get("battery_charge_kw"), m.shared.get("battery_discharge_kw")
    inf = highspy.kHighsInf
    first_col = h.getNumCol()
    n_new = 0
    rows: list[tuple[list[int], list[float]]] = []
    for t in range(1, m.T):
        for terms in (
            [(series[0], 1.0)] if series[0] is not None else [],
            [(ch, 1.0), (dis, -1.0)] if ch is not None else [],
        ):
            cur = [(sv.vars[t].index, c) for sv, c in terms if sv.vars[t] is not None]
            prev = [(sv.vars[t - 1].index, -c) for sv, c in terms if sv.vars[t - 1] is not None]
            if not cur and not prev:
                continue
            col = first_col + n_new
            n_new += 1
            for sign in (1.0, -1.0):  # d >= +(x_t - x_t-1) and d >= -(x_t - x_t-1)
                idx = [col] + [i for i, _ in cur + prev]
                val = [1.0] + [-sign * c for _, c in cur + prev]
                rows.append((idx, val))
    if not n_new:
        return
    h.addCols(n_new, np.full(n_new, SMOOTHING_PER_KW), np.zeros(n_new), np.full(n_new, inf), 0,
              np.array([], dtype=np.int32), np.array([], dtype=np.int32), np.array([]))
    starts, index, value = [], [], []
    for idx, val in rows:
        starts.append(len(index))
        index += idx
        value += val
    # constant parts (fixed slots) are 0 for import and battery; rows are d -/+ (x_t - x_t-1) >= 0
    h.addRows(len(rows), np.zeros(len(rows)), np.full(len(rows), inf), len(index),
              np.array(starts, dtype=np.int32), np.array(index, dtype=np.int32), np.array(value))


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
                _warm_start(h, m, warm)
                _quiet_primal_heuristics(h)  # the 2 full-MILP reference days: 1.8 -> 1.1 s, 6.4 -> 2.3 s
            elif HEURISTIC:
                if _heuristic_incumbent(h, m, comps) is not None:
                    _quiet_primal_heuristics(h)
                # the heuristic's time counts against the limit too
                left_s = max(0.5, limit_s - (time.perf_counter() - started))
                h.setOptionValue("time_limit", h.getRunTime() + left_s)
            h.run()
            gap = _ev_hourly_then_fix(h, m, comps, site) if ev_hourly else _mip_gap(h, m)
            total_build += t_model + t_build
            total_solve += time.perf_counter() - t1
            out_of_time = time.perf_counter() - started > 0.9 * limit_s
            if gap is not None and _has_solution(h) and (gap <= _solver_gap(site) or not ev_hourly or out_of_time):
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
    duals = _fix_binaries_and_resolve(h, m, x)
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
        battery = next((c for c in comps if isinstance(c, Battery)), None)
        frame["soc_value_per_kwh"] = (
            [-row_dual[r.index] for r in battery.balance_rows] if battery is not None else 0.0
        )
        binding = binding_limits(m, x_fixed, col_dual, row_dual)
    else:
        frame["bus_value_per_kwh"] = np.nan
        frame["soc_value_per_kwh"] = np.nan
        binding = []
        messages.append("fixed-binary LP for the duals did not solve; marginal values omitted")
    frame["mode"] = slot_modes(frame)
    manual = next(c for c in comps if isinstance(c, ManualBlocks))
    frame["reason_code"] = slot_reason_codes(frame, m, manual)

    cost = cost_of(frame, inputs, site, strategy, comps, x)
    stats = SolverStats(
        build_s=build_s, solve_s=solve_s, dual_s=dual_s, mip_gap=mip_gap, objective=objective,
        variables=h.getNumCol(), constraints=h.getNumRow(), binaries=len(m.binaries), status=status_text,
        attempts=attempt,
    )
    battery = next((c for c in comps if isinstance(c, Battery)), None)
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
        terminal_value_per_kwh=battery.terminal_value_per_kwh if battery else 0.0,
        messages=messages,
    )
    if relaxed:
        messages.append("strict model infeasible: solved with manual blocks and water-heater gaps relaxed")
    result.reason = plan_reason(result, site, inputs)
    return result


def plan_status(solver_status: str, mip_gap: float, site: SiteConfig, relaxed: bool = False) -> str:
    """"optimal" only when the plan is proven within ``planner.mip_gap``; a plan the time limit
    stopped (or one whose proven gap is wider) is "feasible": the best plan found, with its
    proven gap in ``stats.mip_gap``. A relaxed plan says "relaxed" either way."""
    if relaxed:
        return "relaxed"
    proven = solver_status == "Optimal" and mip_gap <= site.planner.mip_gap * (1 + 1e-6)
    return "optimal" if proven else "feasible"


def cost_of(frame: pd.DataFrame, inputs: PlanInputs, site: SiteConfig, strategy: Strategy,
            comps: list[Component] | None = None, x: np.ndarray | None = None) -> CostBreakdown:
    ev_short: dict[str, float] = {}
    water_short: dict[str, float] = {}
    for comp in comps or []:
        if isinstance(comp, EV) and x is not None:
            ev_short[comp.ev.name] = comp.shortfall_kwh(x)
        if isinstance(comp, WaterHeater) and x is not None:
            water_short[comp.heater.name] = comp.shortfall_kwh(x)
    return plan_cost(
        frame, inputs.prices, site, capacity_state=inputs.capacity_state, slot_hours=inputs.slot_hours,
        reserve_kwh=strategy.reserve_kwh, ev_shortfall_kwh=ev_short, water_shortfall_kwh=water_short,
        water_on_before={n: s.on_now for n, s in inputs.water.items()},
    )


def fallback_plan(inputs: PlanInputs, site: SiteConfig) -> PlanResult:
    """A safe self-consumption plan: no optimiser, no grid charging, nothing exported from the battery."""
    from shared.optimize.fallback import self_consumption_plan

    adjusted, strategy = apply_strategy(inputs, site)
    frame = self_consumption_plan(adjusted, site)
    cost = plan_cost(frame, inputs.prices, site, capacity_state=inputs.capacity_state, slot_hours=inputs.slot_hours,
                     reserve_kwh=strategy.reserve_kwh,
                     water_on_before={n: s.on_now for n, s in inputs.water.items()})
    frame["mode"] = slot_modes(frame)
    frame["reason_code"] = "fallback_self_consumption"
    frame["bus_value_per_kwh"] = np.nan
    frame["soc_value_per_kwh"] = np.nan
    stats = SolverStats(status="fallback", objective=cost.total)
    return PlanResult(
        status="fallback", slots=frame, cost=cost, objective_terms={}, stats=stats,
        reason="fallback: the optimiser found no plan, so the battery only stores PV surplus and covers the load",
        strategy=strategy, fallback=True, mode_changes_per_day=mode_changes_per_day(frame, site),
    )
