"""The one mode map: each plan reason code, what it means and how the inverter runs it.

The planner writes one reason code per slot (``shared.optimize.explain.slot_reason_codes``);
the live executor (``services/executor/control.py``) and the simulator's executor rule
(``shared.simulator.executor_rules``) read the inverter mode from this table, so the three
cannot drift apart (``tests/test_modes.py``).

Modes: ``charge`` / ``discharge`` / ``hold`` are fixed battery commands (a setpoint);
``self_consumption`` lets the inverter absorb the PV surplus or cover the deficit. A code with
no mode (``idle``) leaves it to the slot's flows; ``curtail`` runs self-consumption with the
export limit at zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

InverterMode = Literal["charge", "discharge", "self_consumption", "hold"]
SETPOINT_MODES: frozenset[str] = frozenset({"charge", "discharge", "hold"})


@dataclass(frozen=True)
class ReasonCode:
    text: str  # plain language, as the explanation shows it
    mode: InverterMode | None  # None: the slot's flows decide
    curtail: bool = False  # self-consumption with no export


REASON_CODES: dict[str, ReasonCode] = {
    "manual_charge": ReasonCode("manual block: charge", "charge"),
    "manual_discharge": ReasonCode("manual block: discharge", "discharge"),
    "manual_export": ReasonCode("manual block: export", "discharge"),
    "manual_hold": ReasonCode("manual block: hold", "hold"),
    "manual_heat": ReasonCode("manual block: heat water", "self_consumption"),
    "charge_negative_price": ReasonCode("charging: paid to import", "charge"),
    "charge_grid_cheap": ReasonCode("charging from the grid at a cheap price for a dearer time", "charge"),
    "charge_pv_surplus": ReasonCode("storing PV surplus", "self_consumption"),
    "discharge_export": ReasonCode("discharging to export at a high price", "discharge"),
    "discharge_cover_load": ReasonCode("discharging to cover the home's load", "self_consumption"),
    "curtail_negative_export": ReasonCode("curtailing PV: exporting would cost money", "self_consumption", curtail=True),
    "hold_for_later": ReasonCode("holding stored energy for a dearer time", "hold"),
    "idle": ReasonCode("nothing to gain from the battery", None),
    "fallback_self_consumption": ReasonCode("fallback plan", "self_consumption"),
    "rule_guard_self_consumption": ReasonCode("rule guard: the self-consumption rule (the MPC lost to it lately)",
                                              "self_consumption"),
}

# reason codes the executor runs as a fixed battery command, not in self-consumption mode
SETPOINT_REASON_CODES: frozenset[str] = frozenset(
    code for code, spec in REASON_CODES.items() if spec.mode in SETPOINT_MODES)


def planned_mode(code: str | None) -> ReasonCode | None:
    """The table's entry for a reason code; None for no code or an unknown one (the flows decide)."""
    return REASON_CODES.get(code or "")
