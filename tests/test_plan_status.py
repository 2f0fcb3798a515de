"""A plan the time limit stopped says ``feasible`` with its proven gap, never ``optimal``:
in the result, the ``darkstar plan`` exit code and JSON, the bus message and the stored plan."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from services.cli import main
from services.planner.cli import EXIT_FEASIBLE
from shared.config import load_site_config
from shared.contracts import PlanMsg, decode, encode
from shared.optimize import solve_plan
from shared.optimize.inputs import inputs_from_recorded
from shared.optimize.messages import plan_message
from shared.optimize.result import plan_status
from shared.sitedata import load_site_data
from shared.storage import Store

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT / "examples" / "se4-home.yaml"
DATA = ROOT / "examples" / "data" / "se4_home_2025-07_2025-10.csv.gz"
# heater blocks + capacity tariff: this day needs > 10 s to prove 0.1 % (docs/planner.md);
# asked to prove 1e-7 in 1 s, the solver stops at the limit on any machine
HARD_DAY = "2025-07-04T00:00+02:00"


@pytest.fixture(scope="module")
def stopped_plan():
    site = load_site_config(SITE, environ={})
    site = site.model_copy(update={"planner": site.planner.model_copy(update={"mip_gap": 1e-7})})
    inputs = inputs_from_recorded(load_site_data(DATA).frame, site, HARD_DAY, 48, soc_kwh=10.0)
    return site, solve_plan(inputs, site, time_limit_s=1.0), inputs


def test_a_plan_stopped_by_the_time_limit_is_feasible_with_its_proven_gap(stopped_plan):
    site, result, _ = stopped_plan
    assert result.stats.status == "Time limit reached"
    assert result.status == "feasible" and not result.fallback
    assert result.stats.mip_gap > site.planner.mip_gap  # the gap it proved, not the target


def test_the_bus_message_and_the_stored_plan_say_feasible(stopped_plan, tmp_path):
    site, result, inputs = stopped_plan
    msg = plan_message(result, site, datetime(2025, 7, 3, 22, tzinfo=UTC), prices=inputs.prices)
    wire = decode(encode(msg), "plan")
    assert isinstance(wire, PlanMsg)
    assert wire.solver.status == "feasible" and wire.solver.mip_gap == pytest.approx(result.stats.mip_gap)
    store = Store.open(f"sqlite:///{tmp_path / 'db.sqlite'}")
    try:
        store.store_plan(wire)
        stored = store.latest_plan(site.site_id)
    finally:
        store.close()
    assert stored is not None and stored.solver.status == "feasible"
    assert stored.solver.mip_gap == pytest.approx(result.stats.mip_gap)


def test_darkstar_plan_exits_with_the_feasible_code(capsys, tmp_path):
    site_file = tmp_path / "site.yaml"
    site_file.write_text(SITE.read_text() + "\nplanner:\n  mip_gap: 1.0e-7\n")
    code = main(["plan", "--site", str(site_file), "--data", str(DATA), "--start", HARD_DAY, "--hours", "48",
                 "--soc-kwh", "10", "--time-limit", "1", "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert code == EXIT_FEASIBLE
    assert doc["status"] == "feasible" and doc["solver_status"] == "Time limit reached" and doc["mip_gap"] > 1e-7


def test_only_a_proven_plan_is_optimal():
    site = load_site_config(SITE, environ={})
    assert plan_status("Optimal", 0.0009, site) == "optimal"
    assert plan_status("Optimal", 0.002, site) == "feasible"  # staged solve stopped before proving
    assert plan_status("Time limit reached", 0.0, site) == "feasible"
    assert plan_status("Time limit reached", 0.01, site, relaxed=True) == "relaxed"
