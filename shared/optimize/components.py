"""Components of the Kepler model; each adds its own variables, constraints and cost terms.

Adding an asset (a heat pump, a second battery) is one new class with ``build(m)`` and
``extract(m, x)``; the builder only loops over components. Binaries appear only where
physics or economics need them (see each component).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pulp

from shared.config import EVConfig, WaterHeaterConfig
from shared.cost import (
    billed_capacity,
    hour_groups,
    period_key,
    stored_energy_value_per_kwh,
    water_shortfall_price_per_kwh,
)
from shared.optimize.inputs import WaterState
from shared.optimize.model import EQ, GE, LE, Model

# A tiny cost per kWh of flows that are interchangeable at equal prices: keeps the solution
# unique (no import+export or charge+discharge at a price tie). Reported apart from the bill.
TIE_BREAK_PER_KWH = 1e-5
# Grid purchases at equal prices are made as late as possible (see Grid.build); at most this
# per kWh in the first slot, falling linearly to 0 at the horizon end.
DEFER_IMPORT_PER_KWH = 1e-4
WATER_START_CUTS = True  # see WaterHeater._start_cuts


class Component:
    name = "component"

    def build(self, m: Model) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def extract(self, m: Model, x: np.ndarray) -> None:
        """Put this component's per-slot results into ``m.columns``."""


# --------------------------------------------------------------------------- grid


class Grid(Component):
    """Import and export with separate limits and prices.

    Import and export in the same slot only pay when the import price is below the export
    price (possible at negative spot prices with VAT); only those slots get a binary.
    """

    name = "grid"

    def build(self, m: Model) -> None:
        grid, tariff = m.site.grid, m.site.tariff
        max_export = grid.max_export_kw if tariff.export_enabled else 0.0
        # Tight per-slot bounds from the bus: import can at most feed the load and every flexible
        # consumer at full power; export at most the PV surplus plus full discharge. Valid for any
        # plan, and they make the LP relaxation (and the direction binaries' big-M) much tighter.
        site = m.site
        b = site.battery
        flexible_kw = (b.max_charge_kw if b else 0.0) + sum(h.power_kw for h in site.water_heaters) \
            + sum(e.max_charge_kw for e in site.evs)
        pv_floor = 0.0 if site.pv.curtailment_allowed else m.pv_kw
        imp_ub = np.clip(m.load_kw - pv_floor + flexible_kw, 0.0, grid.max_import_kw)
        exp_ub = np.clip(m.pv_kw - m.load_kw + (b.max_discharge_kw if b else 0.0), 0.0, max_export)
        self.imp = m.slot_vars("grid_import_kw", 0.0, imp_ub)
        self.exp = m.slot_vars("grid_export_kw", 0.0, exp_ub)
        m.shared["grid_import_kw"], m.shared["grid_export_kw"] = self.imp, self.exp
        m.add_slot_flow(self.imp, 1.0)
        m.add_slot_flow(self.exp, -1.0)
        dt = m.dt
        m.cost("import_cost", [(v, m.import_price[t] * dt) for t, v in enumerate(self.imp.vars) if v is not None])
        m.cost("export_revenue", [(v, -m.export_price[t] * dt) for t, v in enumerate(self.exp.vars) if v is not None])
        # Among equal-priced slots, buy from the grid as late as possible: a kWh bought later is
        # bought knowing more (the forecast of the slots before it has come true by then and the
        # plan is remade), e.g. grid charging for the evening peak waits until the day's PV is
        # known instead of filling the battery at night with energy free PV would have brought.
        # A tie-break only (<= 1e-4 per kWh): any real price difference outweighs it.
        if m.T > 1:
            defer = DEFER_IMPORT_PER_KWH * (1.0 - np.arange(m.T) / (m.T - 1))
            m.cost("defer_import", [(v, defer[t] * dt) for t, v in enumerate(self.imp.vars)
                                    if v is not None and defer[t] > 0])
        # at equal prices import+export in one slot costs nothing: break the tie there only
        tie = np.abs(m.import_price - m.export_price) < 1e-9
        m.cost("tie_break", [(v, TIE_BREAK_PER_KWH * dt) for t in np.flatnonzero(tie)
                             for v in (self.imp.vars[t], self.exp.vars[t]) if v is not None])
        self.binary_slots = []
        for t in range(m.T):
            i, e = self.imp.vars[t], self.exp.vars[t]
            if i is not None and e is not None and m.import_price[t] < m.export_price[t]:
                z = m.var(f"grid_direction_t{t:03d}", binary=True)  # 1 = exporting
                m.row(f"grid_import_only_if_not_exporting_t{t:03d}", [(i, 1.0), (z, imp_ub[t])], LE, imp_ub[t])
                m.row(f"grid_export_only_if_exporting_t{t:03d}", [(e, 1.0), (z, -exp_ub[t])], LE, 0.0)
                self.binary_slots.append(t)

    def extract(self, m: Model, x: np.ndarray) -> None:
        m.columns["import_kw"] = self.imp.value(x)
        m.columns["export_kw"] = self.exp.value(x)


# --------------------------------------------------------------------------- PV


class PV(Component):
    """Forecast PV on the bus; curtailment in [0, pv], forced above the inverter's AC limit."""

    name = "pv"

    def build(self, m: Model) -> None:
        pv = m.site.pv
        limit = pv.inverter_ac_limit_kw if pv.inverter_ac_limit_kw is not None else np.inf
        must = np.maximum(0.0, m.pv_kw - limit)
        allowed = pv.curtailment_allowed
        ub = m.pv_kw if allowed else must
        self.curt = m.slot_vars("pv_curtail_kw", must, ub, mask=m.pv_kw > 0)
        m.shared["pv_curtail_kw"] = self.curt
        m.add_slot_flow(self.curt, -1.0)

    def extract(self, m: Model, x: np.ndarray) -> None:
        m.columns["pv_kw"] = m.pv_kw
        m.columns["pv_curtail_kw"] = self.curt.value(x)
        m.columns["load_kw"] = m.load_kw


# --------------------------------------------------------------------------- battery


class Battery(Component):
    """Charge/discharge with efficiencies, power limits, hard SoC limits, soft reserve, wear, terminal value.

    Charging and discharging in the same slot only pay when a kWh at the bus is worth less than
    nothing (see the rule in ``build``); only those slots get a binary.
    """

    name = "battery"

    def build(self, m: Model) -> None:
        b = m.site.battery
        assert b is not None
        soc0 = m.inputs.soc_kwh if m.inputs.soc_kwh is not None else b.reserve_soc_kwh
        self.soc0 = soc0
        dt = m.dt
        # A measured SoC outside the hard limits is a fact: the bounds give way, not the model.
        soc_lb, soc_ub = min(b.min_soc_kwh, soc0), max(b.max_soc_kwh, soc0)
        self.ch = m.slot_vars("battery_charge_kw", 0.0, b.max_charge_kw)
        self.dis = m.slot_vars("battery_discharge_kw", 0.0, b.max_discharge_kw)
        self.soc = m.slot_vars("battery_soc_kwh", soc_lb, soc_ub)
        m.shared.update(battery_charge_kw=self.ch, battery_discharge_kw=self.dis, battery_soc_kwh=self.soc)
        m.add_slot_flow(self.ch, -1.0)
        m.add_slot_flow(self.dis, 1.0)
        self.balance_rows = []
        prev = None
        for t in range(m.T):
            terms = [(self.soc.vars[t], 1.0), (self.ch.vars[t], -b.charge_efficiency * dt),
                     (self.dis.vars[t], dt / b.discharge_efficiency)]
            if prev is not None:
                terms.append((prev, -1.0))
            self.balance_rows.append(m.row(f"battery_soc_balance_t{t:03d}", terms, EQ, soc0 if prev is None else 0.0))
            prev = self.soc.vars[t]
        if b.wear_cost_per_kwh > 0:
            m.cost("wear_cost", [(v, b.wear_cost_per_kwh * dt) for v in self.ch.vars + self.dis.vars])
        if b.wear_cost_per_kwh <= 0:  # without wear, cycling through the battery could be free: break the tie
            m.cost("tie_break", [(v, TIE_BREAK_PER_KWH * dt) for v in self.ch.vars + self.dis.vars])
        # soft reserve
        reserve = m.strategy.reserve_kwh
        self.short = None
        if reserve > soc_lb + 1e-9 and b.reserve_penalty_per_kwh > 0:
            self.short = m.slot_vars("battery_below_reserve_kwh", 0.0, reserve - soc_lb)
            for t in range(m.T):
                m.row(f"battery_reserve_t{t:03d}", [(self.soc.vars[t], 1.0), (self.short.vars[t], 1.0)], GE, reserve)
            m.cost("reserve_penalty", [(v, b.reserve_penalty_per_kwh * dt) for v in self.short.vars])
        # value of stored energy at the horizon end: the one rule every comparison uses too
        # (shared.cost: median import price of the horizon after discharge losses and wear, >= 0)
        self.terminal_value_per_kwh = stored_energy_value_per_kwh(m.import_price, b)
        m.cost("terminal_value", [(self.soc.vars[-1], -self.terminal_value_per_kwh)])
        # charging only from PV when grid charging is not allowed
        if not b.grid_charging_allowed:
            curt = m.shared["pv_curtail_kw"]
            for t in range(m.T):
                terms = [(self.ch.vars[t], 1.0)]
                if curt.vars[t] is not None:
                    terms.append((curt.vars[t], 1.0))
                m.row(f"battery_charge_from_pv_only_t{t:03d}", terms, LE, float(m.pv_kw[t] - curt.fixed[t]))
        # exclusion binaries where burning energy could pay
        # Burning energy (charge and discharge at once) pays only when losing stored energy can
        # save money later. With curtailment allowed, no inflow is forced, so more stored energy
        # never hurts (terminal value >= 0, reserve and peaks only gain from it) unless a later
        # import price is negative (being paid to import needs room). Without curtailment, PV is
        # forced in, so room also pays before PV that must be exported at a cost or beyond the
        # export limit. Every slot up to the last such reason gets a binary; none after it.
        reason = m.import_price < 0
        if not m.site.pv.curtailment_allowed:
            max_export = m.site.grid.max_export_kw if m.site.tariff.export_enabled else 0.0
            reason = reason | ((m.pv_kw > 0) & (m.export_price < 0)) | (m.pv_kw - m.load_kw > max_export)
        sink_wanted = np.zeros(m.T, dtype=bool)
        if reason.any():
            sink_wanted[: int(np.flatnonzero(reason)[-1]) + 1] = True
        self.binary_slots = []
        for t in np.flatnonzero(sink_wanted):
            z = m.var(f"battery_direction_t{t:03d}", binary=True)  # 1 = charging
            m.row(f"battery_discharge_only_if_not_charging_t{t:03d}", [(self.dis.vars[t], 1.0), (z, b.max_discharge_kw)],
                  LE, b.max_discharge_kw)
            m.row(f"battery_charge_only_if_charging_t{t:03d}", [(self.ch.vars[t], 1.0), (z, -b.max_charge_kw)], LE, 0.0)
            self.binary_slots.append(int(t))

    def extract(self, m: Model, x: np.ndarray) -> None:
        m.columns["charge_kw"] = self.ch.value(x)
        m.columns["discharge_kw"] = self.dis.value(x)
        m.columns["soc_kwh"] = self.soc.value(x)


class Stability(Component):
    """Small costs against flip-flopping: changing the previous plan's near-term setpoints, and
    changing the battery's power from slot to slot (a full mode switch costs ``mode_switch_cost``)."""

    name = "stability"
    NEAR_TERM_SLOTS = 8  # two hours: what the executor is about to write
    # Switches are priced over the next hours only: only the near term is executed before the
    # next replan, and pricing every slot of 48 h made the MILP ~10x slower (measured).
    SWITCH_SLOTS = 24

    def build(self, m: Model) -> None:
        b = m.site.battery
        assert b is not None
        cfg = m.site.planner
        ch, dis = m.shared["battery_charge_kw"], m.shared["battery_discharge_kw"]
        dt = m.dt
        prev = m.inputs.previous_battery_kw
        if prev is not None and cfg.setpoint_change_cost_per_kw > 0:
            prev = prev.reindex(m.index)
            for t in range(min(m.T, self.NEAR_TERM_SLOTS)):
                if not np.isfinite(prev.iloc[t]):
                    continue
                d = m.var(f"stability_setpoint_change_kw_t{t:03d}", 0.0)
                p = float(prev.iloc[t])
                m.row(f"stability_change_up_t{t:03d}", [(d, 1.0), (ch.vars[t], -1.0), (dis.vars[t], 1.0)], GE, -p)
                m.row(f"stability_change_down_t{t:03d}", [(d, 1.0), (ch.vars[t], 1.0), (dis.vars[t], -1.0)], GE, p)
                m.cost("stability_cost", [(d, cfg.setpoint_change_cost_per_kw)])
        if cfg.mode_switch_cost > 0:
            per_kw = cfg.mode_switch_cost / max(b.max_charge_kw, b.max_discharge_kw)
            for t in range(1, min(m.T, self.SWITCH_SLOTS)):
                d = m.var(f"stability_power_step_kw_t{t:03d}", 0.0)
                terms = [(ch.vars[t], -1.0), (dis.vars[t], 1.0), (ch.vars[t - 1], 1.0), (dis.vars[t - 1], -1.0)]
                m.row(f"stability_step_up_t{t:03d}", [(d, 1.0)] + terms, GE, 0.0)
                m.row(f"stability_step_down_t{t:03d}", [(d, 1.0)] + [(v, -c) for v, c in terms], GE, 0.0)
                m.cost("stability_cost", [(d, per_kw)])
        _ = dt


# --------------------------------------------------------------------------- water heaters


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
            if WATER_START_CUTS:
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


# --------------------------------------------------------------------------- EVs


def ev_sessions(m: Model, ev: EVConfig, first: bool) -> list[tuple[np.ndarray, pd.Timestamp]]:
    """Plug sessions (slot mask, departure) overlapping the horizon, from the configured daily window.

    The session running at the start follows the context: not plugged -> no session; a
    departure given -> it replaces the configured one.
    """
    tz = m.site.tz
    sessions = []
    d0 = m.local_dates[0] - timedelta(days=1)
    d_end = m.local_dates[-1]
    day = d0
    while day <= d_end:
        plug = pd.Timestamp(datetime.combine(day, ev.plugged_from), tz=tz)
        dep_day = day + timedelta(days=1) if ev.departure <= ev.plugged_from else day
        dep = pd.Timestamp(datetime.combine(dep_day, ev.departure), tz=tz)
        day += timedelta(days=1)
        plug, dep = plug.tz_convert("UTC"), dep.tz_convert("UTC")
        if dep <= m.index[0] or plug > m.index[-1]:
            continue
        sessions.append([plug, dep])
    out = []
    ctx_plugged, ctx_dep = m.inputs.ev_plugged, m.inputs.ev_departure
    for k, (plug, dep) in enumerate(sessions):
        current = plug <= m.index[0] < dep
        if current and first:
            if ctx_plugged is False:
                continue
            if ctx_dep is not None:
                dep = pd.Timestamp(ctx_dep).tz_convert("UTC")
        elif first and ctx_plugged and k == 0 and not current:
            pass
        mask = (m.index >= plug) & (m.index < dep)
        if mask.any():
            out.append((mask, dep))
    if first and ctx_plugged and not any(mask[0] for mask, _ in out):
        # plugged outside the configured window: charge until the given (or the next configured) departure
        dep = pd.Timestamp(ctx_dep).tz_convert("UTC") if ctx_dep is not None else (out[0][1] if out else m.index[-1])
        mask = (m.index >= m.index[0]) & (m.index < dep)
        out = [(mask, dep)] + [(mk & ~mask, d) for mk, d in out if (mk & ~mask).any()]
    return out


@dataclass
class EV(Component):
    """An EV: charges only while plugged; energy by departure is soft with a high penalty.

    On/off or a minimum power makes the power semi-continuous (one binary per plugged slot);
    without a minimum a modulating charger is continuous. Whether the home battery may feed the
    car is a setting: if not, the car charges only from the grid and PV.
    """

    ev: EVConfig
    number: int
    # True: a relaxation for the staged solve (see solve.solve_staged): one binary per clock hour,
    # the hour's energy either 0 or at least one slot at minimum power
    hourly: bool = False
    name = "ev"

    def build(self, m: Model) -> None:
        ev, i, dt = self.ev, self.number, m.dt
        p = f"ev{i}"
        first = i == 0
        sessions = ev_sessions(m, ev, first)
        plugged = np.zeros(m.T, dtype=bool)
        for mask, _ in sessions:
            plugged |= mask
        self.plugged = plugged
        needs_binary = (not ev.modulating) or ev.min_charge_kw > 0
        self.power = m.slot_vars(f"{p}_charge_kw", 0.0, ev.max_charge_kw, mask=plugged)
        m.add_slot_flow(self.power, -1.0)
        self.on = None
        if needs_binary:
            low = ev.max_charge_kw if not ev.modulating else ev.min_charge_kw
            self.low_kw = low
            self.on_slots: dict[int, pulp.LpVariable] = {}
            self.on_hours: dict[int, pulp.LpVariable] = {}
            if self.hourly:
                hours = hour_groups(m.index)
                for hr in np.unique(hours[plugged]):
                    slots = np.flatnonzero(plugged & (hours == hr))
                    u = m.var(f"{p}_on_hour_h{int(hr):03d}", binary=True)
                    self.on_hours[int(hr)] = u
                    for t in slots:
                        m.row(f"{p}_max_power_t{t:03d}", [(self.power.vars[t], 1.0), (u, -ev.max_charge_kw)], LE, 0.0)
                    m.row(f"{p}_min_energy_h{int(hr):03d}", [(self.power.vars[t], dt) for t in slots] + [(u, -low * dt)],
                          GE, 0.0)
            for t in (np.flatnonzero(plugged) if not self.hourly else []):
                z = m.var(f"{p}_on_t{t:03d}", binary=True)
                self.on_slots[int(t)] = z
                v = self.power.vars[t]
                m.row(f"{p}_max_power_t{t:03d}", [(v, 1.0), (z, -ev.max_charge_kw)], LE, 0.0)
                m.row(f"{p}_min_power_t{t:03d}", [(v, 1.0), (z, -low)], GE, 0.0)
            self.on = True
        self.short_vars = []
        horizon_end = m.index[-1] + pd.Timedelta(minutes=15)
        for k, (mask, dep) in enumerate(sessions):
            slots = [self.power.vars[t] for t in np.flatnonzero(mask)]
            m.row(f"{p}_session{k}_max_energy", [(v, ev.charge_efficiency * dt) for v in slots], LE, ev.battery_kwh)
            target = ev.target_kwh
            if first and k == 0 and mask[0] and m.inputs.ev_target_kwh is not None:
                target = m.inputs.ev_target_kwh
            if dep > horizon_end or target <= 0:
                continue  # departs after the horizon: the next plans see it
            s = m.var(f"{p}_session{k}_shortfall_kwh", 0.0, target)
            self.short_vars.append(s)
            m.row(f"{p}_session{k}_target", [(s, 1.0)] + [(v, ev.charge_efficiency * dt) for v in slots], GE, target)
            m.cost("ev_shortfall_penalty", [(s, ev.shortfall_penalty_per_kwh)])
        if not ev.battery_may_feed_ev and "battery_discharge_kw" in m.shared:
            imp, curt = m.shared["grid_import_kw"], m.shared["pv_curtail_kw"]
            for t in np.flatnonzero(plugged):
                terms = [(self.power.vars[t], 1.0), (imp.vars[t], -1.0)]
                if curt.vars[t] is not None:
                    terms.append((curt.vars[t], 1.0))
                m.row(f"{p}_not_from_battery_t{t:03d}", terms, LE, float(m.pv_kw[t] - curt.fixed[t]))

    def extract(self, m: Model, x: np.ndarray) -> None:
        m.columns[f"ev{self.number}_kw"] = self.power.value(x)
        m.columns["ev_kw"] = m.columns.get("ev_kw", 0.0) + m.columns[f"ev{self.number}_kw"]

    def shortfall_kwh(self, x: np.ndarray) -> float:
        return float(sum(x[s.index] for s in self.short_vars))


# --------------------------------------------------------------------------- manual blocks


class ManualBlocks(Component):
    """Manual plan blocks become constraints (water-heater ``heat`` is handled by WaterHeater).
    Dropped when the plan is re-solved with soft limits relaxed."""

    name = "manual_blocks"

    def build(self, m: Model) -> None:
        self.mask = np.zeros(m.T, dtype=bool)
        self.action = np.array([""] * m.T, dtype=object)
        if m.relaxed:
            return
        b, grid = m.site.battery, m.site.grid
        ch, dis = m.shared.get("battery_charge_kw"), m.shared.get("battery_discharge_kw")
        exp = m.shared["grid_export_kw"]
        for n, block in enumerate(m.inputs.manual_blocks):
            slots = np.flatnonzero((m.index >= block.start) & (m.index < block.end))
            for t in slots:
                self.mask[t] = True
                self.action[t] = block.action
                name = f"manual{n}_{block.action}_t{t:03d}"
                # a forced direction also forbids the other one: no charging "through" the battery
                if block.action == "charge" and ch is not None and b is not None:
                    m.row(name, [(ch.vars[t], 1.0)], GE, min(block.power_kw or b.max_charge_kw, b.max_charge_kw))
                    m.row(f"{name}_no_discharge", [(dis.vars[t], 1.0)], LE, 0.0)
                elif block.action == "discharge" and dis is not None and b is not None:
                    m.row(name, [(dis.vars[t], 1.0)], GE, min(block.power_kw or b.max_discharge_kw, b.max_discharge_kw))
                    m.row(f"{name}_no_charge", [(ch.vars[t], 1.0)], LE, 0.0)
                elif block.action == "export" and exp.vars[t] is not None:
                    m.row(name, [(exp.vars[t], 1.0)], GE, min(block.power_kw or grid.max_export_kw, grid.max_export_kw))
                elif block.action == "hold" and ch is not None:
                    m.row(name, [(ch.vars[t], 1.0), (dis.vars[t], 1.0)], LE, 0.0)


# --------------------------------------------------------------------------- capacity tariff


class CapacityTariff(Component):
    """What the plan adds to the capacity charge; peaks so far are state (lower bounds).

    max_hourly / max_15min: one peak variable per billing period >= each hourly (slot) import.
    mean of the N highest daily peaks: a peak variable per local day and the LP form of the
    sum of the N largest values, ``N*tau + sum(max(0, peak_i - tau))`` (tau >= 0 pads missing
    days with zeros). Norway's tiers add one binary per tier step on that mean.
    """

    name = "capacity_tariff"

    def build(self, m: Model) -> None:
        cfg = m.site.tariff.capacity
        imp = m.shared["grid_import_kw"]
        state = m.inputs.capacity_state
        state_peaks = dict(state.daily_peaks_kw) if state else {}
        dt = m.dt
        first_key = period_key(m.local_dates[0], cfg.period)
        self.peak_vars: list[pulp.LpVariable] = []
        # (slots, peak variable, scale): peak >= scale * sum(import over the slots), for the
        # peak x heater cuts of the solver (solve._peak_heater_cuts)
        self.demand_groups: list[tuple[list[int], pulp.LpVariable, float]] = []
        # the demand measure per hour (or slot), with its local date
        if cfg.method == "max_15min":
            groups = [[t] for t in range(m.T)]
            scale = 1.0
        else:
            labels = hour_groups(m.index)
            groups = [list(np.flatnonzero(labels == g)) for g in range(labels.max() + 1)]
            scale = dt
        group_dates = [m.local_dates[g[0]] for g in groups]
        periods: dict[tuple[int, ...], list[int]] = {}
        for g, d in enumerate(group_dates):
            periods.setdefault(period_key(d, cfg.period), []).append(g)
        big_m = m.site.grid.max_import_kw + max(state_peaks.values(), default=0.0)
        for pk, gs in periods.items():
            tag = "_".join(str(x) for x in pk)
            before = {d: v for d, v in state_peaks.items() if period_key(d, cfg.period) == pk} if pk == first_key else {}
            billed_before = billed_capacity(before, cfg)

            def demand_row(name: str, peak: pulp.LpVariable, g: int) -> None:
                self.demand_groups.append((list(groups[g]), peak, scale))
                terms = [(peak, 1.0)] + [(imp.vars[t], -scale) for t in groups[g] if imp.vars[t] is not None]
                m.row(name, terms, GE, float(sum(imp.fixed[t] for t in groups[g]) * scale))

            if cfg.method in ("max_hourly", "max_15min"):
                peak = m.var(f"capacity_peak_kw_p{tag}", max(before.values(), default=0.0), big_m)
                self.peak_vars.append(peak)
                for g in gs:
                    demand_row(f"capacity_peak_p{tag}_g{g:03d}", peak, g)
                m.cost("capacity_cost", [(peak, cfg.price_per_kw)], -billed_before)
                continue
            # daily peaks, then the sum of the N largest
            n = cfg.top_n if cfg.method == "mean_top_n_distinct_days" else 3
            day_peaks = {}
            for g in gs:
                d = group_dates[g]
                if d not in day_peaks:
                    day_peaks[d] = m.var(f"capacity_daily_peak_kw_{d.strftime('%Y%m%d')}", before.get(d, 0.0), big_m)
                    self.peak_vars.append(day_peaks[d])
                demand_row(f"capacity_daily_peak_{d.strftime('%Y%m%d')}_g{g:03d}", day_peaks[d], g)
            tau = m.var(f"capacity_topn_threshold_kw_p{tag}", 0.0, big_m)
            top_terms = [(tau, float(n))]
            items = [(d.strftime("%Y%m%d"), v, None) for d, v in day_peaks.items()]
            items += [(d.strftime("%Y%m%d"), None, c) for d, c in before.items() if d not in day_peaks]
            for label, v, c in items:
                u = m.var(f"capacity_topn_excess_kw_{label}", 0.0)
                top_terms.append((u, 1.0))
                if v is not None:
                    m.row(f"capacity_topn_excess_{label}", [(u, 1.0), (v, -1.0), (tau, 1.0)], GE, 0.0)
                else:
                    m.row(f"capacity_topn_excess_{label}", [(u, 1.0), (tau, 1.0)], GE, float(c))
            if cfg.method == "mean_top_n_distinct_days":
                m.cost("capacity_cost", [(v, c * cfg.price_per_kw / n) for v, c in top_terms], -billed_before)
                continue
            tiers = sorted(cfg.tiers, key=lambda x: x.above_kw)
            if not tiers:
                continue
            m.cost("capacity_cost", [], tiers[0].cost_per_period - billed_before)
            for k in range(1, len(tiers)):
                y = m.var(f"capacity_tier{k}_p{tag}", binary=True)
                m.row(f"capacity_tier{k}_reached_p{tag}", [(v, c / n) for v, c in top_terms] + [(y, -big_m)], LE,
                      tiers[k].above_kw)
                m.cost("capacity_cost", [(y, tiers[k].cost_per_period - tiers[k - 1].cost_per_period)])
