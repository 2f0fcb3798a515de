"""`darkstar up --demo --ev` end to end: the planner's EV power reaches the simulated OCPP wallbox
through the bus and the executor, the car charges, and what it drew comes back as telemetry."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.demo.run import demo_on_free_ports
from services.stack import Stack
from shared.config import load_site_config
from tests.conftest import ROOT, wait_for


@pytest.fixture
def demo(tmp_path: Path):
    site = load_site_config(ROOT / "examples" / "se4-home.yaml", environ={})
    # 01:30, the car plugged in since 18:00 and wanting 80 % by 07:00: the plan must charge it tonight
    running = demo_on_free_ports(site, Stack, tmp_path / "demo", accel=300.0, start="2025-08-16T01:30:00+02:00",
                                 ev=True)
    running.start()
    yield running
    running.stop()


def test_the_plan_charges_the_demo_car_through_its_wallbox(demo):
    store, site_id, cp = demo.stack.store, demo.site.site_id, demo.car.cp
    plan = wait_for(lambda: (p := store.latest_plan(site_id)) is not None and any(s.ev_kw > 0.5 for s in p.slots)
                    and p, timeout_s=90)
    assert plan.solver.status in ("optimal", "feasible") and not plan.fallback
    soc_before = cp.car.soc_frac
    # the car is plugged in: a transaction is open at once (0 A while the plan waits), so even a
    # Darkstar that stopped now would leave it charging at the fallback current
    wait_for(lambda: cp.transaction_id is not None, timeout_s=60)
    # the executor drives the wallbox by the plan: the car draws power, and telemetry says so
    wait_for(lambda: cp.power_kw > 4.0, timeout_s=120)
    executor = next(s for s in demo.stack.services if s.name == "executor")
    wait_for(lambda: (executor.loop.last_telemetry is not None and (executor.loop.last_telemetry.ev_kw or 0) > 4.0),
             timeout_s=60)
    state = executor.ev.state()[0]
    assert state["source"] in ("plan", "guard") and state["command"]["limit_a"] >= 6.0
    wait_for(lambda: cp.car.soc_frac > soc_before + 0.01, timeout_s=60)
    # and the measured slot energies include the car (what the oracle and the money pages count)
    wait_for(lambda: (store.observations_between(site_id, plan.slots[0].start, demo.sim_time)["ev_kwh"]
                      .fillna(0).sum()) > 0.5, timeout_s=120)
