"""Solver-only cuts for the weak root LP of block heaters under a capacity tariff.

They tighten HiGHS's LP (surplus cuts: a heater on PV surplus; peak x heater cuts: a whole
block raises the peak or comes from the battery) and are removed before the final LP, so the
plan's duals are the model's own. The components supply what the cuts need through hooks
(``cut_rows``, ``peak_groups``, ``block_energy_kwh``, ``peak_block_cuts_valid``), so the cuts name
no component; they cut off no plan cheaper than the incumbent.
"""

from __future__ import annotations

import highspy
import numpy as np

from shared.optimize.components import Component
from shared.optimize.highs import run_lp
from shared.optimize.model import Model

# Peak x heater cuts (see peak_heater_cuts): rounds of bound tightening + cuts, and only when
# the root LP is this far below the heuristic's incumbent (the reference benchmark's median root
# gap is 0.26 %; the example site without EV had 3.5 % on hard days).
PEAK_HEATER_CUT_ROUNDS = 3  # bound-tightening rounds per pass
PEAK_HEATER_CUT_PASSES = 3  # passes of cuts + a DP pattern from the cut LP's duals (while it improves)
PEAK_HEATER_CUT_ROOT_GAP = 0.01


def surplus_cuts(h: highspy.Highs, m: Model, comps: list[Component]) -> int:
    """The components' own solver-only rows (``Component.cut_rows``: the heaters' PV-surplus cuts)
    added to HiGHS; returns rows added."""
    added = 0
    for c in comps:
        for cols, vals, lower in c.cut_rows(m):
            h.addRow(lower, highspy.kHighsInf, len(cols), np.array(cols, dtype=np.int32), np.array(vals))
            added += 1
    return added


class _NoBounds(Exception):
    pass


def peak_heater_cuts(h: highspy.Highs, m: Model, comps: list[Component], upper: float) -> int:
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
    groups = [g for c in comps for g in c.peak_groups()]
    heaters = [c for c in comps if c.pattern_columns()]  # the on/off-block consumers
    if not heaters or not groups or not all(c.peak_block_cuts_valid for c in comps):
        return 0
    dis = m.shared.get("battery_discharge_kw")
    peaks = dict.fromkeys(peak for _, peak, _ in groups)
    n_col = h.getNumCol()
    lp = h.getLp()
    cost = np.asarray(lp.col_cost_).copy()
    all_cols = np.arange(n_col, dtype=np.int32)
    first_row = h.getNumRow()
    net_kw = m.load_kw - m.pv_kw
    added = 0
    try:
        if m.cut_rows[1] == m.cut_rows[0]:  # first pass: the surplus cuts, which need no bounds
            added += surplus_cuts(h, m, heaters)
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
                    run_lp(h)
                    if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
                        raise _NoBounds
                    lo_hi.append(sense * float(h.getInfo().objective_function_value))
                bounds[col] = (lo_hi[0] - 1e-6, lo_hi[1] + 1e-6)
            rows_before = added
            for slots, peak, scale in groups:
                p_lo, p_hi = bounds[peak]
                n_g = float(net_kw[slots].sum()) * scale
                d_terms = [(dis.vars[t].index, scale) for t in slots if dis is not None and dis.vars[t] is not None]
                d_const = sum(float(dis.fixed[t]) * scale for t in slots if dis is not None and dis.vars[t] is None)
                for c in heaters:
                    y_cols, e_b = c.block_energy_kwh(slots, scale)
                    if p_lo > n_g + 1e-6:
                        cols = [i for i, _ in d_terms] + [peak] + y_cols
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
