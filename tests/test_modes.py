"""One mode map: the planner's reason codes, the live executor and the simulator's executor rule agree.

A slot's flows are chosen to disagree with its reason code (a charge code with no charge, a
hold code while exporting, ...), so only the table can make the three sides agree.
"""

from __future__ import annotations

from datetime import datetime, timezone

import pandas as pd
import pytest

from services.executor.control import ControlSettings, intent_from_slot
from shared.contracts import PlanSlot
from shared.modes import REASON_CODES, SETPOINT_MODES
from shared.optimize import explain
from shared.simulator import executor_rules

START = datetime(2025, 7, 14, 12, 0, tzinfo=timezone.utc)
SETTINGS = ControlSettings(capacity_kwh=10.0, reserve_soc_frac=0.1, min_soc_frac=0.05, max_soc_frac=1.0,
                           max_charge_kw=5.0, max_discharge_kw=4.0, export_limit_kw=10.0)
# flows that point elsewhere: a small export, no battery flow, so the flow rules alone say self-consumption
MISLEADING = dict(charge_kw=0.0, discharge_kw=0.0, import_kw=0.0, export_kw=1.0, pv_kw=3.0, load_kw=2.0, soc_kwh=5.0)


def _both_sides(code: str, **flows: float) -> tuple[str, str, float | None]:
    slot = PlanSlot(start=START, mode="x", reason_code=code, **flows)
    intent, _ = intent_from_slot(slot, SETTINGS)
    frame = pd.DataFrame([{**flows, "reason_code": code}], index=pd.DatetimeIndex([START]))
    return intent.mode, executor_rules(frame)[0], intent.export_limit_kw


def test_explain_uses_the_one_table() -> None:
    assert explain.REASON_CODES == {code: spec.text for code, spec in REASON_CODES.items()}


@pytest.mark.parametrize("code", [c for c, spec in REASON_CODES.items() if spec.mode is not None])
def test_executor_and_simulator_run_each_code_as_the_table_says(code: str) -> None:
    spec = REASON_CODES[code]
    executor_mode, simulator_rule, export_limit_kw = _both_sides(code, **MISLEADING)
    assert executor_mode == spec.mode
    assert simulator_rule == ("setpoint" if spec.mode in SETPOINT_MODES else "self_consumption")
    assert (export_limit_kw == 0.0) == spec.curtail


def test_a_code_without_a_mode_leaves_it_to_the_flows_on_both_sides() -> None:
    idle_importing = {**MISLEADING, "import_kw": 1.0, "export_kw": 0.0, "pv_kw": 0.0}
    assert _both_sides("idle", **idle_importing)[:2] == ("hold", "setpoint")
    assert _both_sides("idle", **MISLEADING)[:2] == ("self_consumption", "self_consumption")
