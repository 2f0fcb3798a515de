"""The HiGHS adapter: hand the PuLP model to HiGHS in-process, run it, read and adjust it.

Everything that speaks highspy lives here (build, options, warm start, LP re-runs, the final
fixed-binary LP with its smoothing); the model and its components know only PuLP names and
column indices.
"""

from __future__ import annotations

import time

import highspy
import numpy as np
import pulp

from shared.config import SiteConfig
from shared.optimize.model import Model

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


def solver_gap(site: SiteConfig) -> float:
    return site.planner.mip_gap * SOLVER_GAP_SHARE


def configure(h: highspy.Highs, site: SiteConfig, time_limit_s: float | None) -> None:
    h.setOptionValue("output_flag", False)
    h.setOptionValue("mip_rel_gap", solver_gap(site))
    h.setOptionValue("time_limit", float(time_limit_s or site.planner.time_limit_s))
    h.setOptionValue("threads", 1)  # 2 cores shared by every service: one is plenty


def build_highs(m: Model, site: SiteConfig, mip: bool = True, time_limit_s: float | None = None) -> tuple[highspy.Highs, float]:
    """Hand the PuLP model to HiGHS in-process (PuLP's own HiGHS adapter); (highs, build_s)."""
    _silence_banner()
    solver = pulp.HiGHS(msg=False, mip=mip)
    t0 = time.perf_counter()
    solver.createAndConfigureSolver(m.prob)
    h: highspy.Highs = m.prob.solverModel
    configure(h, site, time_limit_s)
    solver.buildSolverModel(m.prob)
    return h, time.perf_counter() - t0


def run_highs(m: Model, site: SiteConfig, mip: bool = True, time_limit_s: float | None = None) -> tuple[highspy.Highs, float, float]:
    """Build and run as one MILP (or its LP relaxation with ``mip=False``); (highs, build_s, solve_s)."""
    h, build_s = build_highs(m, site, mip, time_limit_s)
    t1 = time.perf_counter()
    h.run()
    return h, build_s, time.perf_counter() - t1


def has_solution(h: highspy.Highs) -> bool:
    status = h.getModelStatus()
    return status == highspy.HighsModelStatus.kOptimal or (
        status in (highspy.HighsModelStatus.kTimeLimit, highspy.HighsModelStatus.kInterrupt)
        and h.getInfo().primal_solution_status == 2  # kSolutionStatusFeasible
    )


def warm_start(h: highspy.Highs, m: Model, values: dict[str, float]) -> None:
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


def run_lp(h: highspy.Highs) -> None:
    """Re-run a (fixed-binary) LP on a model that already ran: HiGHS counts time over all runs,
    so give it its own allowance instead of what the MILP left over."""
    h.setOptionValue("time_limit", h.getRunTime() + LP_TIME_S)
    h.run()


def mip_gap_of(h: highspy.Highs, m: Model) -> float:
    info = h.getInfo()
    return float(info.mip_gap) if m.binaries and np.isfinite(info.mip_gap) else 0.0


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


def quiet_primal_heuristics(h: highspy.Highs) -> None:
    for option, value in QUIET_PRIMAL_HEURISTICS.items():
        h.setOptionValue(option, value)


def fix_binaries_and_resolve(h: highspy.Highs, m: Model, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """LP with binaries fixed at their MIP values: its duals explain the plan."""
    first, end = getattr(m, "cut_rows", (0, 0))
    if end > first:  # solver-only cuts (see peak_heater_cuts) must not show up in the duals
        h.deleteRows(end - first, np.arange(first, end, dtype=np.int32))
        m.cut_rows = (0, 0)
    if m.binaries:
        idx = np.array([v.index for v in m.binaries], dtype=np.int32)
        vals = np.round(x[idx])
        h.changeColsIntegrality(len(idx), idx, np.array([highspy.HighsVarType.kContinuous] * len(idx)))
        h.changeColsBounds(len(idx), idx, vals, vals)
    add_smoothing(h, m)
    run_lp(h)
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


def add_smoothing(h: highspy.Highs, m: Model) -> None:
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
