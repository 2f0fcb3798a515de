"""Kepler: the optimisation model (components, builder, solve, explanations, fallback).

Public API::

    from shared.optimize import PlanInputs, solve_plan, fallback_plan
    result = solve_plan(inputs, site)   # PlanResult: slots DataFrame, cost, stats, reason

Used by the planner (with forecasts) and the oracle (with actuals). No MQTT, HTTP or DB here.
"""

import importlib
from typing import TYPE_CHECKING, Any

from shared.cost import CapacityState
from shared.optimize.inputs import (
    ManualBlock,
    PlanInputError,
    PlanInputs,
    Strategy,
    WaterState,
    apply_strategy,
)

if TYPE_CHECKING:
    from shared.optimize.fallback import fallback_plan
    from shared.optimize.highs import run_highs
    from shared.optimize.result import PlanResult, SolverStats
    from shared.optimize.solve import build_model, solve_plan

# The solver stack (PuLP, HiGHS) loads on first use, so importing the inputs stays light.
_LAZY = {"PlanResult": "result", "SolverStats": "result", "build_model": "solve", "fallback_plan": "fallback",
         "run_highs": "highs", "solve_plan": "solve"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"shared.optimize.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'shared.optimize' has no attribute {name!r}")

__all__ = [
    "CapacityState", "ManualBlock", "PlanInputError", "PlanInputs", "PlanResult", "SolverStats", "Strategy",
    "WaterState", "apply_strategy", "build_model", "fallback_plan", "run_highs", "solve_plan",
]
