"""Components of the Kepler model; each adds its own variables, constraints and cost terms.

Adding an asset (a heat pump, a second battery) is one new class with ``build(m)`` and
``extract(m, x)``; the builder only loops over components. Water heaters and EVs, the two
components with their own solver hooks, live in :mod:`shared.optimize.water_heater` and
:mod:`shared.optimize.ev`. Binaries appear only where
physics or economics need them (see each component).
"""

from __future__ import annotations

import numpy as np
import pulp

from shared.config import BatteryConfig
from shared.cost import billed_capacity, hour_groups, period_key, stored_energy_value_per_kwh
from shared.optimize.model import EQ, GE, LE, Model

# A tiny cost per kWh of flows that are interchangeable at equal prices: keeps the solution
# unique (no import+export or charge+discharge at a price tie). Reported apart from the bill.
TIE_BREAK_PER_KWH = 1e-5
# Grid purchases at equal prices are made as late as possible (see Grid.build); at most this
# per kWh in the first slot, falling linearly to 0 at the horizon end.
DEFER_IMPORT_PER_KWH = 1e-4


class Component:
    name = "component"

    def build(self, m: Model) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def extract(self, m: Model, x: np.ndarray) -> None:
        """Put this component's per-slot results into ``m.columns``."""

    # Solver hooks (PyPSA's ``extra_functionality`` idea): the solver's heuristic incumbent and
    # its staged solve ask every component; one with nothing to add keeps these defaults, so
    # the solver never reaches into a component's variables.

    def shortfall(self, x: np.ndarray) -> tuple[str, str, float] | None:
        """(kind, asset name, kWh) of a soft target missed in solution ``x``, for the cost; None: no target."""
        return None

    def incumbent_fix(self, m: Model, x: np.ndarray, bus_dual: np.ndarray, on_above: float) -> dict[int, float]:
        """Column -> 0/1 for this component's binaries, rounded from the LP relaxation ``x``."""
        return {}

    def pattern_columns(self) -> list[int]:
        """Binary columns :meth:`incumbent_pattern` sets as a whole (none: not patterned)."""
        return []

    def incumbent_pattern(self, m: Model, slot_value_per_kwh: np.ndarray, shortfall_price: float) -> dict[int, float]:
        """Column -> 0/1: the best on/off pattern if energy cost ``slot_value_per_kwh`` per slot."""
        return {}

    def incumbent_moves(self, fixed: dict[int, float], col_dual: np.ndarray) -> list[tuple[float, dict[int, float]]]:
        """Candidate changes of a fixed plan with their estimated gain (reduced costs)."""
        return []

    def cut_rows(self, m: Model) -> list[tuple[list[int], list[float], float]]:
        """Valid inequalities ``sum(vals * x[cols]) >= lower`` for the solver only (they tighten the
        LP relaxation; removed before the final LP, so the duals stay the model's own)."""
        return []

    def staged_bounds(self, m: Model, x: np.ndarray) -> tuple[list[int], list[float], list[float]]:
        """Column bounds that turn a stage-1 (relaxed) solution into one feasible for the full model."""
        return [], [], []

    def slot_duals(self, m: Model, row_dual: np.ndarray) -> dict[str, list[float]]:
        """Plan columns read from the final LP's row duals (marginal values per slot)."""
        return {}

    # The peak x block cuts (cuts.peak_heater_cuts) ask for the peaks, the blocks and whether the
    # bus holds only what their derivation assumes.

    # False: this component puts a flexible consumer on the bus the cuts were not derived for (EV).
    peak_block_cuts_valid = True

    def peak_groups(self) -> list[tuple[list[int], int, float]]:
        """(slots, peak column, scale) with ``peak >= scale * sum(import over the slots)``; none: no peak."""
        return []

    def block_energy_kwh(self, slots: list[int], scale: float) -> tuple[list[int], np.ndarray]:
        """(block columns, ``scale`` x kWh each on/off block draws in ``slots``); none: no blocks."""
        return [], np.zeros(0)


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
        if site.pv.curtailment_allowed:
            # Exporting at a price <= 0 never beats curtailing the PV instead (free): some optimal plan
            # exports only what the battery gives beyond the load (making room for a later negative
            # import price). Tighter bounds where import+export would pay (import price < export
            # price <= 0) make their direction binaries' LP relaxation much tighter.
            unpaid = m.export_price <= 0
            exp_ub = np.where(unpaid, np.clip((b.max_discharge_kw if b else 0.0) - m.load_kw, 0.0, max_export), exp_ub)
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
        self.binary_slots: list[int] = []
        self.direction: dict[int, pulp.LpVariable] = {}
        for t in range(m.T):
            i, e = self.imp.vars[t], self.exp.vars[t]
            if i is not None and e is not None and m.import_price[t] < m.export_price[t]:
                z = self.direction[t] = m.var(f"grid_direction_t{t:03d}", binary=True)  # 1 = exporting
                m.row(f"grid_import_only_if_not_exporting_t{t:03d}", [(i, 1.0), (z, imp_ub[t])], LE, imp_ub[t])
                m.row(f"grid_export_only_if_exporting_t{t:03d}", [(e, 1.0), (z, -exp_ub[t])], LE, 0.0)
                self.binary_slots.append(t)

    def incumbent_fix(self, m: Model, x: np.ndarray, bus_dual: np.ndarray, on_above: float) -> dict[int, float]:
        """Each direction binary the way the LP relaxation's net exchange points."""
        return {self.direction[t].index: float(x[self.exp.vars[t].index] > x[self.imp.vars[t].index])
                for t in self.binary_slots}

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


def burn_threshold_per_kwh(b: BatteryConfig) -> float:
    """What taking one kWh off the bus by charging and discharging at once costs in wear:
    w * (1 + eta) / (1 - eta), eta the round trip (w the tie-break when the site has no wear)."""
    eta = b.charge_efficiency * b.discharge_efficiency
    w = b.wear_cost_per_kwh if b.wear_cost_per_kwh > 0 else TIE_BREAK_PER_KWH
    return w * (1 + eta) / (1 - eta) if eta < 1 else 0.0


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
        m.terminal_value_per_kwh = stored_energy_value_per_kwh(m.import_price, b)
        m.cost("terminal_value", [(self.soc.vars[-1], -m.terminal_value_per_kwh)])
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
        # Being paid p per kWh imported makes burning pay only beyond its wear: charging c and
        # discharging c*eta at once (eta = round trip) takes c*(1 - eta) kWh off the bus and costs
        # w*c*(1 + eta) of wear, and making room by burning stored energy to import it again later
        # costs the same per kWh (docs/planner.md). So only import prices below -burn_threshold
        # are a reason: with the example sites' wear that is no real negative price (SE3/SE4
        # 2023-2024 >= -0.075 EUR/kWh incl. VAT against 0.195), and the MILP becomes an LP.
        reason = m.import_price < -burn_threshold_per_kwh(b)
        if not m.site.pv.curtailment_allowed:
            max_export = m.site.grid.max_export_kw if m.site.tariff.export_enabled else 0.0
            reason = reason | ((m.pv_kw > 0) & (m.export_price < 0)) | (m.pv_kw - m.load_kw > max_export)
        sink_wanted = np.zeros(m.T, dtype=bool)
        if reason.any():
            sink_wanted[: int(np.flatnonzero(reason)[-1]) + 1] = True
        self.binary_slots = []
        self.direction = {}
        for t in np.flatnonzero(sink_wanted):
            z = self.direction[int(t)] = m.var(f"battery_direction_t{t:03d}", binary=True)  # 1 = charging
            m.row(f"battery_discharge_only_if_not_charging_t{t:03d}", [(self.dis.vars[t], 1.0), (z, b.max_discharge_kw)],
                  LE, b.max_discharge_kw)
            m.row(f"battery_charge_only_if_charging_t{t:03d}", [(self.ch.vars[t], 1.0), (z, -b.max_charge_kw)], LE, 0.0)
            self.binary_slots.append(int(t))

    def slot_duals(self, m: Model, row_dual: np.ndarray) -> dict[str, list[float]]:
        # d(objective)/d(stored kWh) per slot: what a kWh in the battery is worth to the plan
        return {"soc_value_per_kwh": [-row_dual[r.index] for r in self.balance_rows]}

    def incumbent_fix(self, m: Model, x: np.ndarray, bus_dual: np.ndarray, on_above: float) -> dict[int, float]:
        """Each direction binary the way the LP relaxation's net battery power points."""
        return {self.direction[t].index: float(x[self.ch.vars[t].index] >= x[self.dis.vars[t].index])
                for t in self.binary_slots}

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


# --------------------------------------------------------------------------- manual blocks


class ManualBlocks(Component):
    """Manual plan blocks become constraints (water-heater ``heat`` is handled by WaterHeater).
    Dropped when the plan is re-solved with soft limits relaxed."""

    name = "manual_blocks"

    def build(self, m: Model) -> None:
        if m.relaxed:
            return
        b, grid = m.site.battery, m.site.grid
        ch, dis = m.shared.get("battery_charge_kw"), m.shared.get("battery_discharge_kw")
        exp = m.shared["grid_export_kw"]
        for n, block in enumerate(m.inputs.manual_blocks):
            slots = np.flatnonzero((m.index >= block.start) & (m.index < block.end))
            for t in slots:
                m.manual_action[t] = block.action
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
        # (slots, peak variable, scale): peak >= scale * sum(import over the slots), for
        # peak_groups (the solver's peak x block cuts)
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

    def peak_groups(self) -> list[tuple[list[int], int, float]]:
        return [(slots, peak.index, scale) for slots, peak, scale in self.demand_groups]
