"""The Kepler model builder: a thin layer over PuLP that components add to.

Components (see :mod:`shared.optimize.components`) add variables, constraints and cost terms
through :class:`Model`; names are ``[a-z0-9_]`` only (``battery_soc_balance_t017``), so PuLP
keeps them as they are and an infeasibility report reads like a sentence. The AC bus balance
of every slot is assembled from the terms components put on it:

    sum(supply terms) - sum(demand terms) = load_kw - pv_kw        (bus_balance_tNNN)

Cost terms are kept per group (``import_cost``, ``wear_cost``, ...) so the objective can be
broken down after the solve and checked against :func:`shared.cost.plan_cost`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pulp

from shared.config import SiteConfig
from shared.optimize.inputs import PlanInputs, Strategy

LE, GE, EQ = pulp.LpConstraintLE, pulp.LpConstraintGE, pulp.LpConstraintEQ
Terms = list[tuple[pulp.LpVariable, float]]


@dataclass
class SlotVars:
    """One variable per slot where the quantity can vary; ``None`` where it is fixed at ``fixed``."""

    vars: list[pulp.LpVariable | None]
    fixed: np.ndarray

    def value(self, col_value: np.ndarray) -> np.ndarray:
        out = self.fixed.astype(float).copy()
        for t, v in enumerate(self.vars):
            if v is not None:
                out[t] = col_value[v.index]
        return out


@dataclass
class Model:
    site: SiteConfig
    inputs: PlanInputs
    strategy: Strategy
    relaxed: bool = False
    prob: pulp.LpProblem = field(default_factory=lambda: pulp.LpProblem("kepler", pulp.LpMinimize))
    costs: dict[str, Terms] = field(default_factory=dict)
    cost_constants: dict[str, float] = field(default_factory=dict)
    binaries: list[pulp.LpVariable] = field(default_factory=list)
    shared: dict[str, SlotVars] = field(default_factory=dict)
    rows: dict[str, pulp.LpConstraint] = field(default_factory=dict)
    columns: dict[str, np.ndarray] = field(default_factory=dict)
    cut_rows: tuple[int, int] = (0, 0)  # HiGHS rows [first, end) of solver-only cuts (cuts.peak_heater_cuts)
    # what components tell the result beside their columns: the value per kWh left in the battery
    # at the horizon end (Battery), and the manual block's action per slot ("" = none; ManualBlocks)
    terminal_value_per_kwh: float = 0.0

    def __post_init__(self) -> None:
        self.T = self.inputs.slots
        self.dt = self.inputs.slot_hours
        self.index: pd.DatetimeIndex = self.inputs.index
        self.load_kw = np.asarray(self.inputs.load_kw, dtype=float)
        self.pv_kw = np.asarray(self.inputs.pv_kw, dtype=float)
        self.import_price = self.inputs.prices["import_price_per_kwh"].to_numpy(dtype=float)
        self.export_price = self.inputs.prices["export_price_per_kwh"].to_numpy(dtype=float)
        self.local = self.index.tz_convert(self.site.tz)
        self.local_dates = np.asarray(self.local.date)
        self.bus: list[Terms] = [[] for _ in range(self.T)]
        self.bus_rhs = self.load_kw - self.pv_kw  # components move constants here (e.g. PV)
        self.manual_action = np.array([""] * self.T, dtype=object)
        self.bus_rows: list[pulp.LpConstraint] = []

    # ------------------------------------------------------------------ building blocks

    def var(self, name: str, lb: float | None = 0.0, ub: float | None = None, binary: bool = False) -> pulp.LpVariable:
        if binary:
            v = self.prob.add_variable(name, 0, 1, pulp.LpBinary)
            self.binaries.append(v)
            return v
        return self.prob.add_variable(name, lb, ub)

    def slot_vars(self, prefix: str, lb: np.ndarray | float, ub: np.ndarray | float, mask: np.ndarray | None = None,
                  binary: bool = False) -> SlotVars:
        """A variable ``{prefix}_tNNN`` for each slot in ``mask``; elsewhere fixed at 0."""
        lb_arr = np.broadcast_to(np.asarray(lb, dtype=float), (self.T,))
        ub_arr = np.broadcast_to(np.asarray(ub, dtype=float), (self.T,))
        mask = np.ones(self.T, dtype=bool) if mask is None else mask
        out: list[pulp.LpVariable | None] = []
        for t in range(self.T):
            if mask[t] and ub_arr[t] > lb_arr[t] + 1e-9 or (mask[t] and binary):
                out.append(self.var(f"{prefix}_t{t:03d}", float(lb_arr[t]), float(ub_arr[t]), binary=binary))
            else:
                out.append(None)
        fixed = np.where(mask, lb_arr, 0.0) if not binary else np.zeros(self.T)
        return SlotVars(out, np.array(fixed, dtype=float))

    def row(self, name: str, terms: Terms, sense: int, rhs: float) -> pulp.LpConstraint:
        c = pulp.LpConstraint(pulp.LpAffineExpression(terms), sense, name, float(rhs))
        self.prob.addConstraint(c)
        self.rows[name] = c
        return c

    def cost(self, group: str, terms: Terms, constant: float = 0.0) -> None:
        self.costs.setdefault(group, []).extend(terms)
        self.cost_constants[group] = self.cost_constants.get(group, 0.0) + constant

    def on_bus(self, t: int, var: pulp.LpVariable | None, coef: float) -> None:
        """Put ``coef * var`` on slot t's bus: +1 supplies the home (import, discharge), -1 consumes."""
        if var is not None:
            self.bus[t].append((var, coef))

    def add_slot_flow(self, sv: SlotVars, coef: float) -> None:
        for t, v in enumerate(sv.vars):
            if v is None:
                self.bus_rhs[t] -= coef * sv.fixed[t]
            else:
                self.bus[t].append((v, coef))

    # ------------------------------------------------------------------ finishing

    def finish(self) -> None:
        for t in range(self.T):
            self.bus_rows.append(self.row(f"bus_balance_t{t:03d}", self.bus[t], EQ, float(self.bus_rhs[t])))
        terms: dict[pulp.LpVariable, float] = {}
        for group in self.costs.values():
            for v, c in group:
                terms[v] = terms.get(v, 0.0) + c
        self.prob.setObjective(pulp.LpAffineExpression(list(terms.items())))

    def cost_values(self, col_value: np.ndarray) -> dict[str, float]:
        return {
            g: float(sum(c * col_value[v.index] for v, c in terms) + self.cost_constants.get(g, 0.0))
            for g, terms in self.costs.items()
        }
