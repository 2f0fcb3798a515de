"""The heater DP of the heuristic incumbent against brute force over every on/off pattern."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from shared.optimize.heater_dp import cheapest_heater_blocks
from shared.optimize.inputs import WaterState, apply_strategy
from shared.optimize.solve import build_model
from shared.optimize.water_heater import WaterHeater
from tests.optimize_helpers import make_inputs, make_site


def _heater(state: WaterState, start: str) -> tuple[WaterHeater, object]:
    site = make_site(battery=None, water_heaters=[{"power_kw": 3.0, "daily_min_kwh": 3.0, "min_run_minutes": 30,
                                                   "max_gap_hours": 1.5, "start_cost": 0.05}])
    n = 26  # 13 blocks of 30 min across a midnight: two requirements, gap windows of 3 blocks
    inputs = make_inputs(site, [0.3] * n, [0.0] * n, [0.2] * n, start=start, water={"tank": state})
    adjusted, strategy = apply_strategy(inputs, site)
    m, comps = build_model(adjusted, site, strategy)
    heater = next(c for c in comps if isinstance(c, WaterHeater))
    return heater, m


def _cost(c: WaterHeater, on: np.ndarray, block_cost: np.ndarray, shortfall_per_kwh: float, dt: float) -> float:
    total = float(block_cost[on].sum())
    before = c.state.on_now
    for o in on:
        total += c.heater.start_cost if (o and not before) else 0.0
        before = bool(o)
    for _label, mask, need in c.requirements:
        kwh = float(on[c.block_of_slot[mask]].sum()) * c.heater.power_kw * dt
        total += shortfall_per_kwh * max(0.0, need - kwh)
    return total


def _feasible(c: WaterHeater, on: np.ndarray) -> bool:
    return all(on[list(ids)].any() for ids, need in c.gap_windows if need >= 1.0)


@pytest.mark.parametrize("state", [WaterState(), WaterState(on_now=True, hours_since_heated=0.0, done_today_kwh=1.5),
                                   WaterState(hours_since_heated=1.0)])
@pytest.mark.parametrize("shortfall_per_kwh", [5.0, 0.01])
def test_dp_finds_the_cheapest_pattern_that_keeps_the_heater_rules(state: WaterState, shortfall_per_kwh: float) -> None:
    c, m = _heater(state, "2025-08-05T18:30Z")  # 18:30-01:00 UTC (the test site runs on UTC)
    nb = len(c.blocks)
    assert c.gap_windows and len(c.requirements) == 2
    rng = np.random.default_rng(7)
    for _ in range(5):
        block_cost = rng.normal(0.1, 0.1, nb)
        on = cheapest_heater_blocks(c, m, block_cost, shortfall_per_kwh)
        assert _feasible(c, on)
        best = min(_cost(c, np.array(p, dtype=bool), block_cost, shortfall_per_kwh, m.dt)
                   for p in itertools.product((False, True), repeat=nb) if _feasible(c, np.array(p, dtype=bool)))
        assert _cost(c, on, block_cost, shortfall_per_kwh, m.dt) == pytest.approx(best, abs=1e-9)
