"""`darkstar up --demo` end to end: forecasts, plans and execution against the simulated inverter."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.demo.run import Demo
from services.stack import Stack
from shared.config import load_site_config
from tests.conftest import ROOT, free_port, wait_for


@pytest.fixture
def demo(tmp_path: Path):
    site = load_site_config(ROOT / "examples" / "se4-home.yaml", environ={})
    ports = {name: free_port() for name in ("dashboard", "forecaster", "planner", "executor", "trainer", "oracle")}
    site = site.model_copy(update={
        "mqtt": site.mqtt.model_copy(update={"port": free_port()}),
        "http": site.http.model_copy(update={"ports": ports}),
    })
    running = Demo(site, Stack, start="2025-08-15T06:00:00+02:00", accel=120.0, workdir=tmp_path / "demo")
    running.start()
    yield running
    running.stop()


def test_the_demo_forecasts_plans_and_executes_within_a_minute(demo):
    services = {s.name: s for s in demo.stack.services}
    store, site_id = demo.stack.store, demo.site.site_id
    # prices and a forecast at once, a plan as soon as the executor has measured the SoC
    wait_for(lambda: store.latest_prices(site_id) is not None, timeout_s=30)
    wait_for(lambda: store.latest_forecast(site_id) is not None, timeout_s=30)
    plan = wait_for(lambda: store.latest_plan(site_id), timeout_s=40)
    # optimal, or feasible with its proven gap when the time limit stops the solver on a loaded machine
    assert not plan.fallback and plan.solver.status in ("optimal", "feasible")
    # the executor follows it on the simulated inverter: decisions logged, slots observed
    wait_for(lambda: store.count("execution_log", site_id) >= 5, timeout_s=40)
    wait_for(lambda: store.count("slot_observations", site_id) >= 2, timeout_s=60)
    executor = services["executor"]
    ok, checks = executor.readiness()
    assert ok, checks
    # what was measured balances: load + charge + export = pv + discharge + import (per slot, kWh)
    obs = store.observations_between(site_id, plan.slots[0].start.replace(hour=0), demo.sim_time)
    complete = obs.dropna(subset=["load_kwh", "pv_kwh", "import_kwh", "export_kwh", "charge_kwh", "discharge_kwh"])
    assert len(complete) >= 1
    balance = (complete["pv_kwh"] + complete["discharge_kwh"] + complete["import_kwh"]
               - complete["load_kwh"] - complete["charge_kwh"] - complete["export_kwh"]
               - complete["water_kwh"].fillna(0) - complete["ev_kwh"].fillna(0))
    assert balance.abs().max() < 0.05
