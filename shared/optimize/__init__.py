"""Kepler: the optimisation model (components, builder, solve, explanations, fallback).

Public API::

    from shared.optimize import PlanInputs, solve_plan, fallback_plan
    result = solve_plan(inputs, site)   # PlanResult: slots DataFrame, cost, stats, reason

Used by the planner (with forecasts) and the oracle (with actuals). No MQTT, HTTP or DB here.
"""

from shared.cost import CapacityState
from shared.optimize.inputs import ManualBlock, PlanInputError, PlanInputs, Strategy, WaterState, apply_strategy
from shared.optimize.solve import PlanResult, SolverStats, build_model, fallback_plan, run_highs, solve_plan

__all__ = [
    "CapacityState", "ManualBlock", "PlanInputError", "PlanInputs", "PlanResult", "SolverStats", "Strategy",
    "WaterState", "apply_strategy", "build_model", "fallback_plan", "run_highs", "solve_plan",
]
