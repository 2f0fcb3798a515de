"""The heuristic incumbent: a good first plan for HiGHS, built from the components' own moves.

Components supply what only they know through hooks on :class:`~shared.optimize.components.Component`
(rounding their binaries, a DP pattern, local moves); this module only orchestrates LP solves.
"""

from __future__ import annotations

from typing import Any

import highspy
import numpy as np

from shared.cost import water_shortfall_price_per_kwh
from shared.optimize import cuts
from shared.optimize.components import Component
from shared.optimize.highs import has_solution, run_lp, solver_gap
from shared.optimize.model import Model

HEURISTIC_EV_THRESHOLDS = (1e-3, 0.1)  # EV hour on above this LP value; each one tried
HEURISTIC_MAX_LPS = 12  # LP solves the local search may spend (~5-10 ms each)
HEURISTIC_DP_ITERS = 8  # heater patterns from the DP (heater_dp) priced by running-mean bus duals, one LP each


def _round(m: Model, comps: list[Component], x: np.ndarray, bus_dual: np.ndarray, on_above: float) -> dict[int, float]:
    """Every component's binaries rounded from the LP relaxation: column -> value."""
    fixed: dict[int, float] = {}
    for c in comps:
        fixed.update(c.incumbent_fix(m, x, bus_dual, on_above))
    return fixed


def _moves(comps: list[Component], fixed: dict[int, float], col_dual: np.ndarray) -> list[dict[int, float]]:
    """The components' candidate moves of a fixed plan, most promising first."""
    scored = [move for c in comps for move in c.incumbent_moves(fixed, col_dual)]
    scored.sort(key=lambda x: -x[0])
    return [mv for _, mv in scored]


def heuristic_incumbent(h: highspy.Highs, m: Model, comps: list[Component]) -> float | None:
    """Give HiGHS a good first plan so branching only has to prove the bound.

    LP relaxation -> each component rounds its binaries (``Component.incumbent_fix``) -> LP (or
    a small MILP over any other binaries) with those fixed -> patterns from the components' DPs
    priced by the bus duals (``incumbent_pattern``) -> first-improvement local search over the
    components' moves (``incumbent_moves``), at most ``HEURISTIC_MAX_LPS`` LPs -> cuts and one
    more pattern (:mod:`shared.optimize.cuts`) -> ``setSolution``. The model is restored
    afterwards; returns the incumbent's objective (None: no incumbent).
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
        run_lp(h)
        if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
            return None
        sol = h.getSolution()
        lp_objective = h.getInfo().objective_function_value
        x = np.asarray(sol.col_value)
        bus_dual = np.asarray(sol.row_dual)[[r.index for r in m.bus_rows]]
        fixed = _round(m, comps, x, bus_dual, HEURISTIC_EV_THRESHOLDS[0])
        if not fixed:
            return None
        rest = np.array([i for i in idx if i not in fixed], dtype=np.int32)
        if len(rest):  # other binaries (battery/grid direction, tiers) stay binary: a small MILP
            h.changeColsIntegrality(len(rest), rest, np.array([highspy.HighsVarType.kInteger] * len(rest)))

        def evaluate(candidate: dict[int, float]) -> tuple[float, Any] | None:
            cols = np.array(list(candidate), dtype=np.int32)
            vals = np.array(list(candidate.values()))
            h.changeColsBounds(len(cols), cols, vals, vals)
            run_lp(h)
            if not has_solution(h):
                return None
            return float(h.getInfo().objective_function_value), h.getSolution()

        # EV hours the LP barely uses (u ~ 0.01) would force a minimum-power slot, maybe into a
        # peak hour: also try leaving them off, and start the local search from the better plan
        first = None
        for ev_on_above in HEURISTIC_EV_THRESHOLDS:
            candidate = _round(m, comps, x, bus_dual, ev_on_above)
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
        gap_target = solver_gap(m.site)

        def proven() -> bool:  # the LP relaxation already proves the incumbent: nothing to gain
            return objective - lp_bound <= 0.5 * gap_target * max(abs(objective), 1e-9)

        # Heater patterns from the DP over the heater's own rules (max gap, daily minimum, starts),
        # priced per block by the bus duals averaged over the LPs so far (the relaxation's and each
        # fixed plan's: one plan's duals alone make the patterns oscillate). It moves whole chains
        # of blocks, which single-block moves cannot: median 0.27 -> 0.02 % above the optimum on the
        # reference benchmark.
        heaters = [c for c in comps if c.pattern_columns()]
        heater_cols = {i for c in heaters for i in c.pattern_columns()}
        bus_rows = [r.index for r in m.bus_rows]
        dual_sum, n_duals = bus_dual.copy(), 1
        shortfall_price = water_shortfall_price_per_kwh(m.import_price)
        tried: set[tuple] = set()
        # with other binaries left (battery/grid direction, tiers) each evaluation is a small MILP: fewer
        dp_iters = HEURISTIC_DP_ITERS if len(rest) == 0 else min(2, HEURISTIC_DP_ITERS)
        for _ in range(dp_iters if heaters and not proven() else 0):
            candidate = {k: v for k, v in fixed.items() if k not in heater_cols}
            for c in heaters:
                candidate.update(c.incumbent_pattern(m, dual_sum / n_duals, shortfall_price))
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
            for move in _moves(comps, fixed, np.asarray(sol.col_dual))[:HEURISTIC_MAX_LPS - lps]:
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
        # incumbent's cost (see cuts.peak_heater_cuts), then a DP pattern priced by the cut LP's bus
        # duals; a better incumbent tightens the bounds, so the next pass cuts deeper.
        for _pass in range(cuts.PEAK_HEATER_CUT_PASSES if heaters and cuts.PEAK_HEATER_CUT_ROUNDS else 0):
            if objective - lp_bound <= cuts.PEAK_HEATER_CUT_ROOT_GAP * max(abs(objective), 1e-9):
                break
            h.changeColsBounds(len(idx), idx, lower0, upper0)
            h.changeColsIntegrality(len(idx), idx, cont)
            if not cuts.peak_heater_cuts(h, m, comps, objective):
                break
            run_lp(h)
            if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
                break
            lp_bound = max(lp_bound, float(h.getInfo().objective_function_value))
            cut_dual = np.asarray(h.getSolution().row_dual)[bus_rows]
            if len(rest):
                h.changeColsIntegrality(len(rest), rest, np.array([highspy.HighsVarType.kInteger] * len(rest)))
            candidate = {k: v for k, v in fixed.items() if k not in heater_cols}
            for c in heaters:
                candidate.update(c.incumbent_pattern(m, cut_dual, shortfall_price))
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
