"""The water-heater component of the Kepler model: on/off blocks or modulating, daily minimum,
maximum gap, start cost; and its solver hooks (rounding, DP pattern, block moves)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from shared.config import WaterHeaterConfig
from shared.cost import water_shortfall_price_per_kwh
from shared.optimize.components import Component
from shared.optimize.inputs import WaterState
from shared.optimize.model import GE, Model


@dataclass
class WaterHeater(Component):
    """A tank heater, on/off at rated power or modulating.

    On/off heaters run in blocks of ``min_run_minutes`` aligned to the clock (30 min: :00-:30 and
    :30-:00), one binary per block; a run lasts a whole number of blocks, so the minimum run
    holds by construction. Compared with an on/off binary per slot plus min-run rows (which
    needed > 20 s here), every constraint below is an interval of blocks and the LP relaxation
    is much tighter.

    - daily minimum energy per local day, minus what is done today; a partial last day is
      pro rata; a soft shortfall priced above any import;
    - at most ``max_gap_hours`` between heatings: every window of that length meets a block
      (the first window is shortened by the time since the last heating);
    - a cost per start (rising edge of the on state);
    - vacation: no daily minimum, an anti-legionella cycle when it falls due in the horizon.
    """

    heater: WaterHeaterConfig
    number: int
    state: WaterState
    name = "water_heater"

    def build(self, m: Model) -> None:
        h, i, dt = self.heater, self.number, m.dt
        p = f"water{i}"
        forced = np.zeros(m.T, dtype=bool)
        if not m.relaxed:
            for block in m.inputs.manual_blocks:
                if block.action == "heat":
                    forced |= (m.index >= block.start) & (m.index < block.end)
        self.blocks = None
        if h.modulating:
            w = m.slot_vars(f"{p}_power_kw", np.where(forced, h.power_kw, 0.0), h.power_kw)
            # power-weighted terms per slot, and "one slot at full power" as the unit of heating
            self.on_terms = [[(v, 1.0 / h.power_kw)] if v is not None else [] for v in w.vars]
            self.on_fixed = w.fixed / h.power_kw
            self.w = w
        else:
            run = max(1, int(np.ceil(h.min_run_minutes / 15)))
            self.run = run
            # blocks aligned to the clock (UTC quarter-hour count), e.g. :00-:30 and :30-:00 for 30 min
            quarter = np.asarray((m.index - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(minutes=15))
            block_id = quarter // run
            _, self.block_of_slot = np.unique(block_id, return_inverse=True)
            n_blocks = int(self.block_of_slot.max()) + 1
            y = [m.var(f"{p}_on_block_b{b:03d}", binary=True) for b in range(n_blocks)]
            self.blocks = y
            self.on_terms = [[(y[self.block_of_slot[t]], 1.0)] for t in range(m.T)]
            self.on_fixed = np.zeros(m.T)
            for t in np.flatnonzero(forced):
                y[self.block_of_slot[t]].lowBound = 1
        for t in range(m.T):
            for v, c in self.on_terms[t]:
                m.on_bus(t, v, -h.power_kw * c)
            m.bus_rhs[t] -= -h.power_kw * self.on_fixed[t]

        # daily minimum (or the anti-legionella cycle in vacation)
        self.short_vars = []
        penalty = water_shortfall_price_per_kwh(m.import_price)
        days = pd.unique(m.local_dates)
        requirements: list[tuple[str, np.ndarray, float]] = []
        horizon_end = m.index[-1] + pd.Timedelta(minutes=15)
        if m.inputs.vacation:
            due_in_h = max(0.0, (h.legionella_interval_days - self.state.days_since_legionella) * 24.0)
            due_slot = int(np.ceil(due_in_h / dt))
            if h.legionella_kwh > 0 and due_slot <= m.T:
                mask = np.zeros(m.T, dtype=bool)
                mask[: max(due_slot, min(m.T, int(np.ceil(h.legionella_kwh / h.power_kw / dt)) + 1))] = True
                requirements.append(("legionella", mask, h.legionella_kwh))
        elif h.daily_min_kwh > 0:
            for k, day in enumerate(days):
                mask = m.local_dates == day
                start_local = pd.Timestamp(datetime.combine(day, datetime.min.time()), tz=m.site.tz)
                end_local = pd.Timestamp(datetime.combine(day + timedelta(days=1), datetime.min.time()), tz=m.site.tz)
                day_hours = (end_local - start_local) / pd.Timedelta(hours=1)
                need = h.daily_min_kwh - (self.state.done_today_kwh if k == 0 else 0.0)
                if k > 0 and horizon_end < end_local:
                    need = h.daily_min_kwh * mask.sum() * dt / day_hours  # partial last day: pro rata
                if need > 1e-9:
                    requirements.append((f"day{k}", mask, need))
        self.requirements = requirements
        for label, mask, need in requirements:
            s = m.var(f"{p}_shortfall_kwh_{label}", 0.0, need)
            self.short_vars.append(s)
            coef: dict = {}
            for t in np.flatnonzero(mask):
                for v, c in self.on_terms[t]:
                    coef[v] = coef.get(v, 0.0) + c * h.power_kw * dt
            fixed = float(self.on_fixed[mask].sum() * h.power_kw * dt)
            m.row(f"{p}_min_energy_{label}", [(s, 1.0)] + list(coef.items()), GE, need - fixed)
            m.cost("water_shortfall_penalty", [(s, penalty)])

        # max gap: every window of gap slots meets some heating
        self.gap_windows: list[tuple[tuple[int, ...], float]] = []  # (block ids, blocks needed): for the rounding heuristic
        if h.max_gap_hours is not None and not m.relaxed and not m.inputs.vacation:
            gap = int(round(h.max_gap_hours / dt))
            first = max(1, gap - int(round(self.state.hours_since_heated / dt)))
            windows = [(0, first)] + [(t, t + gap) for t in range(1, m.T - gap + 1)]
            seen: set[tuple] = set()
            for a, b_ in windows:
                if b_ > m.T or forced[a:b_].any():
                    continue
                if self.blocks is not None:
                    # a block that overlaps the window
                    ids = tuple(np.unique(self.block_of_slot[a:b_]))
                    if ids in seen:
                        continue  # the same blocks as an earlier window: same row
                    seen.add(ids)
                    terms = [(self.blocks[k], 1.0) for k in ids]
                    self.gap_windows.append((ids, 1.0 - float(self.on_fixed[a:b_].sum())))
                else:
                    terms = [tv for k in range(a, b_) for tv in self.on_terms[k]]
                m.row(f"{p}_max_gap_t{a:03d}", terms, GE, 1.0 - float(self.on_fixed[a:b_].sum()))

        # start cost: a start is a rising edge of the on state
        self.starts = None
        if self.blocks is not None and h.start_cost > 0:
            self.starts = [m.var(f"{p}_start_b{b:03d}", 0.0, 1.0) for b in range(len(self.blocks))]
            for b, (st, y) in enumerate(zip(self.starts, self.blocks)):
                terms = [(st, 1.0), (y, -1.0)]
                rhs = 0.0
                if b > 0:
                    terms.append((self.blocks[b - 1], 1.0))
                elif self.state.on_now:
                    rhs = -1.0
                m.row(f"{p}_start_b{b:03d}", terms, GE, rhs)
            m.cost("water_start_cost", [(v, h.start_cost) for v in self.starts])
            self._start_cuts(m)

    def _start_cuts(self, m: Model) -> None:
        """Valid inequalities that make the LP count starts: a stretch of blocks that must hold a
        heating (a max-gap window; a day's minimum unless it is given up as shortfall) holds a start
        or continues a heating running in the block before it. Without them the LP spreads the heater
        thinly (0.1 of a block everywhere) and pays almost no start cost; the MILP then spends most of
        its time in cuts that find this. ``sum(start in S) + on(block before S) [+ shortfall/need] >= 1``."""
        p = f"water{self.number}"
        stretches: list[tuple[str, list[int], list[tuple]]] = []
        for ids, need_blocks in dict(self.gap_windows).items():
            if need_blocks >= 1.0:
                stretches.append((f"{p}_start_cut_gap_b{ids[0]:03d}_{ids[-1]:03d}", list(ids), []))
        for (label, mask, need), short in zip(self.requirements, self.short_vars):
            ids = sorted(set(int(b) for b in self.block_of_slot[mask]))
            stretches.append((f"{p}_start_cut_{label}", ids, [(short, 1.0 / need)]))
        for name, ids, extra in stretches:
            first = ids[0]
            if first == 0 and self.state.on_now:
                continue  # a running heating covers it: nothing to add
            terms = [(self.starts[b], 1.0) for b in ids] + extra
            if first > 0:
                terms.append((self.blocks[first - 1], 1.0))
            m.row(name, terms, GE, 1.0)

    def extract(self, m: Model, x: np.ndarray) -> None:
        on = np.array([sum(c * x[v.index] for v, c in terms) for terms in self.on_terms]) + self.on_fixed
        if self.blocks is not None:
            on = np.round(on)
        m.columns[f"water{self.number}_kw"] = on * self.heater.power_kw
        m.columns["water_kw"] = m.columns.get("water_kw", 0.0) + m.columns[f"water{self.number}_kw"]

    def shortfall_kwh(self, x: np.ndarray) -> float:
        return float(sum(x[s.index] for s in self.short_vars))

    # ----------------------------------------------------------------- solver hooks

    def shortfall(self, x: np.ndarray) -> tuple[str, str, float] | None:
        return "water", self.heater.name, self.shortfall_kwh(x)

    def incumbent_fix(self, m: Model, x: np.ndarray, bus_dual: np.ndarray, on_above: float) -> dict[int, float]:
        """Round the LP relaxation's blocks to a feasible on/off pattern: blocks the LP ran fully
        stay on; every max-gap window without heating gets its cheapest block; then each day's
        energy is made up with the blocks where energy is cheapest at the LP optimum (the bus
        duals: what one more kWh consumed there costs)."""
        if self.blocks is None:
            return {}
        nb = len(self.blocks)
        y_lp = np.array([x[v.index] for v in self.blocks])
        lb = np.array([float(v.lowBound or 0.0) for v in self.blocks])
        on = (y_lp >= 1.0 - 1e-6) | (lb >= 1.0)
        cost = np.zeros(nb)
        np.add.at(cost, self.block_of_slot, bus_dual)
        order = np.argsort(cost, kind="stable")
        # max gap: an uncovered window gets its cheapest block, the latest one on (near) ties,
        # so it also covers as many of the following windows as it can
        for ids, need_blocks in self.gap_windows:
            if need_blocks > 0 and not on[list(ids)].any():
                on[min(ids, key=lambda b: (round(cost[b], 3), -b))] = True
        slot_kwh = self.heater.power_kw * m.dt
        for _label, mask, need in self.requirements:
            blocks_in = self.block_of_slot[mask]
            have = float(on[blocks_in].sum()) * slot_kwh
            for b in order:
                if have >= need - 1e-9:
                    break
                if not on[b]:
                    k = int((blocks_in == b).sum())
                    if k:
                        on[b] = True
                        have += k * slot_kwh
        return {v.index: 1.0 if val else 0.0 for v, val in zip(self.blocks, on)}

    def cut_rows(self, m: Model) -> list[tuple[list[int], list[float], float]]:
        """In a slot with a PV surplus s below a block heater's power P, the heater on needs P - s
        from the grid or the battery, off nothing; the LP instead runs it at s/P of a block on the
        surplus alone. The convex hull of the two cases: ``import_t + discharge_t >= (P - s_t) * y_b``
        (other consumers only add to the need)."""
        imp, dis = m.shared.get("grid_import_kw"), m.shared.get("battery_discharge_kw")
        if imp is None or self.blocks is None:
            return []
        pv = m.site.pv
        limit = pv.inverter_ac_limit_kw if pv.inverter_ac_limit_kw is not None else np.inf
        surplus_kw = np.minimum(m.pv_kw, limit) - m.load_kw  # the most PV the bus can have left
        power_kw = self.heater.power_kw
        rows: list[tuple[list[int], list[float], float]] = []
        for t in np.flatnonzero((surplus_kw > 1e-6) & (surplus_kw < power_kw - 1e-6)):
            cols, vals, const = [self.blocks[self.block_of_slot[t]].index], [-(power_kw - float(surplus_kw[t]))], 0.0
            for sv in (imp, dis):
                if sv is not None and sv.vars[t] is not None:
                    cols.append(sv.vars[t].index)
                    vals.append(1.0)
                elif sv is not None:
                    const += float(sv.fixed[t])
            rows.append((cols, vals, -const))
        return rows

    def block_energy_kwh(self, slots: list[int], scale: float) -> tuple[list[int], np.ndarray]:
        if self.blocks is None:
            return [], np.zeros(0)
        blocks, counts = np.unique(self.block_of_slot[slots], return_counts=True)
        return [self.blocks[b].index for b in blocks], self.heater.power_kw * scale * counts

    def pattern_columns(self) -> list[int]:
        return [v.index for v in self.blocks] if self.blocks is not None else []

    def incumbent_pattern(self, m: Model, slot_value_per_kwh: np.ndarray, shortfall_price: float) -> dict[int, float]:
        """The DP's cheapest blocks (:mod:`shared.optimize.heater_dp`) under the heater's own rules."""
        from shared.optimize.heater_dp import cheapest_heater_blocks

        if self.blocks is None:
            return {}
        block_cost = np.zeros(len(self.blocks))
        np.add.at(block_cost, self.block_of_slot, slot_value_per_kwh * self.heater.power_kw)
        on = cheapest_heater_blocks(self, m, block_cost, shortfall_price)
        return {v.index: float(o) for v, o in zip(self.blocks, on)}

    def incumbent_moves(self, fixed: dict[int, float], col_dual: np.ndarray) -> list[tuple[float, dict[int, float]]]:
        """Single-block moves within a heating requirement (local day): one block off, another on,
        scored by the reduced costs of the fixed block columns; only moves that keep every
        max-gap window covered."""
        if self.blocks is None:
            return []
        scored: list[tuple[float, dict[int, float]]] = []
        cols = np.array([v.index for v in self.blocks])
        on = np.array([fixed[i] > 0.5 for i in cols])
        forced = np.array([float(v.lowBound or 0.0) >= 1.0 for v in self.blocks])
        rc = col_dual[cols]
        cover = np.zeros((len(self.gap_windows), len(self.blocks)), dtype=bool)  # window x block
        for k, (w, need) in enumerate(self.gap_windows):
            cover[k, list(w)] = need > 0
        count = cover.astype(int) @ on.astype(int)  # heated blocks per window
        for _label, mask, _need in self.requirements:
            ids = np.unique(self.block_of_slot[mask])
            full = ids[np.bincount(self.block_of_slot[mask])[ids] == np.bincount(self.block_of_slot)[ids]]
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
        return scored
