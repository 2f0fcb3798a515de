"""A solved plan as the rest of the code sees it: per-slot frame, cost, solver figures, status.

No PuLP or HiGHS here, so readers of plans (planner messages, oracle, backtest, explanations)
do not load the solver stack.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from shared.config import SiteConfig
from shared.cost import CostBreakdown, plan_cost
from shared.optimize.inputs import PlanInputs, Strategy

if TYPE_CHECKING:
    from shared.optimize.components import Component

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
    # "relaxed" (soft limits dropped), "fallback" or "rule" (shared.ruleguard chose the self-consumption rule)
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
    shortfalls: dict[str, dict[str, float]] = {"ev": {}, "water": {}}
    for comp in comps or []:
        short = comp.shortfall(x) if x is not None else None
        if short is not None:  # (kind, asset name, kWh) from the component's own variables
            kind, name, kwh = short
            shortfalls[kind][name] = kwh
    return plan_cost(
        frame, inputs.prices, site, capacity_state=inputs.capacity_state, slot_hours=inputs.slot_hours,
        reserve_kwh=strategy.reserve_kwh, ev_shortfall_kwh=shortfalls["ev"], water_shortfall_kwh=shortfalls["water"],
        water_on_before={n: s.on_now for n, s in inputs.water.items()},
    )
